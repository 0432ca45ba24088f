//! openvpn-auth-duo: Duo two-factor authentication for OpenVPN's `auth-user-pass-verify`.
//!
//! The decision path reads top to bottom in [`decide`]: credentials and environment are
//! validated, the factor is read from the password field, the reconnect cache is consulted, and
//! only then is Duo asked (preauth, then auth). Every error becomes a deny, except Duo being
//! unreachable, which the configured failmode decides.
#![deny(unsafe_code)]

pub mod cache;
pub mod cli;
pub mod codec;
pub mod commands;
pub mod config;
pub mod credentials;
pub mod duo;
pub mod error;
pub mod log;
pub mod openvpn;

use config::{Config, FailMode, Mode, Normalization, UsernameFrom};
use credentials::{Credentials, Factor, Secret};
use duo::{Client, Device};
use error::Error;
use log::{field, Level, Log};
use openvpn::Env;
use std::sync::atomic::{AtomicU8, Ordering};
use std::time::{Duration, Instant};

pub const EXIT_ALLOW: i32 = 0;
pub const EXIT_DENY: i32 = 1;
pub const EXIT_DEFERRED: i32 = 2;

/// Entry point for `main`: parses arguments and returns the process exit code.
pub fn run() -> i32 {
    started();
    commands::dispatch(cli::parse())
}

/// When this process started. `timeout` bounds the whole decision from here, so time lost on
/// a slow cache comes out of the Duo budget instead of pushing past OpenVPN's hand-window.
pub fn started() -> Instant {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *START.get_or_init(Instant::now)
}

/// How far this process's exchange with Duo got. Only while preauth is outstanding can a
/// missing answer mean "Duo unreachable" (failmode); before it, the stall is local; after it,
/// Duo is known to be reachable and nobody approved in time. A process decides one login, so
/// process-wide state is that login's state (the background watchdog thread reads it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuoStage {
    NotAsked = 0,
    AwaitingPreauth = 1,
    PreauthAnswered = 2,
}

static DUO_STAGE: AtomicU8 = AtomicU8::new(DuoStage::NotAsked as u8);

fn set_duo_stage(stage: DuoStage) {
    DUO_STAGE.store(stage as u8, Ordering::SeqCst);
}

pub fn duo_stage() -> DuoStage {
    match DUO_STAGE.load(Ordering::SeqCst) {
        0 => DuoStage::NotAsked,
        1 => DuoStage::AwaitingPreauth,
        _ => DuoStage::PreauthAnswered,
    }
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// How a decision was reached; shown in the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    /// Duo approved or denied the second factor.
    Duo,
    /// Duo's preauth said the user may skip 2FA.
    Bypass,
    /// Duo was unreachable and the failmode decided.
    Failmode,
    /// A Duo approval for the same key inside the cache window.
    Cache,
    /// OpenVPN verified its own auth-token (`session_state=Authenticated`).
    Token,
    /// Refused before Duo was asked (bad input, config, a rule).
    Refused,
}

#[derive(Debug, Clone)]
pub struct Verdict {
    pub allow: bool,
    pub how: How,
    /// For the log: what happened and why.
    pub reason: String,
    /// For the VPN client (`AUTH_FAILED,<text>`): short and free of internals.
    pub client_reason: String,
}

impl Verdict {
    fn allow(how: How, reason: impl Into<String>) -> Verdict {
        Verdict {
            allow: true,
            how,
            reason: reason.into(),
            client_reason: String::new(),
        }
    }

    fn deny(how: How, reason: impl Into<String>, client: impl Into<String>) -> Verdict {
        Verdict {
            allow: false,
            how,
            reason: reason.into(),
            client_reason: client.into(),
        }
    }

    /// Duo answered preauth but not the auth request in time: most likely a push or call nobody
    /// answered. Denied whatever the failmode, since Duo was reachable.
    pub fn unanswered(detail: &str) -> Verdict {
        Verdict::deny(
            How::Duo,
            format!(
                "Duo answered preauth but not auth ({detail}); denying whatever the failmode, as Duo was reachable (a push or call nobody answered ends this way)"
            ),
            "Duo did not approve the login in time",
        )
    }

