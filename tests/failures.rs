//! Failure handling: unreachable or misbehaving Duo under both failmodes, bad input, bad config.

use crate::fake_duo::{CertKind, FakeDuo, Fault, Sig};
use crate::util::{self, write_private, Setup};
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn with_failmode(failmode: &str, extra: &str) -> Setup {
    Setup::with(Sig::V5, &format!("failmode = \"{failmode}\"\n{extra}"))
}

#[test]
fn unreachable_duo_follows_failmode() {
    for (failmode, code) in [("secure", 1), ("safe", 0)] {
        let s = with_failmode(failmode, "");
        let text = std::fs::read_to_string(&s.config)
            .unwrap()
            .replace(&s.duo.host(), &format!("localhost:{}", closed_port()));
        write_private(&s.config, &text);
        let run = s.verify("alice", "push", &[]);
        assert_eq!(run.code, code, "{failmode}: {}", run.stderr);
        let line = run.decision();
        assert!(line.contains("cannot connect"), "{line}");
        assert!(
            line.contains(&format!("failmode {failmode} applied")),
            "{line}"
        );
        assert!(line.contains("via=failmode"), "{line}");
    }
}

#[test]
fn server_errors_follow_failmode() {
    for status in [500, 503] {
        for (failmode, code) in [("secure", 1), ("safe", 0)] {
            let s = with_failmode(failmode, "");
            s.duo.set_fault(Some(Fault::Status(status)));
            let run = s.verify("alice", "push", &[]);
            assert_eq!(run.code, code, "{status} {failmode}");
            assert!(
                run.decision().contains(&format!("HTTP {status}")),
                "{}",
                run.decision()
            );
        }
    }
}

#[test]
fn duo_fail_answers_deny_even_in_safe_mode() {
    let s = with_failmode("safe", "");
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        crate::fake_duo::SKEY,
        "WrongSecretKey0123456789abcdefghijklmnop",
    );
    write_private(&s.config, &text);
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 1);
    assert!(run.decision().contains("40103"), "{}", run.decision());
}

#[test]
fn garbage_truncated_and_oversized_answers_deny_even_in_safe_mode() {
    for fault in [Fault::Garbage, Fault::Truncated, Fault::Oversized(2 << 20)] {
        let s = with_failmode("safe", "");
        s.duo.set_fault(Some(fault.clone()));
        let run = s.verify("alice", "push", &[]);
        assert_eq!(run.code, 1, "{fault:?}: {}", run.stderr);
        assert!(
            run.decision().contains("via=duo"),
            "{fault:?}: {}",
            run.decision()
        );
    }
}

#[test]
fn hanging_duo_times_out_and_follows_failmode() {
    for fault in [Fault::Hang, Fault::HalfThenStall] {
        for (failmode, code) in [("secure", 1), ("safe", 0)] {
            let s = with_failmode(failmode, "timeout = 2");
            s.duo.set_fault(Some(fault.clone()));
            let run = s.verify("alice", "push", &[]);
            assert_eq!(run.code, code, "{fault:?} {failmode}: {}", run.stderr);
            assert!(run.decision().contains("timed out"), "{}", run.decision());
            assert!(run.elapsed < Duration::from_secs(8), "{:?}", run.elapsed);
        }
    }
}

#[test]
fn rate_limit_is_retried_honouring_retry_after() {
    let s = Setup::new();
    s.duo.set_fault(Some(Fault::RateLimit {
        times: 1,
        retry_after: Some(1),
    }));
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let reqs = s.duo.requests();
    assert_eq!(reqs.len(), 3, "preauth (429), preauth, auth");
    assert!(run.elapsed >= Duration::from_secs(1), "waited Retry-After");
}

#[test]
fn endless_rate_limit_denies_as_too_many_attempts_within_timeout() {
    let s = with_failmode("safe", "timeout = 3");
    s.duo.set_fault(Some(Fault::RateLimit {
        times: usize::MAX,
        retry_after: None,
    }));
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 1);
    assert!(
        run.decision().contains("too many attempts"),
        "{}",
        run.decision()
    );
    assert!(run.elapsed < Duration::from_secs(4));
    assert!(s.duo.requests().len() >= 2, "backed off and retried");
}

#[test]
fn tls_failures_follow_failmode() {
    for cert in [CertKind::OtherHost, CertKind::Expired, CertKind::UnknownCa] {
        let duo = FakeDuo::start_with(Sig::V5, cert);
        let s = Setup::around(duo, Sig::V5, "failmode = \"secure\"");
        let run = s.verify("alice", "push", &[]);
        assert_eq!(run.code, 1, "{cert:?}");
        assert!(
            run.decision().contains("TLS failure"),
            "{cert:?}: {}",
            run.decision()
        );
        assert_eq!(
            s.duo.requests().len(),
            0,
            "nothing sent over a bad TLS session"
        );
        s.write_config(Sig::V5, "failmode = \"safe\"");
        assert_eq!(s.verify("alice", "push", &[]).code, 0, "{cert:?} safe");
    }
}

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
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        "mode = \"push_phone\"",
        "mode = \"push_phone\"\nfail_mode = \"safe\"",
    );
    write_private(&s.config, &text);
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
    let text = std::fs::read_to_string(&s.config).unwrap().replace(
        &format!("secret_key = \"{}\"", crate::fake_duo::SKEY),
        &format!("secret_key_file = \"{}\"", secret.display()),
    );
    write_private(&s.config, &text);
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
