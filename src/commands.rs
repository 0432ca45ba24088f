//! What each invocation does: verify (OpenVPN), `check` and `test` (people).

use crate::cache::Cache;
use crate::cli::{CacheAction, Cli, Command};
use crate::codec::iso8601;
use crate::config::{Config, FailMode};
use crate::credentials::{self, Credentials};
use crate::duo::Client;
use crate::error::Error;
use crate::log::Level;
use crate::log::{self, Log};
use crate::openvpn::Env;
use crate::openvpn::{spawn_background, write_answer, write_failed_reason, Handover};
use crate::{ask_duo, decide, log_decision, prepare, Attempt, DuoStage, Step, Verdict};
use crate::{EXIT_DEFERRED, EXIT_DENY};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn dispatch(cli: Result<Cli, i32>) -> i32 {
    let cli = match cli {
        Ok(c) => c,
        Err(code) => return code,
    };
    if cli.credfile.is_some() && cli.command.is_some() {
        eprintln!("openvpn-auth-duo: give either CREDFILE or a subcommand, not both");
        return EXIT_DENY;
    }
    match cli.command {
        None => verify(&cli.config, cli.credfile.as_deref()),
        Some(Command::Check) => check(&cli.config),
        Some(Command::Test {
            username,
            password_field,
            ip,
            common_name,
        }) => {
            let env = Env {
                ip,
                common_name,
                ..Env::default()
            };
            test(&cli.config, &username, password_field, env)
        }
        Some(Command::Cache { action }) => cache_command(&cli.config, action),
        Some(Command::Background) => background(&cli.config),
    }
}

fn cache_command(config_path: &Path, action: CacheAction) -> i32 {
    let result = Config::load(config_path)
        .map_err(|e| e.to_string())
        .and_then(|config| {
            let (cache, note) = Cache::open(&config.cache);
            if let Some(note) = &note {
                eprintln!("openvpn-auth-duo: {note}");
            }
            let cache = cache.ok_or_else(|| note.unwrap_or_default())?;
            let now = crate::unix_now();
            match action {
                CacheAction::List => {
                    println!("user\tcommon_name\tip\tapproved_at\tlast_used\texpires\tstate");
                    for e in cache.list()? {
                        let clean = |s: &str| s.replace(['\t', '\n'], " ");
                        println!(
                            "{}\t{}\t{}\t{}\t{}\t{}\t{}",
                            clean(&e.user),
                            clean(&e.common_name),
                            clean(&e.ip),
                            iso8601(e.approved_at),
                            iso8601(e.last_used),
                            iso8601(e.expires),
                            if e.expires > now { "active" } else { "expired" }
                        );
                    }
                    Ok(())
                }
                CacheAction::Forget { user } => {
                    let n = cache.forget(&user)?;
                    println!("forgot {n} cached approval(s) of {user}");
                    Ok(())
                }
                CacheAction::Purge { expired } => {
                    let n = cache.purge(expired, now)?;
                    let which = if expired { "expired " } else { "" };
                    println!("purged {n} {which}cached approval(s)");
                    Ok(())
                }
            }
        });
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("FAIL: {e}");
            EXIT_DENY
        }
    }
}

/// OpenVPN's call: decide, log one line, tell the client why on deny, exit 0/1.
fn verify(config_path: &Path, credfile: Option<&Path>) -> i32 {
    let config = Config::load(config_path);
    let log = Log::new(log::new_id(), config.as_ref().ok().map(|c| &c.log), true);
    let env = Env::from_process();
    let mut attempt = env.as_ref().map(Attempt::from_env).unwrap_or_default();
    let creds = match credfile {
        Some(path) => credentials::from_file(path),
        None => credentials::from_env(
            std::env::var_os("username").as_deref(),
            std::env::var_os("password").as_deref(),
        ),
    };
    if let Ok(c) = &creds {
        attempt.user = Some(c.username.to_string());
    }
    let verdict = match (config, &env, creds) {
        (Err(e), _, _) => Verdict::from_error(e, None),
        (Ok(c), Err(e), _) => Verdict::from_error(e.clone(), Some(c.duo.failmode)),
        (Ok(c), _, Err(e)) => Verdict::from_error(e, Some(c.duo.failmode)),
        (Ok(config), Ok(env), Ok(creds)) => {
            let failmode = Some(config.duo.failmode);
            match prepare(&config, &creds, env, &mut attempt, &log) {
                Err(e) => Verdict::from_error(e, failmode),
                Ok(Step::Done(v)) => v,
                Ok(Step::AskDuo(pending)) => {
                    // OpenVPN 2.6+ offers deferral: answer later so the server keeps serving.
                    if config.openvpn.defer && env.auth_control_file.is_some() {
                        let handover = Handover {
                            id: log.id.clone(),
                            username: creds.username.to_string(),
                            password: creds.password.expose().to_owned(),
                            env: Handover::capture_env(),
                        };
                        match spawn_background(config_path, &handover) {
                            Ok(pid) => {
                                let why = format!("asking Duo in background process {pid}");
                                log.write(
                                    Level::Info,
                                    &format!("{} via=defer", attempt.line("defer", &why)),
                                );
                                return EXIT_DEFERRED;
                            }
                            Err(e) => log
                                .write(Level::Warning, &format!("{e}; deciding without deferral")),
                        }
                    }
                    ask_duo(&config, env, pending, &mut attempt, &log, &|_| {})
                        .unwrap_or_else(|e| Verdict::from_error(e, failmode))
                }
            }
        }
    };
    log_decision(&log, &attempt, &verdict);
    if let (Ok(env), false) = (&env, verdict.allow) {
        write_failed_reason(env, &verdict.client_reason);
    }
    verdict.exit_code()
}

