//! A login decided end to end without a Duo account: starts the test suite's fake Duo server
//! (real HTTPS, its own CA, signature checks), writes a config for it, and runs the real
//! `openvpn-auth-duo` binary the way an admin and OpenVPN would.
//!
//! `cargo build --release && cargo run --release --example demo`

#[path = "../tests/fake_duo.rs"]
mod fake_duo;
#[path = "support/mod.rs"]
mod support;

use fake_duo::{FakeDuo, PreauthResult, Sig, User, IKEY, SKEY};
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::{binary, private};

fn main() {
    let bin = binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let duo = FakeDuo::start_in(dir.path(), Sig::V5, fake_duo::CertKind::Good);
    duo.set_user("alice", User::answering_after(Duration::from_secs(2)));
    duo.set_user("bob", User::denying());
    duo.set_user(
        "carol",
        User {
            preauth: PreauthResult::Enroll(
                "https://api-demo.duosecurity.com/portal?code=c4r0l".into(),
            ),
            ..User::default()
        },
    );
    let config = dir.path().join("auth-duo.toml");
    private(
        &config,
        &format!(
            "[duo]\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\napi_hostname = \"{}\"\n\
             ca_file = \"{}\"\nmode = \"push_phone\"\n\n[cache]\npath = \"{}\"\n\n[log]\nsyslog = false\n",
            duo.host(),
            duo.ca_file.display(),
            dir.path().join("cache.sqlite3").display()
        ),
    );
    println!(
        "fake Duo API on https://{} (test CA {})",
        duo.host(),
        duo.ca_file.display()
    );
    println!("config {}\n", config.display());

    show(&bin, &config, &["check"], &[]);
    show(
        &bin,
        &config,
        &["test", "alice", "--ip", "203.0.113.7"],
        &[],
    );
    show(&bin, &config, &["test", "bob", "push"], &[]);
    show(&bin, &config, &["test", "carol"], &[]);

    // As OpenVPN runs it: credential file, bare environment. Alice logs in, then reconnects from
    // the same address: the reconnect cache answers without asking Duo.
    let cred = dir.path().join("up.txt");
    let env = [
        ("untrusted_ip", "203.0.113.7"),
        ("common_name", "alice-laptop"),
    ];
    for attempt in ["login", "reconnect"] {
        private(&cred, "alice\nmy-ldap-password,push\n");
        let before = duo.requests().len();
        show(&bin, &config, &[cred.to_str().expect("utf-8 path")], &env);
        println!(
            "Duo requests for that {attempt}: {}\n",
            duo.requests().len() - before
        );
    }
    let total = duo.requests();
    println!(
        "fake Duo saw {} requests, all signatures valid: {}",
        total.len(),
        total.iter().all(|r| r.signature_ok)
    );
}

fn show(bin: &Path, config: &Path, args: &[&str], env: &[(&str, &str)]) {
    println!(
        "$ openvpn-auth-duo --config {} {}",
        config.display(),
        args.join(" ")
    );
    let mut cmd = Command::new(bin);
    cmd.arg("--config").arg(config).args(args);
    if !env.is_empty() {
        cmd.env_clear().envs(env.iter().copied());
    }
    let status = cmd.status().expect("run openvpn-auth-duo");
    println!("exit code {}\n", status.code().unwrap_or(-1));
}
