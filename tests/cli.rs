//! The subcommands people use: `check`, `test`, `--help`, `--version`.

use crate::fake_duo::{Fault, Sig, User, SKEY};
use crate::util::{self, Setup};

#[test]
fn check_reports_ok_in_one_line() {
    let s = Setup::new();
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(run.stdout.starts_with("OK: "), "{}", run.stdout);
    let reqs = s.duo.calls("check");
    assert_eq!(reqs.len(), 1);
    assert!(reqs[0].signature_ok);
}

#[test]
fn check_notes_a_timeout_past_the_default_hand_window() {
    let s = Setup::new();
    let run = s.cmd(&["check"]);
    assert!(!run.stdout.contains("hand-window"), "{}", run.stdout);
    s.edit_config("timeout = 10\n", "timeout = 90\n");
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(run.stdout.lines().count(), 1);
    assert!(
        run.stdout
            .contains("timeout 90 s needs hand-window above it"),
        "{}",
        run.stdout
    );
}

#[test]
fn check_names_a_bad_key() {
    let s = Setup::new();
    s.edit_config(SKEY, "WrongSecretKey0123456789abcdefghijklmnop");
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("bad key"), "{}", run.stderr);
}

#[test]
fn check_names_clock_skew_whether_duo_refuses_or_answers() {
    let s = Setup::new();
    s.duo.set_fault(Some(Fault::StaleDate));
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
    assert!(run.stderr.contains("clock skew"), "{}", run.stderr);

    // Duo accepts the request but its clock is an hour off ours: the next skew will refuse.
    s.duo.set_fault(Some(Fault::ClockAhead(3600)));
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("clock skew"), "{}", run.stderr);
    assert!(
        run.stderr.contains("-3600 s") || run.stderr.contains("-3599 s"),
        "{}",
        run.stderr
    );

    // A few seconds off is fine and reported.
    s.duo.set_fault(Some(Fault::ClockAhead(5)));
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("clock offset -"), "{}", run.stdout);
}

#[test]
fn check_names_unreachable_and_tls_failures() {
    let s = Setup::new();
    s.point_at_closed_port();
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("Duo unreachable"), "{}", run.stderr);

    let duo = crate::fake_duo::FakeDuo::start_with(Sig::V5, crate::fake_duo::CertKind::UnknownCa);
    let s = Setup::around(duo, Sig::V5, "");
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("TLS failure"), "{}", run.stderr);
}

#[test]
fn check_names_a_bad_hostname() {
    let s = Setup::new();
    s.edit_config(&s.duo.host(), "https://api-x.example.com/");
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("api_hostname"), "{}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1);
}

#[test]
fn check_names_placeholder_keys() {
    let s = Setup::new();
    s.edit_config(crate::fake_duo::IKEY, "DIXXXXXXXXXXXXXXXXXX");
    let run = s.cmd(&["check"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("placeholder"), "{}", run.stderr);
}

#[test]
fn test_subcommand_shows_progress_and_result() {
    let s = Setup::new();
    let run = s.cmd(&["test", "alice", "--ip", "198.51.100.4"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("push sent to phone iOS"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("waiting"), "{}", run.stdout);
    assert!(run.stdout.contains("result: ALLOW"), "{}", run.stdout);
    assert_eq!(s.duo.calls("auth")[0].params["ipaddr"], "198.51.100.4");

    s.duo.set_user("alice", User::denying());
    let run = s.cmd(&["test", "alice", "push"]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("result: DENY"), "{}", run.stdout);
}

#[test]
fn test_subcommand_reads_the_password_field_from_stdin_for_dash() {
    let s = Setup::new();
    let run = s.cmd_with_stdin(&["test", "alice", "-"], b"123456\r\n");
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    let auth = &s.duo.calls("auth")[0];
    assert_eq!(auth.params["factor"], "passcode");
    assert_eq!(auth.params["passcode"], "123456");

    // Another address each time, so that the first approval's cache entry does not answer.
    let run = s.cmd_with_stdin(
        &["test", "alice", "-", "--ip", "192.0.2.2"],
        b"vpnpassword,999999\nignored\n",
    );
    assert_eq!(run.code, 1);
    assert_eq!(s.duo.calls("auth")[1].params["passcode"], "999999");

    // An endless line is cut at the length limit and refused, not read forever.
    let run = s.cmd_with_stdin(
        &["test", "alice", "-", "--ip", "192.0.2.3"],
        &[b'7'; 100_000],
    );
    assert_eq!(run.code, 1);
    assert_eq!(
        s.duo.calls("auth").len(),
        2,
        "an oversized field reached Duo"
    );
    assert!(run.stdout.contains("result: DENY"), "{}", run.stdout);
}

#[test]
fn help_documents_the_password_grammar() {
    let run = util::run({
        let mut c = std::process::Command::new(util::bin());
        c.arg("--help");
        c
    });
    assert_eq!(run.code, 0);
    for needle in ["SCRV1", "push2", "CREDFILE", "check", "test", "Exit codes"] {
        assert!(run.stdout.contains(needle), "{needle} missing from --help");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let mut c = std::process::Command::new(util::bin());
    c.arg("--version");
    let run = util::run(c);
    assert_eq!(run.code, 0);
    assert!(run.stdout.contains(env!("CARGO_PKG_VERSION")));
}