/// The detached half of a deferred login: decide through Duo and answer in auth_control_file,
/// always before OpenVPN's deadline. Killed or crashed, it leaves no answer, which OpenVPN turns
/// into a deny at hand-window.
fn background(config_path: &Path) -> i32 {
    let config = Config::load(config_path);
    let handover = match Handover::read_from_stdin() {
        Ok(h) => h,
        Err(e) => {
            // Without the handover there is no control file to answer in; OpenVPN denies at
            // hand-window. Say so where the admin looks.
            let log = Log::new(log::new_id(), config.as_ref().ok().map(|c| &c.log), true);
            log.write(
                Level::Error,
                &format!("background: {e}; the login stays unanswered"),
            );
            return EXIT_DENY;
        }
    };
    let log = Log::new(
        handover.id.clone(),
        config.as_ref().ok().map(|c| &c.log),
        false,
    );
    let env = match handover.env() {
        Ok(env) => env,
        Err(e) => {
            log.write(Level::Error, &format!("background: {e}"));
            return EXIT_DENY;
        }
    };
    let mut attempt = Attempt::from_env(&env);
    attempt.user = Some(handover.username.clone());
    let answered = Arc::new(AtomicBool::new(false));
    let failmode = config.as_ref().ok().map(|c| c.duo.failmode);
    if let Ok(c) = &config {
        // The Duo client keeps its own deadline; this also covers what it cannot bound, such
        // as a hanging DNS lookup. It stays inside OpenVPN's hand-window.
        let timeout = c.duo.timeout;
        let limit =
            (crate::started() + Duration::from_secs(c.duo.timeout) + Duration::from_secs(2))
                .saturating_duration_since(std::time::Instant::now());
        let (answered, env, attempt, id, log_cfg) = (
            answered.clone(),
            env.clone(),
            attempt.clone(),
            handover.id.clone(),
            c.log.clone(),
        );
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            if !answered.swap(true, Ordering::SeqCst) {
                let late = format!("no answer within the {timeout} s timeout");
                let verdict = match crate::duo_stage() {
                    DuoStage::NotAsked => Verdict::from_error(
                        Error::Io(format!("{late}, stalled before asking Duo")),
                        failmode,
                    ),
                    DuoStage::AwaitingPreauth => {
                        Verdict::from_error(Error::DuoUnavailable(late), failmode)
                    }
                    DuoStage::PreauthAnswered => Verdict::unanswered(&late),
                };
                finish(
                    &Log::new(id, Some(&log_cfg), false),
                    &attempt,
                    &env,
                    &verdict,
                );
                std::process::exit(0);
            }
        });
    }
    let creds = Credentials::parse(handover.username.as_bytes(), handover.password.as_bytes());
    let verdict = match (&config, creds) {
        (Err(e), _) => Verdict::from_error(e.clone(), None),
        (Ok(c), Err(e)) => Verdict::from_error(e, Some(c.duo.failmode)),
        (Ok(c), Ok(creds)) => decide(c, &creds, &env, &mut attempt, &log, &|_| {}),
    };
    if !answered.swap(true, Ordering::SeqCst) {
        finish(&log, &attempt, &env, &verdict);
    }
    0
}

/// Logs a deferred login's decision and answers OpenVPN with it.
fn finish(log: &Log, attempt: &Attempt, env: &Env, verdict: &Verdict) {
    log_decision(log, attempt, verdict);
    if let Err(e) = write_answer(env, verdict.allow, &verdict.client_reason) {
        log.write(Level::Error, &e.to_string());
    }
}

