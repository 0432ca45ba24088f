//! Secrets (secret key, passwords, passcodes) never appear in any output.

use crate::fake_duo::{Fault, SKEY};
use crate::util::Setup;

#[test]
fn no_secret_reaches_any_output() {
    let s = Setup::new();
    let passcode = "80417256";
    let password = "Tr0ub4dor&3-distinctive";
    let mut outputs = Vec::new();
    let mut record = |r: crate::util::Run| outputs.push(r.all_output());
    record(s.verify("alice", &format!("{password},{passcode}"), &[]));
    record(s.verify("alice", passcode, &[]));
    record(s.verify("alice", &format!("{password},push"), &[]));
    record(s.verify("alice", password, &[]));
    record(s.verify("alice\u{1}", passcode, &[]));
    record(s.verify("alice", &format!("{password}\u{0}{passcode}"), &[]));
    record(s.cmd(&["test", "alice", passcode]));
    record(s.cmd(&["check"]));
    s.duo.set_fault(Some(Fault::Garbage));
    record(s.verify("alice", passcode, &[]));
    s.duo.set_fault(Some(Fault::Status(500)));
    record(s.verify("alice", passcode, &[]));
    s.edit_config(SKEY, "AnotherSecret0123456789abcdefghijklmnopq");
    record(s.verify("alice", passcode, &[]));
    record(s.cmd(&["check"]));
    // A config error quoting the line must not quote the secret either.
    s.edit_config("secret_key = \"", "secret_key = \"\n");
    record(s.verify("alice", passcode, &[]));

    let mut files = Vec::new();
    for entry in walk(s.dir.path()) {
        if entry
            .file_name()
            .is_some_and(|n| n != "auth-duo.toml" && n != "up.txt")
        {
            files.push(String::from_utf8_lossy(&std::fs::read(&entry).unwrap()).into_owned());
        }
    }
    assert!(outputs.len() >= 13);
    for text in outputs.iter().chain(files.iter()) {
        for secret in [
            SKEY,
            "AnotherSecret0123456789abcdefghijklmnopq",
            passcode,
            password,
        ] {
            assert!(!text.contains(secret), "secret leaked in: {text}");
        }
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