    /// The one place where decisions become exit codes.
    pub fn exit_code(&self) -> i32 {
        if self.allow {
            EXIT_ALLOW
        } else {
            EXIT_DENY
        }
    }

    /// Turns an error into a decision: failmode for an unreachable Duo, deny for everything else.
    pub fn from_error(err: Error, failmode: Option<FailMode>) -> Verdict {
        match (err, failmode) {
            (Error::DuoUnavailable(m), Some(FailMode::Safe)) => Verdict::allow(
                How::Failmode,
                format!("Duo unavailable: {m}; failmode safe applied, allowing"),
            ),
            (Error::DuoUnavailable(m), _) => Verdict::deny(
                How::Failmode,
                format!("Duo unavailable: {m}; failmode secure applied, denying"),
                "Duo is unavailable, try again later",
            ),
            (e @ Error::Untrusted(_), _) => Verdict::deny(
                How::Refused,
                format!("{e}; denying whatever the failmode (a setup problem or interception, not an outage)"),
                "Duo is unavailable, try again later",
            ),
            (e @ Error::RateLimited(_), _) => Verdict::deny(
                How::Duo,
                e.to_string(),
                "too many attempts, try again later",
            ),
            (e @ (Error::Duo(_) | Error::DuoFail { .. }), _) => {
                Verdict::deny(How::Duo, e.to_string(), "Duo authentication failed")
            }
            (Error::Refused(m), _) => {
                let client = m.clone();
                Verdict::deny(How::Refused, m, client)
            }
            (e, _) => Verdict::deny(How::Refused, e.to_string(), "authentication failed"),
        }
    }
}

/// What the log line says about the login, filled in as the decision proceeds.
#[derive(Debug, Clone, Default)]
pub struct Attempt {
    pub user: Option<String>,
    pub common_name: Option<String>,
    pub ip: Option<String>,
    pub factor: Option<&'static str>,
}

impl Attempt {
    pub fn from_env(env: &Env) -> Attempt {
        Attempt {
            common_name: env.common_name.clone(),
            ip: env.ip_string(),
            ..Attempt::default()
        }
    }

    pub fn line(&self, result: &str, verdict_reason: &str) -> String {
        format!(
            "user={} cn={} ip={} factor={} result={result} reason={}",
            field(self.user.as_deref().unwrap_or("-")),
            field(self.common_name.as_deref().unwrap_or("-")),
            field(self.ip.as_deref().unwrap_or("-")),
            self.factor.unwrap_or("-"),
            field(verdict_reason),
        )
    }
}

/// Writes the one decision line for a login.
pub fn log_decision(log: &Log, attempt: &Attempt, verdict: &Verdict) {
    let result = if verdict.allow { "allow" } else { "deny" };
    let level = if verdict.allow {
        Level::Info
    } else {
        Level::Warning
    };
    let how = match verdict.how {
        How::Duo => "duo",
        How::Bypass => "bypass",
        How::Failmode => "failmode",
        How::Cache => "cache",
        How::Token => "token",
        How::Refused => "refused",
    };
    log.write(
        level,
        &format!("{} via={how}", attempt.line(result, &verdict.reason)),
    );
}

/// Progress for a person watching (`test` subcommand); silent under OpenVPN.
pub type Progress<'a> = &'a dyn Fn(&str);

/// The whole decision for one login, given a loaded config: the instant part, then Duo.
pub fn decide(
    config: &Config,
    creds: &Credentials,
    env: &Env,
    attempt: &mut Attempt,
    log: &Log,
    progress: Progress,
) -> Verdict {
    let result = prepare(config, creds, env, attempt, log).and_then(|step| match step {
        Step::Done(v) => Ok(v),
        Step::AskDuo(pending) => ask_duo(config, env, pending, attempt, log, progress),
    });
    match result {
        Ok(v) => v,
        Err(e) => Verdict::from_error(e, Some(config.duo.failmode)),
    }
}

/// Where the instant part of a decision ends.
pub enum Step {
    Done(Verdict),
    /// Only Duo can decide; this is the point where a deferred run hands over.
    AskDuo(Box<Pending>),
}

