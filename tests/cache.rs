//! The reconnect cache: real SQLite files, the real binary, the fake Duo server.

use crate::fake_duo::{PreauthResult, Sig, User};
use crate::util::{self, Setup};
use rusqlite::Connection;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn cache_path(s: &Setup) -> PathBuf {
    s.path("cache/cache.sqlite3")
}

fn db(s: &Setup) -> Connection {
    s.cache_db()
}

/// Logs in once through Duo so the cache holds an approval; returns Duo's request count.
fn approve(s: &Setup, env: &[(&str, &str)]) -> usize {
    let run = s.verify("alice", "push", env);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.decision().contains("via=duo"), "{}", run.decision());
    s.duo.requests().len()
}

#[test]
fn hit_makes_zero_duo_requests_whatever_the_factor_text() {
    let s = Setup::new();
    let before = approve(&s, &[]);
    for password in ["push", "hunter2", "", "123456", "sms"] {
        let run = s.verify("alice", password, &[]);
        assert_eq!(run.code, 0, "{password}: {}", run.stderr);
        assert!(run.decision().contains("via=cache"), "{}", run.decision());
    }
    assert_eq!(s.duo.requests().len(), before, "no Duo request on a hit");
}

#[test]
fn used_passcode_survives_renegotiation_through_the_cache() {
    let s = Setup::with(Sig::V5, "mode = \"passcode\"");
    assert_eq!(s.verify("alice", "123456", &[]).code, 0);
    let n = s.duo.requests().len();
    // The client resends the same (now used) passcode on the hourly renegotiation.
    let run = s.verify("alice", "123456", &[]);
    assert_eq!(run.code, 0);
    assert!(run.decision().contains("via=cache"));
    assert_eq!(s.duo.requests().len(), n);
}

#[test]
fn each_key_part_misses_when_it_differs() {
    let s = Setup::new();
    s.duo.set_user("bob", User::default());
    approve(
        &s,
        &[("config", "/etc/openvpn/server.conf"), ("dev", "tun0")],
    );
    let cases: Vec<(&str, Vec<(&str, &str)>)> = vec![
        ("other IP", vec![("untrusted_ip", "198.51.100.9")]),
        ("other CN", vec![("common_name", "mallory-laptop")]),
        (
            "other instance",
            vec![("config", "/etc/openvpn/other.conf"), ("dev", "tun0")],
        ),
    ];
    for (what, env) in cases {
        let mut env = env.clone();
        if !env.iter().any(|(k, _)| *k == "config") {
            env.extend([("config", "/etc/openvpn/server.conf"), ("dev", "tun0")]);
        }
        let before = s.duo.requests().len();
        let run = s.verify("alice", "push", &env);
        assert_eq!(run.code, 0);
        assert!(
            run.decision().contains("via=duo"),
            "{what}: {}",
            run.decision()
        );
        assert_eq!(s.duo.requests().len(), before + 2, "{what}");
    }
    let run = s.verify(
        "bob",
        "push",
        &[("config", "/etc/openvpn/server.conf"), ("dev", "tun0")],
    );
    assert!(run.decision().contains("via=duo"), "other user");
}

#[test]
fn optional_key_parts_and_ipv6_prefix() {
    let s = Setup::with(Sig::V5, "[cache]\nmatch_hwaddr = true\nipv6_prefix = 64");
    // (IPv6 address, IV_HWADDR, password) → the decision line.
    let login = |ip6: &str, mac: &str, pw: &str| {
        let env = [
            ("untrusted_ip", ""),
            ("untrusted_ip6", ip6),
            ("IV_HWADDR", mac),
        ];
        s.verify("alice", pw, &env).decision().to_string()
    };
    let mac = "00:11:22:33:44:55";
    assert!(login("2001:db8:5:6:aaaa::1", mac, "push").contains("via=duo"));
    assert!(
        login("2001:db8:5:6:bbbb::2", mac, "").contains("via=cache"),
        "privacy address rotated inside the /64"
    );
    assert!(login("2001:db8:5:6:bbbb::2", "66:77:88:99:aa:bb", "push").contains("via=duo"));
    assert!(login("2001:db8:5:7::2", mac, "push").contains("via=duo"));
}

