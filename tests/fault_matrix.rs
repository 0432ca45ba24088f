//! The fault matrix (README "Failure behaviour"): every row runs the real binary under failmode
//! secure and safe and asserts the decision, the reason in the log and a time bound. Run with
//! `--nocapture` to print the table with measured times.

use crate::fake_duo::{CertKind, FakeDuo, Fault, Sig, User, SKEY};
use crate::util::{Run, Setup};
use std::time::Duration;

const ALLOW: i32 = 0;
const DENY: i32 = 1;

/// Runs `scenario` once per failmode, checks exit code, reason and time, prints a table row.
fn row(
    fault: &str,
    expect: [i32; 2],
    reason: &str,
    bound: Duration,
    scenario: impl Fn(&str) -> Run,
) {
    let mut cells = Vec::new();
    for (failmode, want) in ["secure", "safe"].into_iter().zip(expect) {
        let run = scenario(failmode);
        let line = run.decision();
        assert_eq!(
            run.code, want,
            "{fault} under {failmode}: {line}\n{}",
            run.stderr
        );
        assert!(
            line.contains(reason),
            "{fault} under {failmode}: want {reason:?} in {line}"
        );
        assert!(
            run.elapsed < bound,
            "{fault} under {failmode}: took {:?}",
            run.elapsed
        );
        cells.push(format!(
            "{} ({} ms)",
            if run.code == 0 { "allow" } else { "deny" },
            run.elapsed.as_millis()
        ));
    }
    println!("| {fault} | {} | {} |", cells[0], cells[1]);
}

fn setup(failmode: &str, extra: &str) -> Setup {
    Setup::with(Sig::V5, &format!("failmode = \"{failmode}\"\n{extra}"))
}

fn with_fault(failmode: &str, extra: &str, fault: Fault) -> Run {
    let s = setup(failmode, extra);
    s.duo.set_fault(Some(fault));
    s.verify("alice", "push", &[])
}

const SECS_2: Duration = Duration::from_secs(2);

#[test]
fn duo_connection_refused() {
    row(
        "Duo: connection refused",
        [DENY, ALLOW],
        "cannot connect",
        SECS_2,
        |fm| {
            let s = setup(fm, "");
            s.point_at_closed_port();
            s.verify("alice", "push", &[])
        },
    );
}

#[test]
fn duo_accepts_then_never_answers() {
    row(
        "Duo: accepts, never answers (timeout = 3)",
        [DENY, ALLOW],
        "timed out",
        Duration::from_secs(5),
        |fm| with_fault(fm, "timeout = 3", Fault::Hang),
    );
}

#[test]
fn duo_half_response_then_stall() {
    row(
        "Duo: half a response, then stalls (timeout = 3)",
        [DENY, ALLOW],
        "timed out",
        Duration::from_secs(5),
        |fm| with_fault(fm, "timeout = 3", Fault::HalfThenStall),
    );
}

#[test]
fn duo_closes_after_handshake() {
    row(
        "Duo: closes right after TLS handshake",
        [DENY, ALLOW],
        "failmode",
        SECS_2,
        |fm| with_fault(fm, "", Fault::CloseAfterHandshake),
    );
}

#[test]
fn duo_http_500() {
    row("Duo: HTTP 500", [DENY, ALLOW], "HTTP 500", SECS_2, |fm| {
        with_fault(fm, "", Fault::Status(500))
    });
}

/// Preauth answers, so Duo is reachable; then the push is never answered before `timeout`.
/// Regression: the auth request's read timeout counted as "Duo unavailable", so failmode safe
/// let in anyone who had the first factor and typed `push` while the real user ignored it.
#[test]
fn duo_push_never_answered_is_a_deny_under_both_failmodes() {
    row(
        "Duo: preauth answers, push never answered (timeout = 2)",
        [DENY, DENY],
        "denying whatever the failmode",
        Duration::from_secs(4),
        |fm| {
            let s = setup(fm, "timeout = 2");
            s.duo
                .set_user("alice", User::answering_after(Duration::from_secs(30)));
            let run = s.verify("alice", "push", &[]);
            assert_eq!(s.duo.calls("auth").len(), 1, "the push was sent");
            run
        },
    );
}

/// A proxy that answers every CONNECT with `status`, for as long as the test runs.
fn fake_proxy(status: &'static str) -> u16 {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn);
            let mut line = String::new();
            while reader.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
                if line == "\r\n" {
                    break;
                }
                line.clear();
            }
            let _ = reader.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    port
}

#[test]
fn duo_proxy_refusing_our_credentials_is_a_deny_under_both_failmodes() {
    let port = fake_proxy("407 Proxy Authentication Required");
    row(
        "Duo proxy: 407, credentials refused",
        [DENY, DENY],
        "proxy refused our credentials",
        SECS_2,
        |fm| {
            let s = setup(
                fm,
                &format!("proxy = \"http://vpn:wrong@127.0.0.1:{port}\""),
            );
            let run = s.verify("alice", "push", &[]);
            assert!(
                !run.stderr.contains("wrong"),
                "proxy password leaked: {}",
                run.stderr
            );
            run
        },
    );
}

#[test]
fn duo_proxy_unreachable_applies_the_failmode() {
    row(
        "Duo proxy: unreachable",
        [DENY, ALLOW],
        "failmode",
        SECS_2,
        |fm| {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = closed.local_addr().expect("addr").port();
            drop(closed);
            let s = setup(fm, &format!("proxy = \"http://127.0.0.1:{port}\""));
            s.verify("alice", "push", &[])
        },
    );
}