pub struct Pending {
    duo_user: String,
    wanted: Wanted,
    cache: Option<cache::Cache>,
    key: cache::Key,
}

/// Everything that is decided without Duo: input, the username, the factor grammar, OpenVPN's
/// auth-token, the reconnect cache and rules such as "passcode mode needs a passcode".
pub fn prepare(
    config: &Config,
    creds: &Credentials,
    env: &Env,
    attempt: &mut Attempt,
    log: &Log,
) -> Result<Step, Error> {
    let duo_user = duo_username(config, creds, env)?;
    attempt.user = Some(duo_user.clone());
    let factor = credentials::parse_factor(&creds.password)?;
    attempt.factor = Some(factor.name());

    if config.cache.trust_auth_token && env.session_state.as_deref() == Some("Authenticated") {
        return Ok(Step::Done(Verdict::allow(
            How::Token,
            "OpenVPN verified its auth-token (session_state=Authenticated)",
        )));
    }
    let cache = open_cache(config, log);
    let key = cache::Key::new(&config.cache, &duo_user, env);
    if let Some(c) = &cache {
        match c.hit(&key, crate::unix_now()) {
            Ok(true) => {
                return Ok(Step::Done(Verdict::allow(
                    How::Cache,
                    "Duo approved this user, client and server within the cache window",
                )))
            }
            Ok(false) => {}
            Err(e) => log.write(Level::Warning, &format!("{e}; asking Duo instead")),
        }
    }

    let wanted = Wanted::from(factor, config.duo.mode)?;
    attempt.factor = Some(wanted.name());
    Ok(Step::AskDuo(Box::new(Pending {
        duo_user,
        wanted,
        cache,
        key,
    })))
}