/// OpenVPN's default `hand-window`, in seconds.
const OPENVPN_HAND_WINDOW: u64 = 60;

fn check(config_path: &Path) -> i32 {
    match check_inner(config_path) {
        Ok(msg) => {
            println!("OK: {msg}");
            0
        }
        Err(msg) => {
            eprintln!("FAIL: {msg}");
            EXIT_DENY
        }
    }
}

fn check_inner(config_path: &Path) -> Result<String, String> {
    let config = Config::load(config_path).map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(config.duo.timeout.min(15));
    let client =
        Client::new(&config.duo, config.secret().clone(), deadline).map_err(|e| e.to_string())?;
    let host = &config.duo.api_hostname;
    let duo_time = client.check().map_err(|e| match &e {
        // 40101 no credentials, 40102 unknown integration key, 40103 bad signature.
        Error::DuoFail {
            code: Some(40101..=40103),
            ..
        } => {
            format!("bad key: Duo at {host} rejected integration_key/secret_key ({e})")
        }
        // Duo's code for a Date header too far from its clock is not in our reference; 40105
        // is what peers report, and its text names the timestamp.
        Error::DuoFail { code, message }
            if *code == Some(40105) || message.to_ascii_lowercase().contains("timestamp") =>
        {
            format!("clock skew: Duo at {host} rejected the request time; fix this machine's clock (NTP) ({e})")
        }
        Error::DuoUnavailable(m) => format!("Duo unreachable: {m}"),
        _ => e.to_string(),
    })?;
    let skew = crate::unix_now() - duo_time;
    if skew.abs() > 60 {
        return Err(format!(
            "clock skew: this machine's clock is {skew:+} s off Duo's; Duo rejects signatures from skewed clocks, fix NTP"
        ));
    }
    let mut msg = format!(
        "{} is valid and Duo at {host} accepted the keys (clock offset {skew:+} s, failmode {})",
        config_path.display(),
        match config.duo.failmode {
            FailMode::Secure => "secure",
            FailMode::Safe => "safe",
        }
    );
    // OpenVPN stops waiting at hand-window; an answer after it is lost and the login fails
    // whatever Duo said. We cannot see server.conf, so say it while the admin is looking.
    if config.duo.timeout >= OPENVPN_HAND_WINDOW {
        msg.push_str(&format!(
            "; note: timeout {} s needs hand-window above it in server.conf (OpenVPN's default is {OPENVPN_HAND_WINDOW})",
            config.duo.timeout
        ));
    }
    Ok(msg)
}

/// One line, without its line ending. Read at most one byte past the longest password allowed,
/// so that an endless stream ends as an "oversized" error from `Credentials::parse`.
fn read_line_from_stdin() -> std::io::Result<Vec<u8>> {
    use std::io::{BufRead, Read};
    let mut line = Vec::new();
    std::io::stdin()
        .lock()
        .take(credentials::MAX_PASSWORD as u64 + 2)
        .read_until(b'\n', &mut line)?;
    if line.last() == Some(&b'\n') {
        line.pop();
        if line.last() == Some(&b'\r') {
            line.pop();
        }
    }
    Ok(line)
}

/// The same decision as under OpenVPN, with progress for a person at a terminal.
fn test(config_path: &Path, username: &str, password_field: String, env: Env) -> i32 {
    let config = match Config::load(config_path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("FAIL: {e}");
            return EXIT_DENY;
        }
    };
    let log = Log::new(log::new_id(), Some(&config.log), true);
    let mut attempt = Attempt::from_env(&env);
    let field = if password_field == "-" {
        match read_line_from_stdin() {
            Ok(line) => line,
            Err(e) => {
                eprintln!("FAIL: cannot read the password field from standard input: {e}");
                return EXIT_DENY;
            }
        }
    } else {
        password_field.into_bytes()
    };
    let creds = Credentials::parse(username.as_bytes(), &field);
    let verdict = match creds {
        Ok(creds) => {
            attempt.user = Some(creds.username.to_string());
            decide(&config, &creds, &env, &mut attempt, &log, &|msg| {
                println!("{msg}")
            })
        }
        Err(e) => Verdict::from_error(e, Some(config.duo.failmode)),
    };
    log_decision(&log, &attempt, &verdict);
    println!(
        "result: {} ({})",
        if verdict.allow { "ALLOW" } else { "DENY" },
        verdict.reason
    );
    verdict.exit_code()
}
