//! Deferred authentication (OpenVPN 2.6 auth_control_file): the script exits 2 at once and a
//! detached background process answers later.

use crate::fake_duo::{Fault, Sig, User};
use crate::util::{self, background_pid, wait_until, ControlFiles, Setup};
use std::time::Duration;

fn env_of(files: &ControlFiles) -> Vec<(&'static str, String)> {
    files.env()
}

fn verify_deferrable(s: &Setup, user: &str, pw: &str, files: &ControlFiles) -> util::Run {
    let env = env_of(files);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    s.verify(user, pw, &env)
}

#[test]
fn push_is_deferred_and_answered_in_the_control_file() {
    let s = Setup::with(
        Sig::V5,
        "[log]\nfile = \"LOGFILE\"".replace("LOGFILE", "").as_str(),
    );
    let log_file = s.path("auth.log");
    s.write_config(
        Sig::V5,
        &format!("[log]\nfile = \"{}\"", log_file.display()),
    );
    s.duo
        .set_user("alice", User::answering_after(Duration::from_millis(500)));
    let files = ControlFiles::new(&s, "a");
    let run = verify_deferrable(&s, "alice", "push", &files);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_millis(2000),
        "{:?}",
        run.elapsed
    );
    assert!(
        run.decision().contains("result=defer"),
        "{}",
        run.decision()
    );
    // OpenVPN deletes the credential file as soon as the script exits.
    std::fs::remove_file(s.path("up.txt")).unwrap();
    assert_eq!(files.answer(Duration::from_secs(10)).as_deref(), Some("1"));
    assert_eq!(s.duo.calls("auth").len(), 1);
    assert!(s.duo.requests().iter().all(|r| r.signature_ok));
    // Syslog (here: the log file) has the deferral and the decision under one id.
    let id = run
        .decision()
        .split_whitespace()
        .find(|w| w.starts_with("id="))
        .unwrap()
        .to_string();
    assert!(wait_until(Duration::from_secs(5), || {
        let text = std::fs::read_to_string(&log_file).unwrap_or_default();
        text.lines()
            .any(|l| l.contains(&id) && l.contains("result=allow"))
    }));
    let text = std::fs::read_to_string(&log_file).unwrap();
    assert!(
        text.lines()
            .any(|l| l.contains(&id) && l.contains("result=defer")),
        "{text}"
    );
    // The approval went into the cache: the next login is instant and synchronous.
    let files2 = ControlFiles::new(&s, "b");
    let run = verify_deferrable(&s, "alice", "push", &files2);
    assert_eq!(run.code, 0);
    assert!(run.decision().contains("via=cache"));
}

#[test]
fn denied_push_writes_reason_then_zero() {
    let s = Setup::new();
    s.duo.set_user("alice", User::denying());
    let files = ControlFiles::new(&s, "a");
    assert_eq!(verify_deferrable(&s, "alice", "push", &files).code, 2);
    assert_eq!(files.answer(Duration::from_secs(10)).as_deref(), Some("0"));
    assert_eq!(files.reason(), "Duo push denied");
}

#[test]
fn instant_decisions_stay_synchronous() {
    let s = Setup::with(Sig::V5, "mode = \"passcode\"");
    let files = ControlFiles::new(&s, "a");
    let run = verify_deferrable(&s, "alice", "", &files);
    assert_eq!(run.code, 1, "empty passcode in passcode mode");
    assert_eq!(
        files.reason(),
        "Duo passcode required: enter it in the password field (mode is passcode)"
    );
    let cred = s.path("bad.txt");
    std::fs::write(&cred, b"alice\n").unwrap();
    let env = files.env();
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    assert_eq!(s.verify_credfile(&cred, &env).code, 1, "malformed input");
    assert!(s.duo.requests().is_empty());
    // A cache hit is allowed at once.
    let plain = s.verify("alice", "123456", &[]);
    assert_eq!(plain.code, 0);
    assert_eq!(verify_deferrable(&s, "alice", "123456", &files).code, 0);
    assert_eq!(
        std::fs::read_to_string(&files.control).unwrap(),
        "",
        "no background answer"
    );
}

#[test]
fn defer_false_decides_synchronously() {
    let s = Setup::with(Sig::V5, "[openvpn]\ndefer = false");
    let files = ControlFiles::new(&s, "a");
    let run = verify_deferrable(&s, "alice", "push", &files);
    assert_eq!(run.code, 0);
    assert!(run.decision().contains("via=duo"));
}

#[test]
fn duo_timeout_in_background_applies_failmode_before_the_deadline() {
    for (failmode, want) in [("secure", "0"), ("safe", "1")] {
        let s = Setup::with(Sig::V5, &format!("failmode = \"{failmode}\"\ntimeout = 2"));
        s.duo.set_fault(Some(Fault::Hang));
        let files = ControlFiles::new(&s, "a");
        assert_eq!(verify_deferrable(&s, "alice", "push", &files).code, 2);
        assert_eq!(
            files.answer(Duration::from_secs(6)).as_deref(),
            Some(want),
            "{failmode}"
        );
    }
}

