//! Failure handling: unreachable or misbehaving Duo under both failmodes, bad input, bad config.

use crate::util::{self, write_private, Setup};
use std::os::unix::fs::PermissionsExt;

#[test]
fn malformed_credential_files_deny_with_one_clear_line() {
    let s = Setup::new();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("missing line", b"alice\n".to_vec(), "no password line"),
        (
            "extra line",
            b"alice\npw\nmore\n".to_vec(),
            "more than two lines",
        ),
        ("oversized", vec![b'a'; 5000], "larger than 4096"),
        ("NUL", b"al\0ice\npush\n".to_vec(), "NUL"),
        (
            "non-UTF-8",
            b"alice\npu\xffsh\n".to_vec(),
            "not valid UTF-8",
        ),
        ("empty username", b"\npush\n".to_vec(), "username is empty"),
        (
            "control chars",
            b"ali\x1bce\npush\n".to_vec(),
            "control characters",
        ),
    ];
    for (what, bytes, msg) in cases {
        let cred = s.path("bad.txt");
        std::fs::write(&cred, &bytes).unwrap();
        let run = s.verify_credfile(&cred, &[]);
        assert_eq!(run.code, 1, "{what}");
        assert!(
            run.elapsed < std::time::Duration::from_secs(1),
            "{what}: {:?}",
            run.elapsed
        );
        let line = run.decision();
        assert!(line.contains(msg), "{what}: {line}");
        assert_eq!(
            run.stderr.lines().count(),
            1,
            "{what}: one line: {}",
            run.stderr
        );
    }
    let run = s.verify_credfile(&s.path("does-not-exist"), &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("no such file"));
    assert!(s.duo.requests().is_empty(), "bad input never reaches Duo");
}

#[test]
fn bad_environment_values_deny() {
    let s = Setup::new();
    let big = "x".repeat(5000);
    for (name, value, msg) in [
        ("IV_GUI_VER", big.as_str(), "IV_GUI_VER is 5000 bytes"),
        ("untrusted_ip", "not-an-ip", "not an IP address"),
        ("common_name", "a\u{7}b", "control characters"),
    ] {
        let run = s.verify("alice", "push", &[(name, value)]);
        assert_eq!(run.code, 1, "{name}");
        assert!(run.decision().contains(msg), "{name}: {}", run.decision());
    }
    assert!(s.duo.requests().is_empty());
}

#[test]
fn unknown_config_key_names_key_and_line() {
    let s = Setup::new();
    s.edit_config(
        "mode = \"push_phone\"",
        "mode = \"push_phone\"\nfail_mode = \"safe\"",
    );
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 1);
    let line = run.decision();
    assert!(line.contains("fail_mode"), "{line}");
    assert!(line.contains("line 9"), "{line}");
    assert!(s.duo.requests().is_empty());
}

#[test]
fn unsafe_config_permissions_are_refused() {
    let s = Setup::new();
    for (mode, msg) in [
        (0o644, "world-readable"),
        (0o620, "group- or world-writable"),
    ] {
        std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(mode)).unwrap();
        let run = s.verify("alice", "push", &[]);
        assert_eq!(run.code, 1, "{mode:o}");
        assert!(run.decision().contains(msg), "{mode:o}: {}", run.decision());
    }
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert_eq!(s.verify("alice", "push", &[]).code, 0, "0640 is fine");
}

#[test]
fn secret_key_file_is_read_and_guarded() {
    let s = Setup::new();
    let secret = s.path("secret");
    write_private(&secret, &format!("{}\n", crate::fake_duo::SKEY));
    s.edit_config(
        &format!("secret_key = \"{}\"", crate::fake_duo::SKEY),
        &format!("secret_key_file = \"{}\"", secret.display()),
    );
    std::fs::set_permissions(&s.config, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert_eq!(
        s.verify("alice", "push", &[]).code,
        0,
        "config without secret may be 0644"
    );
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o604)).unwrap();
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("world-readable"));
}

#[test]
fn missing_config_denies() {
    let s = Setup::new();
    std::fs::remove_file(&s.config).unwrap();
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.decision().contains("cannot open config file"),
        "{}",
        run.decision()
    );
}

#[test]
fn usage_errors_exit_1_never_2_which_openvpn_reads_as_deferred() {
    let mut cmd = util::openvpn_command();
    cmd.arg("--no-such-flag").arg("/tmp/x");
    assert_eq!(util::run(cmd).code, 1);
    let mut cmd = util::openvpn_command();
    cmd.args(["/tmp/a", "/tmp/b"]);
    assert_eq!(util::run(cmd).code, 1);
}
