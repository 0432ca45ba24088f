//! Test harness: a temp dir with a config pointing at a fresh fake Duo server, and helpers that
//! run the real binary exactly as OpenVPN would (credential file + OpenVPN's bare environment).
#![allow(dead_code)]

use crate::fake_duo::{FakeDuo, Sig, User, IKEY, SKEY};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_openvpn-auth-duo")
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

impl Run {
    /// The decision line the binary logged (stderr copy of the syslog line).
    pub fn decision(&self) -> &str {
        self.stderr
            .lines()
            .rev()
            .find(|l| l.contains(" result="))
            .unwrap_or("")
    }
    /// How the decision was reached: the `via=` field of the decision line.
    pub fn via(&self) -> &str {
        self.decision()
            .split_whitespace()
            .find_map(|w| w.strip_prefix("via="))
            .unwrap_or("")
    }

    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub duo: FakeDuo,
    pub config: PathBuf,
    pub extra: String,
}

impl Setup {
    pub fn new() -> Setup {
        Setup::with(Sig::V5, "")
    }

    /// `extra` is TOML appended inside `[duo]` (keys) or as further sections.
    pub fn with(sig: Sig, extra: &str) -> Setup {
        let duo = FakeDuo::start(sig);
        Setup::around(duo, sig, extra)
    }

    pub fn around(duo: FakeDuo, sig: Sig, extra: &str) -> Setup {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = dir.path().join("auth-duo.toml");
        let s = Setup {
            dir,
            duo,
            config,
            extra: extra.to_string(),
        };
        s.write_config(sig, extra);
        s.duo.set_user("alice", User::default());
        s
    }

    pub fn config_text(&self, sig: Sig, extra: &str) -> String {
        let sig = match sig {
            Sig::V2 => "v2",
            Sig::V5 => "v5",
        };
        let (duo_keys, sections) = split_extra(extra);
        // Defaults the tests rely on, unless the test sets the key itself.
        let defaults: String = [("timeout", "10"), ("mode", "\"push_phone\"")]
            .iter()
            .filter(|(k, _)| !duo_keys.lines().any(|l| l.starts_with(&format!("{k} "))))
            .map(|(k, v)| format!("{k} = {v}\n"))
            .collect();
        // The harness's own [cache] and [log] keys merge into a test's sections of that name.
        let mut sections = sections;
        for (header, keys) in [
            (
                "[cache]\n",
                format!(
                    "path = \"{}\"\n",
                    self.dir.path().join("cache/cache.sqlite3").display()
                ),
            ),
            ("[log]\n", "syslog = false\n".to_string()),
        ] {
            if sections.contains(header) {
                sections = sections.replacen(header, &format!("{header}{keys}"), 1);
            } else {
                sections.push_str(&format!("\n{header}{keys}"));
            }
        }
        format!(
            "[duo]\nintegration_key = \"{IKEY}\"\nsecret_key = \"{SKEY}\"\napi_hostname = \"{}\"\n\
             ca_file = \"{}\"\nsignature = \"{sig}\"\n{defaults}{duo_keys}\n{sections}\n",
            self.duo.host(),
            self.duo.ca_file.display(),
        )
    }

    pub fn write_config(&self, sig: Sig, extra: &str) {
        write_private(&self.config, &self.config_text(sig, extra));
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the binary via-file with OpenVPN's environment plus `env`.
    pub fn verify(&self, user: &str, password: &str, env: &[(&str, &str)]) -> Run {
        let cred = self.path("up.txt");
        write_private(&cred, &format!("{user}\n{password}\n"));
        self.verify_credfile(&cred, env)
    }

    pub fn verify_credfile(&self, cred: &Path, env: &[(&str, &str)]) -> Run {
        let mut cmd = openvpn_command();
        cmd.arg("--config").arg(&self.config).arg(cred);
        cmd.env("untrusted_ip", "203.0.113.7")
            .env("untrusted_port", "51234")
            .env("common_name", "alice-laptop");
        for (k, v) in env {
            cmd.env(k, v);
        }
        run(cmd)
    }

    /// Runs a subcommand (`check`, `test …`) as a person would.
    pub fn cmd(&self, args: &[&str]) -> Run {
        run(self.command(args))
    }

    /// `cmd` with `input` on standard input.
    pub fn cmd_with_stdin(&self, args: &[&str], input: &[u8]) -> Run {
        run_with_stdin(self.command(args), Some(input))
    }

    /// The cache file the harness's config points at.
    pub fn cache_db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.path("cache/cache.sqlite3")).expect("open cache")
    }

    /// Moves every cached approval to 100 s before its end, so that a hit must write to slide
    /// it, then holds the write lock: an EXCLUSIVE transaction open until `COMMIT` on the
    /// returned connection.
    pub fn hold_cache_write_lock(&self) -> rusqlite::Connection {
        let db = self.cache_db();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs() as i64;
        db.execute("UPDATE approvals SET expires = ?1", [now + 100])
            .expect("update");
        db.execute_batch("BEGIN EXCLUSIVE; UPDATE approvals SET last_used = last_used;")
            .expect("lock");
        db
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin());
        cmd.arg("--config").arg(&self.config).args(args);
        cmd
    }
}