#[test]
fn unanswered_push_in_background_is_denied_even_under_failmode_safe() {
    let s = Setup::with(Sig::V5, "failmode = \"safe\"\ntimeout = 2");
    s.duo
        .set_user("alice", User::answering_after(Duration::from_secs(30)));
    let files = ControlFiles::new(&s, "a");
    assert_eq!(verify_deferrable(&s, "alice", "push", &files).code, 2);
    assert_eq!(files.answer(Duration::from_secs(6)).as_deref(), Some("0"));
    assert_eq!(files.reason(), "Duo did not approve the login in time");
}

/// The background watchdog fires while the process is still stuck on a locked cache: Duo was
/// never asked, so failmode safe must not turn that stall into an allow.
#[test]
fn watchdog_firing_before_duo_was_asked_denies_even_under_failmode_safe() {
    let s = Setup::with(Sig::V5, "failmode = \"safe\"\ntimeout = 1");
    assert_eq!(s.verify("alice", "push", &[]).code, 0);
    let requests = s.duo.requests().len();
    let db = s.hold_cache_write_lock();
    let files = ControlFiles::new(&s, "a");
    assert_eq!(verify_deferrable(&s, "alice", "push", &files).code, 2);
    let answer = files.answer(Duration::from_secs(10));
    db.execute_batch("COMMIT").expect("unlock");
    assert_eq!(answer.as_deref(), Some("0"));
    assert_eq!(s.duo.requests().len(), requests, "Duo was asked");
}

/// Duo approves late in the window while another process holds the cache's write lock: the
/// store gives up in time and the approval is answered, not lost to the watchdog's deny.
#[test]
fn late_approval_with_a_locked_cache_is_still_answered_allow() {
    // Approval at about 1.6 s of a 4 s timeout; the watchdog fires at 6 s. Waiting the full
    // 5 s busy timeout for the store would end at about 6.6 s; the bounded wait ends at 5 s.
    let s = Setup::with(Sig::V5, "timeout = 4");
    // Create the cache file with an approval for somebody else.
    s.duo.set_user("bob", User::default());
    assert_eq!(s.verify("bob", "push", &[]).code, 0);
    s.duo
        .set_user("alice", User::answering_after(Duration::from_millis(1500)));
    let db = s.hold_cache_write_lock();
    let files = ControlFiles::new(&s, "a");
    assert_eq!(verify_deferrable(&s, "alice", "push", &files).code, 2);
    let answer = files.answer(Duration::from_secs(10));
    db.execute_batch("COMMIT").expect("unlock");
    assert_eq!(answer.as_deref(), Some("1"), "Duo approved");
}

#[test]
fn background_is_detached_from_openvpn() {
    let s = Setup::new();
    s.duo
        .set_user("alice", User::answering_after(Duration::from_secs(4)));
    let files = ControlFiles::new(&s, "a");
    let cred = s.path("up.txt");
    util::write_private(&cred, "alice\npush\n");
    // Like OpenVPN, leave a descriptor (7) open without close-on-exec for the script to inherit.
    let mut cmd = std::process::Command::new("/bin/bash");
    cmd.env_clear()
        .arg("-c")
        .arg("exec 7</dev/null; exec \"$@\"")
        .arg("bash")
        .arg(util::bin())
        .arg("--config")
        .arg(&s.config)
        .arg(&cred)
        .env("untrusted_ip", "203.0.113.7");
    for (k, v) in files.env() {
        cmd.env(k, v);
    }
    let run = util::run(cmd);
    assert_eq!(run.code, 2, "{}", run.stderr);
    let pid = background_pid(&run);
    assert!(
        s.duo.wait_for_requests(2, Duration::from_secs(5)) >= 2,
        "push under way"
    );
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("background alive");
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    assert_eq!(fields[3], pid.to_string(), "own session (sid == pid)");
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        !fds.contains(&"7".to_string()),
        "inherited fd 7 leaked: {fds:?}"
    );
    for fd in ["1", "2"] {
        let target = std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).unwrap();
        assert_eq!(target.to_string_lossy(), "/dev/null", "stdio closed");
    }
    assert_eq!(files.answer(Duration::from_secs(10)).as_deref(), Some("1"));
}

#[test]
fn killed_background_leaves_the_login_unanswered_so_openvpn_denies() {
    let s = Setup::new();
    s.duo
        .set_user("alice", User::answering_after(Duration::from_secs(10)));
    let files = ControlFiles::new(&s, "a");
    let run = verify_deferrable(&s, "alice", "push", &files);
    assert_eq!(run.code, 2);
    let pid = background_pid(&run);
    assert!(s.duo.wait_for_requests(2, Duration::from_secs(5)) >= 2);
    let status = std::process::Command::new("kill")
        .args(["-KILL", &pid.to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(wait_until(Duration::from_secs(5), || {
        // Gone, or a zombie waiting for init to reap it.
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit(')').next().unwrap().trim_start().starts_with('Z'))
            .unwrap_or(true)
    }));
    assert_eq!(
        std::fs::read_to_string(&files.control).unwrap(),
        "",
        "no allow written"
    );
}

#[test]
fn malformed_handover_is_logged_and_left_unanswered() {
    use std::io::Write;
    let s = Setup::new();
    let mut child = std::process::Command::new(util::bin())
        .arg("--config")
        .arg(&s.config)
        .arg("background")
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"{not json").unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("handover is malformed"), "{stderr}");
    assert!(s.duo.requests().is_empty());
}