/// The Duo exchange: preauth, then auth with the chosen factor, on one TLS connection.
pub fn ask_duo(
    config: &Config,
    env: &Env,
    pending: Box<Pending>,
    attempt: &mut Attempt,
    log: &Log,
    progress: Progress,
) -> Result<Verdict, Error> {
    let Pending {
        duo_user,
        wanted,
        cache,
        key,
    } = *pending;
    let deadline = started() + Duration::from_secs(config.duo.timeout);
    let client = Client::new(&config.duo, config.secret().clone(), deadline)?;
    let ip = env.ip_string();
    progress(&format!("asking Duo about {duo_user} (preauth)"));
    set_duo_stage(DuoStage::AwaitingPreauth);
    let pre = client.preauth(&duo_user, ip.as_deref())?;
    set_duo_stage(DuoStage::PreauthAnswered);
    match pre.result.as_str() {
        "auth" => {}
        "allow" => {
            return Ok(Verdict::allow(
                How::Bypass,
                format!(
                    "Duo preauth allows without 2FA (bypass): {}",
                    pre.status_msg
                ),
            ))
        }
        "deny" => {
            return Ok(Verdict::deny(
                How::Duo,
                format!("Duo preauth denies: {}", pre.status_msg),
                "access denied by Duo",
            ))
        }
        "enroll" => {
            let url = pre.enroll_portal_url.trim();
            let url = if url.is_empty() {
                "the Duo enrollment portal (ask your administrator)"
            } else {
                url
            };
            return Ok(Verdict::deny(
                How::Duo,
                format!("user is not enrolled in Duo; enroll at {url}"),
                format!("Duo enrollment required: {url}"),
            ));
        }
        other => {
            return Err(Error::Duo(format!(
                "unexpected preauth result {:?}",
                other.chars().take(40).collect::<String>()
            )))
        }
    }

    let plan = wanted.plan(&pre.devices)?;
    attempt.factor = Some(plan.factor());
    let mut params: Vec<(&str, &str)> = vec![("username", &duo_user), ("factor", plan.factor())];
    if let Some(ip) = ip.as_deref() {
        params.push(("ipaddr", ip));
    }
    let pushinfo;
    match &plan {
        Plan::Passcode(code) => {
            params.push(("passcode", code.expose()));
            progress("checking passcode with Duo");
        }
        Plan::Device(kind, device) => {
            params.push(("device", &device.device));
            if *kind == "push" {
                if let Some(t) = &config.duo.push_type {
                    params.push(("type", t));
                }
                if config.duo.pushinfo {
                    pushinfo = push_info(config, env);
                    params.push(("pushinfo", &pushinfo));
                }
            }
            let doing = match *kind {
                "push" => "push sent to",
                "phone" => "calling",
                _ => "sending SMS passcodes to",
            };
            progress(&format!("{doing} {}, waiting", device.describe()));
        }
    }
    let res = match client.auth(&params) {
        Ok(res) => res,
        Err(Error::DuoUnavailable(m)) => return Ok(Verdict::unanswered(&m)),
        Err(e) => return Err(e),
    };
    let msg = &res.status_msg;
    let what = plan.factor();
    if res.result == "allow" && res.status != "bypass" {
        if let Some(c) = &cache {
            // Duo has approved: a locked cache must not hold the answer past the deadline
            // (the deferred watchdog would deny at timeout + 2 s). Skipping the store only
            // means the next login asks Duo again.
            c.wait_at_most(
                deadline.saturating_duration_since(Instant::now()) + Duration::from_secs(1),
            );
            if let Err(e) = c.store(&key, crate::unix_now()) {
                log.write(
                    Level::Warning,
                    &format!("{e}; the next login will ask Duo again"),
                );
            }
        }
    }
    Ok(match (res.result.as_str(), res.status.as_str()) {
        ("allow", "bypass") => Verdict::allow(How::Bypass, format!("Duo bypass: {msg}")),
        ("allow", _) => Verdict::allow(How::Duo, format!("{what} approved: {msg}")),
        ("deny", "sent") => Verdict::deny(
            How::Duo,
            "SMS passcodes sent; the user must log in again with one".to_string(),
            "Duo SMS passcodes sent; log in again with one",
        ),
        ("deny", "timeout") => Verdict::deny(
            How::Duo,
            format!("{what} timed out: {msg}"),
            format!("Duo {what} timed out"),
        ),
        ("deny", "fraud") => Verdict::deny(
            How::Duo,
            format!("{what} reported as fraud: {msg}"),
            format!("Duo {what} denied"),
        ),
        ("deny", "locked_out") => Verdict::deny(
            How::Duo,
            format!("user locked out: {msg}"),
            "Duo account locked out",
        ),
        ("deny", _) if what == "passcode" => Verdict::deny(
            How::Duo,
            format!("passcode rejected: {msg}"),
            "Duo passcode wrong",
        ),
        ("deny", _) => Verdict::deny(
            How::Duo,
            format!("{what} denied: {msg}"),
            format!("Duo {what} denied"),
        ),
        (other, _) => {
            return Err(Error::Duo(format!(
                "unexpected auth result {:?}",
                other.chars().take(40).collect::<String>()
            )))
        }
    })
}

/// The cache, unless disabled (`ttl = 0`) or unusable (logged; Duo is asked instead).
fn open_cache(config: &Config, log: &Log) -> Option<cache::Cache> {
    if config.cache.ttl == 0 {
        return None;
    }
    let (cache, note) = cache::Cache::open(&config.cache);
    if let Some(note) = note {
        let tail = if cache.is_some() {
            ""
        } else {
            "; asking Duo instead"
        };
        log.write(Level::Warning, &format!("{note}{tail}"));
    }
    cache
}

/// The Duo username: typed or certificate CN, optionally with Duo's "Simple" normalization.
pub fn duo_username(config: &Config, creds: &Credentials, env: &Env) -> Result<String, Error> {
    let raw = match config.duo.username_from {
        UsernameFrom::Username => creds.username.as_str(),
        UsernameFrom::CommonName => env.common_name.as_deref().ok_or_else(|| {
            Error::Input(
                "username_from = \"common_name\" but the client presented no certificate common_name"
                    .into(),
            )
        })?,
    };
    let name = match config.duo.username_normalization {
        Normalization::None => raw,
        Normalization::Simple => simple_normalize(raw),
    };
    if name.trim().is_empty() {
        return Err(Error::Input("username is empty".into()));
    }
    Ok(name.to_owned())
}