#[test]
fn duo_http_503() {
    row("Duo: HTTP 503", [DENY, ALLOW], "HTTP 503", SECS_2, |fm| {
        with_fault(fm, "", Fault::Status(503))
    });
}

#[test]
fn duo_429_with_retry_after_recovers() {
    row(
        "Duo: 429 once, Retry-After: 1",
        [ALLOW, ALLOW],
        "push approved",
        Duration::from_secs(3),
        |fm| {
            let run = with_fault(
                fm,
                "",
                Fault::RateLimit {
                    times: 1,
                    retry_after: Some(1),
                },
            );
            assert!(
                run.elapsed >= Duration::from_secs(1),
                "honoured Retry-After"
            );
            run
        },
    );
}

#[test]
fn duo_429_without_retry_after_backs_off() {
    row(
        "Duo: 429 twice, no Retry-After (1 s, 2 s back-off)",
        [ALLOW, ALLOW],
        "push approved",
        Duration::from_secs(5),
        |fm| {
            let run = with_fault(
                fm,
                "",
                Fault::RateLimit {
                    times: 2,
                    retry_after: None,
                },
            );
            assert!(
                run.elapsed >= Duration::from_secs(3),
                "backed off 1 s then 2 s"
            );
            run
        },
    );
}

#[test]
fn duo_429_forever_stops_inside_timeout() {
    row(
        "Duo: 429 forever (timeout = 3)",
        [DENY, DENY],
        "too many attempts",
        Duration::from_secs(4),
        |fm| {
            with_fault(
                fm,
                "timeout = 3",
                Fault::RateLimit {
                    times: usize::MAX,
                    retry_after: None,
                },
            )
        },
    );
}

#[test]
fn duo_garbage_json() {
    row(
        "Duo: 200 with garbage instead of JSON",
        [DENY, DENY],
        "unparseable",
        SECS_2,
        |fm| with_fault(fm, "", Fault::Garbage),
    );
}

#[test]
fn duo_truncated_json() {
    row(
        "Duo: 200 with truncated JSON",
        [DENY, DENY],
        "unparseable",
        SECS_2,
        |fm| with_fault(fm, "", Fault::Truncated),
    );
}

#[test]
fn duo_oversized_body_is_not_read_whole() {
    row(
        "Duo: 200 with a 16 MiB body",
        [DENY, DENY],
        "larger than 256 KiB",
        Duration::from_secs(3),
        |fm| with_fault(fm, "", Fault::Oversized(16 << 20)),
    );
}

#[test]
fn duo_fail_answer_for_a_bad_key() {
    row(
        "Duo: FAIL 40103 (wrong secret key)",
        [DENY, DENY],
        "40103",
        SECS_2,
        |fm| {
            let s = setup(fm, "");
            s.edit_config(SKEY, "WrongSecretKey0123456789abcdefghijklmnop");
            s.verify("alice", "push", &[])
        },
    );
}

/// A certificate that does not verify is a wrong `ca_file`, an intercepting proxy or an attack,
/// so failmode safe must not let everyone in on it (regression: it used to count as "Duo
/// unavailable").
fn tls_row(name: &str, cert: CertKind) {
    row(name, [DENY, DENY], "TLS failure", SECS_2, |fm| {
        let duo = FakeDuo::start_with(Sig::V5, cert);
        let s = Setup::around(duo, Sig::V5, &format!("failmode = \"{fm}\""));
        let run = s.verify("alice", "push", &[]);
        assert!(
            s.duo.requests().is_empty(),
            "nothing sent over a refused TLS session"
        );
        run
    });
}

#[test]
fn duo_tls_certificate_for_another_host() {
    tls_row("Duo: TLS certificate for another host", CertKind::OtherHost);
}

#[test]
fn duo_tls_expired_certificate() {
    tls_row("Duo: expired TLS certificate", CertKind::Expired);
}

#[test]
fn duo_tls_unknown_ca() {
    tls_row(
        "Duo: TLS certificate from an unknown CA",
        CertKind::UnknownCa,
    );
}

/// The cache directory on a 64 KiB tmpfs that is then filled: stores fail with SQLITE_FULL.
#[test]
fn cache_on_a_full_disk_falls_back_to_duo() {
    row(
        "Cache: disk full",
        [ALLOW, ALLOW],
        "via=duo",
        Duration::from_secs(3),
        |fm| {
            let s = setup(fm, "");
            let dir = s.path("cache");
            std::fs::create_dir_all(&dir).unwrap();
            let mounted = std::process::Command::new("mount")
                .args(["-t", "tmpfs", "-o", "size=64k", "tmpfs"])
                .arg(&dir)
                .status()
                .map(|st| st.success())
                .unwrap_or(false);
            assert!(
                mounted,
                "mounting a tmpfs needs root (the suite runs as root in CI)"
            );
            struct Unmount(std::path::PathBuf);
            impl Drop for Unmount {
                fn drop(&mut self) {
                    let _ = std::process::Command::new("umount").arg(&self.0).status();
                }
            }
            let _guard = Unmount(dir.clone());
            // Fill every byte, so SQLite can neither create nor grow the file.
            let _ = std::fs::write(dir.join("filler"), vec![0u8; 128 * 1024]);
            s.duo.set_user("alice", User::default());
            let run = s.verify("alice", "push", &[]);
            assert!(
                run.stderr.lines().count() >= 2,
                "the cache trouble is logged: {}",
                run.stderr
            );
            run
        },
    );
}
