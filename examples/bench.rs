//! The benchmark table (README "Performance"): whole-process runs of the release binary against
//! the fake Duo server on loopback, each figure the median of repeated runs, measured side by
//! side in one run. `scripts/bench.sh` builds in release mode and runs this.
//!
//! Environment: BENCH_RUNS (default 31) repetitions per timed figure; BENCH_STORM (default 1000)
//! concurrent invocations in the reconnect storm.

#[path = "../tests/fake_duo.rs"]
mod fake_duo;
#[path = "support/mod.rs"]
mod support;

use fake_duo::{FakeDuo, Sig, User, IKEY, SKEY};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use support::{binary, private};

struct Ctx {
    bin: PathBuf,
    dir: tempfile::TempDir,
    duo: FakeDuo,
    config: PathBuf,
    cache: PathBuf,
}

fn main() {
    if std::env::args().nth(1).as_deref() == Some("--rss-probe") {
        rss_probe();
        return;
    }
    let runs: usize = env_num("BENCH_RUNS", 31);
    let storm: usize = env_num("BENCH_STORM", 1000);
    let ctx = setup();
    let mut rows: Vec<(String, String, String)> = Vec::new();

    // Cache hit vs exec of /bin/true.
    approve(&ctx, "alice");
    let hit = median(runs, || {
        let r = login(&ctx, "alice", "push");
        assert_eq!(r.0, 0, "cache hit must allow");
        r.1
    });
    let truth = median(runs, || {
        let t = Instant::now();
        Command::new("/bin/true").status().expect("/bin/true");
        t.elapsed()
    });
    let ratio = hit.as_secs_f64() / truth.as_secs_f64();
    rows.push((
        "cache-hit decision (whole process)".into(),
        ms(hit),
        "".into(),
    ));
    rows.push(("exec of /bin/true".into(), ms(truth), "".into()));
    rows.push((
        "cache hit / true".into(),
        format!("{ratio:.2}x"),
        verdict(ratio <= 4.0, "<= 4x"),
    ));

    // Full push auth, cache disabled so every run goes to Duo.
    let nocache = ctx.dir.path().join("nocache.toml");
    private(
        &nocache,
        &config_text(&ctx, "[cache]\nttl = 0\npath = \"/nonexistent/x\"\n"),
    );
    ctx.duo.clear();
    let push = median(runs, || {
        let r = run_login(
            &ctx.bin,
            &nocache,
            &ctx.dir.path().join("up-p.txt"),
            "alice",
            "push",
        );
        assert_eq!(r.0, 0, "push must allow");
        r.1
    });
    let conns = ctx.duo.connections() as f64 / runs as f64;
    let reqs = ctx.duo.requests().len() as f64 / runs as f64;
    rows.push((
        "full push auth, fake Duo on loopback".into(),
        ms(push),
        "".into(),
    ));
    rows.push((
        "TLS handshakes per push auth".into(),
        format!("{conns:.2}"),
        verdict(conns <= 1.0, "1"),
    ));
    rows.push((
        "HTTPS requests per push auth".into(),
        format!("{reqs:.2}"),
        verdict(reqs <= 2.0, "<= 2"),
    ));

    // A config error (unknown key): how fast a misconfiguration denies.
    let bad = ctx.dir.path().join("bad.toml");
    private(
        &bad,
        &format!("{}\n[duo_typo]\nx = 1\n", config_text(&ctx, "")),
    );
    let cfg_err = median(runs, || {
        let r = run_login(
            &ctx.bin,
            &bad,
            &ctx.dir.path().join("up-b.txt"),
            "alice",
            "push",
        );
        assert_eq!(r.0, 1, "config error must deny");
        r.1
    });
    rows.push((
        "config error decision (deny)".into(),
        ms(cfg_err),
        "".into(),
    ));

    // Reconnect storm: all cache hits, all started at once.
    let (wall, failures, integrity) = reconnect_storm(&ctx, storm);
    rows.push((
        format!("reconnect storm: {storm} hits at once, wall"),
        format!("{:.0} ms", wall.as_secs_f64() * 1000.0),
        "".into(),
    ));
    rows.push((
        "reconnect storm failures".into(),
        failures.to_string(),
        verdict(failures == 0, "0"),
    ));
    rows.push((
        "reconnect storm integrity_check".into(),
        integrity.clone(),
        verdict(integrity == "ok", "ok"),
    ));

    // Peak RSS of one push auth, measured in a fresh process so nothing else counts.
    let out = Command::new(std::env::current_exe().expect("self"))
        .arg("--rss-probe")
        .output()
        .expect("rss probe");
    let kib: u64 = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    let mib = kib as f64 / 1024.0;
    rows.push((
        "peak RSS of one push auth".into(),
        format!("{mib:.2} MiB"),
        verdict(mib <= 8.0 && kib > 0, "<= 8 MiB"),
    ));
    let size = std::fs::metadata(&ctx.bin).map(|m| m.len()).unwrap_or(0) as f64 / 1048576.0;
    rows.push((
        "stripped release binary".into(),
        format!("{size:.2} MiB"),
        verdict(size <= 6.0, "<= 6 MiB"),
    ));

    println!("\n| measure ({runs} runs each, median) | value | target |");
    println!("|---|---|---|");
    for (a, b, c) in rows {
        println!("| {a} | {b} | {c} |");
    }
}

