//! What the demo and the benchmark share: finding the release binary and writing private files.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// The release binary next to this example (target/release/openvpn-auth-duo).
pub fn binary() -> PathBuf {
    let me = std::env::current_exe().expect("own path");
    let bin = me
        .parent()
        .and_then(Path::parent)
        .map(|d| d.join("openvpn-auth-duo"))
        .expect("target dir");
    if !bin.exists() {
        eprintln!(
            "{} is missing: run `cargo build --release` first",
            bin.display()
        );
        std::process::exit(1);
    }
    bin
}

/// Writes a 0600 file, creating its directory; configs and credential files must be private.
pub fn private(path: &Path, text: &str) {
    if let Some(d) = path.parent() {
        let _ = std::fs::create_dir_all(d);
    }
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}