/// Splits test-supplied TOML into lines for `[duo]` and whole later sections.
fn split_extra(extra: &str) -> (String, String) {
    match extra.find("\n[").or(if extra.starts_with('[') {
        Some(0)
    } else {
        None
    }) {
        Some(i) => (extra[..i].to_string(), extra[i..].to_string()),
        None => (extra.to_string(), String::new()),
    }
}

/// A command with the environment OpenVPN gives scripts: no PATH, no HOME.
pub fn openvpn_command() -> Command {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("script_type", "user-pass-verify")
        .stdin(Stdio::null());
    cmd
}

pub fn run(cmd: Command) -> Run {
    run_with_stdin(cmd, None)
}

/// Runs `cmd` to completion; with `input`, that is its standard input (else as `cmd` says).
pub fn run_with_stdin(mut cmd: Command, input: Option<&[u8]>) -> Run {
    let start = Instant::now();
    let out = match input {
        None => cmd.output().expect("run binary"),
        Some(input) => {
            let mut child = cmd
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("run binary");
            // The binary may stop reading early (a length limit does): ignore EPIPE.
            let _ = child.stdin.take().expect("stdin").write_all(input);
            child.wait_with_output().expect("wait")
        }
    };
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        elapsed: start.elapsed(),
    }
}

pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
}

/// Waits for `cond` to hold, checking every 20 ms, for at most `timeout`; returns whether it held.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The files OpenVPN 2.6 creates for a deferrable script, empty, and the env naming them.
pub struct ControlFiles {
    pub control: PathBuf,
    pub reason: PathBuf,
    pub pending: PathBuf,
}

impl ControlFiles {
    pub fn new(s: &Setup, tag: &str) -> ControlFiles {
        let c = ControlFiles {
            control: s.path(&format!("acf-{tag}")),
            reason: s.path(&format!("afr-{tag}")),
            pending: s.path(&format!("apf-{tag}")),
        };
        for p in [&c.control, &c.reason, &c.pending] {
            write_private(p, "");
        }
        c
    }

    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("auth_control_file", self.control.display().to_string()),
            ("auth_failed_reason_file", self.reason.display().to_string()),
            ("auth_pending_file", self.pending.display().to_string()),
        ]
    }

    /// Waits for the background process's answer: Some("1"/"0") or None on timeout.
    pub fn answer(&self, timeout: Duration) -> Option<String> {
        let mut got = None;
        wait_until(timeout, || {
            let text = std::fs::read_to_string(&self.control).unwrap_or_default();
            if text.is_empty() {
                false
            } else {
                got = Some(text);
                true
            }
        });
        got
    }

    pub fn reason(&self) -> String {
        std::fs::read_to_string(&self.reason).unwrap_or_default()
    }
}

/// The background pid from a `result=defer` line.
pub fn background_pid(run: &Run) -> u32 {
    let line = run.decision();
    let after = line
        .split("background process ")
        .nth(1)
        .unwrap_or_else(|| panic!("no background pid in {line}"));
    after
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .expect("pid")
}

impl Setup {
    /// Replaces text in the config file (keeping it private).
    pub fn edit_config(&self, from: &str, to: &str) {
        let text = std::fs::read_to_string(&self.config).expect("config");
        assert!(text.contains(from), "{from:?} not in the config");
        write_private(&self.config, &text.replace(from, to));
    }

    /// Points `api_hostname` at a loopback port nobody listens on.
    pub fn point_at_closed_port(&self) {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        self.edit_config(&self.duo.host(), &format!("localhost:{port}"));
    }
}