fn verdict(ok: bool, target: &str) -> String {
    format!("{target} ({})", if ok { "met" } else { "MISSED" })
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(runs: usize, mut f: impl FnMut() -> Duration) -> Duration {
    let mut v: Vec<Duration> = (0..runs.max(1)).map(|_| f()).collect();
    v.sort();
    v[v.len() / 2]
}

fn setup() -> Ctx {
    let bin = binary();
    let dir = tempfile::tempdir().expect("temp dir");
    let duo = FakeDuo::start_in(dir.path(), Sig::V5, fake_duo::CertKind::Good);
    duo.set_user("alice", User::default());
    let cache = dir.path().join("cache/cache.sqlite3");
    let config = dir.path().join("auth-duo.toml");
    let ctx = Ctx {
        bin,
        dir,
        duo,
        config,
        cache,
    };
    private(&ctx.config, &config_text(&ctx, ""));
    ctx
}

fn config_text(ctx: &Ctx, cache_section: &str) -> String {
    let cache = if cache_section.is_empty() {
        format!("[cache]\npath = \"{}\"\n", ctx.cache.display())
    } else {
        cache_section.to_string()
    };
    format!(
        "[duo]\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\napi_hostname = \"{}\"\n\
         ca_file = \"{}\"\ntimeout = 20\n\n{cache}\n[log]\nsyslog = false\n",
        ctx.duo.host(),
        ctx.duo.ca_file.display()
    )
}

fn approve(ctx: &Ctx, user: &str) {
    let (code, _) = login(ctx, user, "push");
    assert_eq!(code, 0, "first login must be approved");
}

fn login(ctx: &Ctx, user: &str, pw: &str) -> (i32, Duration) {
    run_login(
        &ctx.bin,
        &ctx.config,
        &ctx.dir.path().join("up.txt"),
        user,
        pw,
    )
}

fn openvpn_cmd(bin: &Path, config: &Path, cred: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("untrusted_ip", "203.0.113.7")
        .env("common_name", "alice-laptop")
        .arg("--config")
        .arg(config)
        .arg(cred)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

fn run_login(bin: &Path, config: &Path, cred: &Path, user: &str, pw: &str) -> (i32, Duration) {
    private(cred, &format!("{user}\n{pw}\n"));
    let t = Instant::now();
    let status = openvpn_cmd(bin, config, cred).status().expect("run");
    (status.code().unwrap_or(-1), t.elapsed())
}

fn reconnect_storm(ctx: &Ctx, n: usize) -> (Duration, usize, String) {
    let cred = ctx.dir.path().join("up-storm.txt");
    private(&cred, "alice\npush\n");
    let requests_before = ctx.duo.requests().len();
    let t = Instant::now();
    let children: Vec<_> = (0..n)
        .map(|_| {
            openvpn_cmd(&ctx.bin, &ctx.config, &cred)
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut failures = 0;
    for c in children {
        let out = c.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr);
        if out.status.code() != Some(0)
            || !stderr.contains("via=cache")
            || stderr.lines().count() != 1
        {
            failures += 1;
        }
    }
    let wall = t.elapsed();
    failures += ctx.duo.requests().len() - requests_before;
    let integrity: String = rusqlite::Connection::open(&ctx.cache)
        .and_then(|c| c.query_row("PRAGMA integrity_check", [], |r| r.get(0)))
        .unwrap_or_else(|e| e.to_string());
    (wall, failures, integrity)
}

/// Runs one push auth as a child and prints the child's peak RSS in KiB.
fn rss_probe() {
    let ctx = setup();
    let nocache = ctx.dir.path().join("nocache.toml");
    private(
        &nocache,
        &config_text(&ctx, "[cache]\nttl = 0\npath = \"/nonexistent/x\"\n"),
    );
    let (code, _) = run_login(
        &ctx.bin,
        &nocache,
        &ctx.dir.path().join("up.txt"),
        "alice",
        "push",
    );
    assert_eq!(code, 0);
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a full rusage into the pointer we own; zeroed is a valid rusage.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_CHILDREN, usage.as_mut_ptr());
        usage.assume_init()
    };
    println!("{}", usage.ru_maxrss);
}