#[test]
fn expiry_sliding_window_and_max_age() {
    let s = Setup::with(Sig::V5, "[cache]\nttl = 3600\nmax_age = 36000");
    approve(&s, &[]);
    // Expired window: Duo again.
    db(&s)
        .execute("UPDATE approvals SET expires = ?1", [now() - 1])
        .unwrap();
    assert_eq!(s.verify("alice", "push", &[]).via(), "duo");
    // Sliding: a hit moves the end of the window to now + ttl.
    db(&s)
        .execute(
            "UPDATE approvals SET approved_at = ?1, expires = ?2",
            [now() - 7000, now() + 60],
        )
        .unwrap();
    assert_eq!(s.verify("alice", "", &[]).via(), "cache");
    let expires: i64 = db(&s)
        .query_row("SELECT expires FROM approvals", [], |r| r.get(0))
        .unwrap();
    assert!(
        expires >= now() + 3590 && expires <= now() + 3600,
        "slid to now+ttl"
    );
    // max_age: however active, an approval older than max_age needs Duo again.
    db(&s)
        .execute(
            "UPDATE approvals SET approved_at = ?1, expires = ?2",
            [now() - 36001, now() + 3000],
        )
        .unwrap();
    assert_eq!(s.verify("alice", "push", &[]).via(), "duo");
}

#[test]
fn lowering_ttl_shortens_approvals_already_stored() {
    let s = Setup::with(Sig::V5, "[cache]\nttl = 3600");
    approve(&s, &[]);
    // Used 700 s ago: inside the old hour, outside the new 600 s.
    db(&s)
        .execute("UPDATE approvals SET last_used = ?1", [now() - 700])
        .unwrap();
    assert_eq!(s.verify("alice", "", &[]).via(), "cache", "old ttl: a hit");
    db(&s)
        .execute("UPDATE approvals SET last_used = ?1", [now() - 700])
        .unwrap();
    s.edit_config("ttl = 3600", "ttl = 600");
    assert_eq!(s.verify("alice", "push", &[]).via(), "duo");
}

#[test]
fn ttl_zero_disables_the_cache() {
    let s = Setup::with(Sig::V5, "[cache]\nttl = 0");
    approve(&s, &[]);
    assert_eq!(s.verify("alice", "push", &[]).via(), "duo");
    assert!(!cache_path(&s).exists(), "no cache file with ttl = 0");
}

