//! The one error type. Every variant ends in a deny except `DuoUnavailable`, which the
//! configured failmode decides; the mapping to exit codes lives in [`crate::Verdict`].

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The configuration file is missing, unreadable, malformed or unsafe.
    Config(String),
    /// The credentials or environment OpenVPN handed us are malformed.
    Input(String),
    /// Duo could not be reached in time (DNS, connect, TLS other than the certificate, timeout,
    /// 5xx). Failmode applies, but only until Duo has answered preauth (see `DuoStage`).
    DuoUnavailable(String),
    /// Duo answered, but with something we do not understand.
    Duo(String),
    /// Duo answered `"stat":"FAIL"`: its numeric code (40103 is a bad signature) and its text,
    /// control characters removed and length bounded.
    DuoFail { code: Option<u64>, message: String },
    /// Duo's server failed TLS verification (certificate for another host, expired, unknown CA):
    /// a wrong `ca_file`, an intercepting proxy or an attack, never an outage, so no failmode.
    Untrusted(String),
    /// Duo kept answering 429 until the timeout: it is there but refuses, so no failmode.
    RateLimited(String),
    /// A login rule says no before Duo is asked (e.g. passcode mode without a passcode).
    Refused(String),
    /// Local I/O problem outside the config and credentials (deferral plumbing, terminals).
    Io(String),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Config(m) => write!(f, "config error: {m}"),
            Error::Input(m) => write!(f, "bad input: {m}"),
            Error::DuoUnavailable(m) => write!(f, "Duo unavailable: {m}"),
            Error::Duo(m) => write!(f, "Duo error: {m}"),
            Error::DuoFail { code, message } => {
                write!(f, "Duo error: Duo refused the request: ")?;
                if let Some(c) = code {
                    write!(f, "{c} ")?;
                }
                write!(f, "{message}")
            }
            Error::Untrusted(m) => write!(f, "Duo server not trusted: {m}"),
            Error::RateLimited(m) => write!(f, "too many attempts: {m}"),
            Error::Refused(m) => write!(f, "{m}"),
            Error::Io(m) => write!(f, "I/O error: {m}"),
        }
    }
}

impl std::error::Error for Error {}
