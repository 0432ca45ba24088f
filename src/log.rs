//! One line per decision, to syslog (ident `openvpn-auth-duo`, facility auth/authpriv/…) and to
//! stderr, which OpenVPN copies into its own log. Lines are `key=value` so they grep and parse.

use crate::config::{Facility, LogConfig};
use std::cell::RefCell;
use std::io::Write;

type SyslogWriter = syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

pub struct Log {
    pub id: String,
    syslog: RefCell<Option<SyslogWriter>>,
    stderr: bool,
    file: Option<std::path::PathBuf>,
}

impl Log {
    /// A logger for one connection; `id` ties every line of one login together.
    pub fn new(id: String, config: Option<&LogConfig>, stderr: bool) -> Log {
        let enabled = config.is_none_or(|c| c.syslog);
        let facility = config.map(|c| c.facility).unwrap_or(Facility::Authpriv);
        let writer = if enabled {
            syslog::unix(syslog::Formatter3164 {
                facility: to_syslog(facility),
                hostname: None,
                process: "openvpn-auth-duo".into(),
                pid: std::process::id(),
            })
            .ok()
        } else {
            None
        };
        Log {
            id,
            syslog: RefCell::new(writer),
            stderr,
            file: config.and_then(|c| c.file.clone()),
        }
    }

    pub fn write(&self, level: Level, text: &str) {
        let line = format!("id={} {text}", self.id);
        if let Some(w) = self.syslog.borrow_mut().as_mut() {
            // Syslog trouble must never change a decision; stderr still carries the line.
            let _ = match level {
                Level::Info => w.info(&line),
                Level::Warning => w.warning(&line),
                Level::Error => w.err(&line),
            };
        }
        if self.stderr {
            let _ = writeln!(std::io::stderr().lock(), "openvpn-auth-duo: {line}");
        }
        if let Some(path) = &self.file {
            // One write of one line with O_APPEND, so concurrent runs do not interleave.
            use std::os::unix::fs::OpenOptionsExt;
            let stamp = crate::codec::iso8601(crate::unix_now());
            let _ = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .mode(0o640)
                .open(path)
                .and_then(|mut f| {
                    f.write_all(
                        format!("{stamp} openvpn-auth-duo[{}]: {line}\n", std::process::id())
                            .as_bytes(),
                    )
                });
        }
    }
}

fn to_syslog(f: Facility) -> syslog::Facility {
    use syslog::Facility as S;
    match f {
        Facility::Auth => S::LOG_AUTH,
        Facility::Authpriv => S::LOG_AUTHPRIV,
        Facility::Daemon => S::LOG_DAEMON,
        Facility::Local0 => S::LOG_LOCAL0,
        Facility::Local1 => S::LOG_LOCAL1,
        Facility::Local2 => S::LOG_LOCAL2,
        Facility::Local3 => S::LOG_LOCAL3,
        Facility::Local4 => S::LOG_LOCAL4,
        Facility::Local5 => S::LOG_LOCAL5,
        Facility::Local6 => S::LOG_LOCAL6,
        Facility::Local7 => S::LOG_LOCAL7,
    }
}

/// A value for a `key=value` line: bare when safe, else double-quoted with escapes, and never
/// with control characters (which could forge extra log lines).
pub fn field(value: &str) -> String {
    let bare = !value.is_empty()
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:@/+".contains(&b));
    if bare {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push('?'),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A short random id for one connection's lines.
pub fn new_id() -> String {
    let mut bytes = [0u8; 4];
    let from_urandom = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .is_ok();
    if !from_urandom {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        bytes = (t ^ std::process::id().rotate_left(16)).to_be_bytes();
    }
    crate::codec::hex(&bytes)
}

#[cfg(test)]
mod tests {
    use super::field;

    #[test]
    fn fields_are_quoted_and_cannot_forge_lines() {
        assert_eq!(field("alice"), "alice");
        assert_eq!(field("bob smith"), "\"bob smith\"");
        assert_eq!(field("a\"b\nc"), "\"a\\\"b?c\"");
        assert_eq!(field(""), "\"\"");
    }
}