#[test]
fn bypass_and_failmode_allows_are_never_cached() {
    let s = Setup::with(Sig::V5, "failmode = \"safe\"");
    s.duo.set_user(
        "alice",
        User {
            preauth: PreauthResult::Allow,
            ..User::default()
        },
    );
    assert_eq!(s.verify("alice", "", &[]).code, 0);
    s.duo.set_fault(Some(crate::fake_duo::Fault::Status(503)));
    assert_eq!(s.verify("alice", "", &[]).via(), "failmode");
    let rows: i64 = db(&s)
        .query_row("SELECT count(*) FROM approvals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 0);
    // A denied push is not cached either, of course.
    s.duo.set_fault(None);
    s.duo.set_user("alice", User::denying());
    assert_eq!(s.verify("alice", "push", &[]).code, 1);
    assert_eq!(s.verify("alice", "push", &[]).code, 1);
}

#[test]
fn session_state_authenticated_skips_duo_unless_turned_off() {
    let s = Setup::new();
    let run = s.verify("alice", "token", &[("session_state", "Authenticated")]);
    assert_eq!(run.code, 0);
    assert!(run.decision().contains("via=token"));
    assert!(s.duo.requests().is_empty());
    for state in ["Initial", "Expired", "Invalid"] {
        s.duo.clear();
        let run = s.verify("bob", "push", &[("session_state", state)]);
        assert_eq!(
            run.code, 1,
            "{state}: unknown user bob goes to Duo (enroll)"
        );
        assert_eq!(s.duo.calls("preauth").len(), 1, "{state}");
    }
    let s = Setup::with(Sig::V5, "[cache]\ntrust_auth_token = false");
    let run = s.verify("alice", "push", &[("session_state", "Authenticated")]);
    assert!(run.decision().contains("via=duo"));
}

#[test]
fn cache_file_is_private_and_dir_is_created_0700() {
    let s = Setup::new();
    approve(&s, &[]);
    let file = std::fs::metadata(cache_path(&s)).unwrap();
    assert_eq!(file.mode() & 0o777, 0o600);
    let dir = std::fs::metadata(s.path("cache")).unwrap();
    assert_eq!(dir.mode() & 0o777, 0o700);
}

#[test]
fn list_forget_and_purge() {
    let s = Setup::new();
    s.duo.set_user("bob", User::default());
    s.duo.set_user("ALICE", User::default());
    approve(&s, &[]);
    approve(&s, &[("untrusted_ip", "198.51.100.20")]);
    assert_eq!(s.verify("ALICE", "push", &[]).via(), "duo");
    assert_eq!(s.verify("bob", "push", &[]).code, 0);
    let list = s.cmd(&["cache", "list"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "user\tcommon_name\tip\tapproved_at\tlast_used\texpires\tstate"
    );
    assert_eq!(lines.len(), 5);
    // Sorted by user, byte order: ALICE, alice, alice, bob.
    assert!(
        lines[1].starts_with("ALICE\talice-laptop\t"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("alice\talice-laptop\t"),
        "{}",
        lines[2]
    );
    assert_eq!(lines[1].split('\t').count(), 7);
    assert!(lines.iter().any(|l| l.contains("198.51.100.20")));

    let forget = s.cmd(&["cache", "forget", "alice"]);
    assert_eq!(forget.code, 0);
    // The client chose the spelling: forgetting a lost laptop's user takes every spelling.
    assert!(forget.stdout.contains("forgot 3"), "{}", forget.stdout);
    assert_eq!(s.verify("alice", "push", &[]).via(), "duo");
    assert_eq!(s.verify("ALICE", "push", &[]).via(), "duo");

    db(&s)
        .execute(
            "UPDATE approvals SET expires = ?1 WHERE username = 'bob'",
            [now() - 10],
        )
        .unwrap();
    let purge = s.cmd(&["cache", "purge", "--expired"]);
    assert!(
        purge.stdout.contains("purged 1 expired"),
        "{}",
        purge.stdout
    );
    let purge = s.cmd(&["cache", "purge"]);
    // alice and ALICE, approved again above.
    assert!(purge.stdout.contains("purged 2 "), "{}", purge.stdout);
    assert_eq!(s.cmd(&["cache", "list"]).stdout.lines().count(), 1);
}

#[test]
fn corrupt_cache_is_moved_aside_and_duo_decides() {
    let s = Setup::new();
    std::fs::create_dir_all(s.path("cache")).unwrap();
    let junk = b"this is not a database, it is a test of corruption handling".repeat(100);
    std::fs::write(cache_path(&s), &junk).unwrap();
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    println!(
        "| Cache: corrupt file | allow via Duo ({} ms) | same |",
        run.elapsed.as_millis()
    );
    assert!(run.stderr.contains("corrupt"), "{}", run.stderr);
    assert!(run.decision().contains("via=duo"));
    let aside: Vec<_> = std::fs::read_dir(s.path("cache"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains(".corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "moved aside, not deleted");
    assert_eq!(std::fs::read(aside[0].path()).unwrap(), junk);
    // The new cache works.
    assert_eq!(s.verify("alice", "", &[]).via(), "cache");
}

#[test]
fn denied_user_with_corrupt_cache_stays_denied() {
    let s = Setup::new();
    s.duo.set_user("alice", User::denying());
    std::fs::create_dir_all(s.path("cache")).unwrap();
    std::fs::write(cache_path(&s), b"garbage").unwrap();
    assert_eq!(s.verify("alice", "push", &[]).code, 1);
}

#[test]
fn newer_schema_is_left_alone_and_duo_decides() {
    let s = Setup::new();
    approve(&s, &[]);
    db(&s).execute_batch("PRAGMA user_version = 99").unwrap();
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stderr.contains("newer than this release"),
        "{}",
        run.stderr
    );
    assert!(run.decision().contains("via=duo"));
    let v: i64 = db(&s)
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 99, "untouched");
}

#[test]
fn unwritable_cache_as_unprivileged_user_never_crashes() {
    // Run the binary as nobody against a cache only root may write.
    let s = Setup::new();
    approve(&s, &[]);
    let nobody = 65534;
    std::os::unix::fs::chown(&s.config, Some(nobody), None).unwrap();
    std::fs::set_permissions(s.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(s.path("cache"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(cache_path(&s), std::fs::Permissions::from_mode(0o644)).unwrap();
    let cred = s.path("up-nobody.txt");
    util::write_private(&cred, "alice\npush\n");
    std::os::unix::fs::chown(&cred, Some(nobody), None).unwrap();
    let mut cmd = util::openvpn_command();
    std::os::unix::process::CommandExt::uid(&mut cmd, nobody);
    std::os::unix::process::CommandExt::gid(&mut cmd, nobody);
    cmd.arg("--config").arg(&s.config).arg(&cred);
    cmd.env("untrusted_ip", "203.0.113.7")
        .env("common_name", "alice-laptop");
    let run = util::run(cmd);
    // Either the read-only hit answers or Duo does; never a crash, never a deny of a good user.
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.elapsed < Duration::from_secs(2), "{:?}", run.elapsed);
    println!(
        "| Cache: read-only file and directory | allow ({} ms) | same |",
        run.elapsed.as_millis()
    );
    let decision = run.decision();
    assert!(
        decision.contains("via=duo") || decision.contains("via=cache"),
        "{decision}"
    );
    if decision.contains("via=duo") {
        assert!(
            run.stderr.lines().count() >= 2,
            "the cache trouble is logged"
        );
    }
}

#[test]
fn cache_locked_past_the_busy_timeout_falls_back_to_duo() {
    let s = Setup::new();
    approve(&s, &[]);
    let holder = s.hold_cache_write_lock();
    let run = s.verify("alice", "push", &[]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.elapsed < Duration::from_secs(8),
        "busy timeout 5 s: {:?}",
        run.elapsed
    );
    println!("| Cache: locked by another process past the 5 s busy timeout | allow via Duo ({} ms) | same |", run.elapsed.as_millis());
    assert!(run.stderr.contains("locked"), "{}", run.stderr);
    holder.execute_batch("COMMIT").unwrap();
}

/// A cache locked for longer than `timeout` leaves no time to ask Duo. Regression: that counted
/// as "Duo unavailable", so failmode safe let the login in without asking Duo at all.
#[test]
fn cache_lock_eating_the_whole_timeout_denies_even_under_failmode_safe() {
    let s = Setup::with(Sig::V5, "failmode = \"safe\"\ntimeout = 3");
    approve(&s, &[]);
    let before = s.duo.requests().len();
    let holder = s.hold_cache_write_lock();
    let run = s.verify("alice", "push", &[]);
    holder.execute_batch("COMMIT").unwrap();
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.decision().contains("used up before asking Duo"),
        "{}",
        run.decision()
    );
    assert_eq!(s.duo.requests().len(), before, "Duo was asked");
}

/// Many concurrent script runs on one cache file: hits, misses and denies all decided right,
/// none failing on a locked database, and the file intact afterwards. The benchmark runs the
/// same with 1000.
#[test]
fn concurrent_invocations_share_the_cache_safely() {
    let count: usize = std::env::var("CACHE_STORM_COUNT")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let s = Setup::new();
    approve(&s, &[]);
    s.duo.set_user("mallory", User::denying());
    for i in 0..count {
        s.duo.set_user(&format!("user{i}"), User::default());
    }
    let mut children = Vec::new();
    for i in 0..count {
        let (user, expect) = match i % 3 {
            0 => ("alice".to_string(), 0),
            1 => (format!("user{i}"), 0),
            _ => ("mallory".to_string(), 1),
        };
        let cred = s.path(&format!("up{i}.txt"));
        util::write_private(&cred, &format!("{user}\npush\n"));
        let mut cmd = util::openvpn_command();
        cmd.arg("--config").arg(&s.config).arg(&cred);
        cmd.env("untrusted_ip", "203.0.113.7")
            .env("common_name", "alice-laptop");
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        children.push((user, expect, cmd.spawn().unwrap()));
    }
    for (user, expect, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(expect), "{user}: {stderr}");
        assert!(!stderr.contains("locked"), "{user}: {stderr}");
        assert_eq!(
            stderr.lines().count(),
            1,
            "{user}: only the decision line: {stderr}"
        );
        if user == "alice" {
            assert!(stderr.contains("via=cache"), "{stderr}");
        }
    }
    let ok: String = db(&s)
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let rows: i64 = db(&s)
        .query_row("SELECT count(*) FROM approvals", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows as usize, 1 + count / 3 + usize::from(count % 3 > 1));
}