/// Duo's "Simple" normalization: `DOMAIN\alice` and `alice@example.com` become `alice`.
pub fn simple_normalize(name: &str) -> &str {
    let name = name.rsplit_once('\\').map_or(name, |(_, n)| n);
    name.split_once('@').map_or(name, |(n, _)| n)
}

/// What the user asked for, after the configured mode filled in a missing choice.
pub enum Wanted {
    Passcode(Secret),
    Device(&'static str, Option<u32>),
    PushOrPhone,
}

impl Wanted {
    fn from(factor: Factor, mode: Mode) -> Result<Wanted, Error> {
        Ok(match (factor, mode) {
            (Factor::Passcode(p), _) => Wanted::Passcode(p),
            (Factor::Push(n), _) => Wanted::Device("push", n),
            (Factor::Phone(n), _) => Wanted::Device("phone", n),
            (Factor::Sms(n), _) => Wanted::Device("sms", n),
            (Factor::Default, Mode::Push) => Wanted::Device("push", None),
            (Factor::Default, Mode::Phone) => Wanted::Device("phone", None),
            (Factor::Default, Mode::PushPhone) => Wanted::PushOrPhone,
            (Factor::Default, Mode::Passcode) => {
                return Err(Error::Refused(
                    "Duo passcode required: enter it in the password field (mode is passcode)"
                        .into(),
                ))
            }
        })
    }

    fn name(&self) -> &'static str {
        match self {
            Wanted::Passcode(_) => "passcode",
            Wanted::Device(kind, _) => kind,
            Wanted::PushOrPhone => "push_phone",
        }
    }

    fn plan(self, devices: &[Device]) -> Result<Plan<'_>, Error> {
        let pick = |cap: &str, nth: Option<u32>| {
            let mut capable = devices.iter().filter(|d| d.can(cap));
            match nth {
                None => capable.next(),
                Some(n) => capable.nth(n.saturating_sub(1) as usize),
            }
        };
        match self {
            Wanted::Passcode(p) => Ok(Plan::Passcode(p)),
            Wanted::Device(kind, nth) => match pick(kind, nth) {
                Some(d) => Ok(Plan::Device(kind, d)),
                None => Err(Error::Refused(match nth {
                    Some(n) => format!("Duo user has no device number {n} that can do {kind}"),
                    None => format!("Duo user has no device that can do {kind}"),
                })),
            },
            Wanted::PushOrPhone => pick("push", None)
                .map(|d| Plan::Device("push", d))
                .or_else(|| pick("phone", None).map(|d| Plan::Device("phone", d)))
                .ok_or_else(|| {
                    Error::Refused(
                        "Duo user has no device that can do push or phone; use a passcode".into(),
                    )
                }),
        }
    }
}

enum Plan<'a> {
    Passcode(Secret),
    Device(&'static str, &'a Device),
}

impl Plan<'_> {
    fn factor(&self) -> &'static str {
        match self {
            Plan::Passcode(_) => "passcode",
            Plan::Device(kind, _) => kind,
        }
    }
}

/// `pushinfo`: what the user sees in the push besides the request itself.
fn push_info(config: &Config, env: &Env) -> String {
    use codec::percent_encode as enc;
    let server = config
        .duo
        .server_name
        .clone()
        .unwrap_or_else(system_hostname);
    let mut parts = vec![format!("Server={}", enc(&server))];
    if let Some(ip) = env.ip_string() {
        parts.push(format!("Client%20IP={}", enc(&ip)));
    }
    if let Some(cn) = &env.common_name {
        parts.push(format!("Common%20Name={}", enc(cn)));
    }
    parts.join("&")
}

fn system_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "OpenVPN".into())
}

/// An I/O error's reason without the path (callers add the path they know).
pub fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::simple_normalize;

    #[test]
    fn simple_normalization() {
        assert_eq!(simple_normalize("DOMAIN\\alice"), "alice");
        assert_eq!(simple_normalize("alice@example.com"), "alice");
        assert_eq!(simple_normalize("alice"), "alice");
    }
}
