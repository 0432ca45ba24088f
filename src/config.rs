//! The TOML configuration: strict parsing (unknown keys name key and line), named defaults, a
//! separate `check()` for rules across fields, and permission checks on the files that hold the
//! Duo secret key.

use crate::credentials::Secret;
use crate::error::Error;
use serde::{Deserialize, Deserializer};
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

pub const DEFAULT_PATH: &str = "/etc/openvpn/auth-duo.toml";
const MAX_CONFIG_BYTES: u64 = 1 << 20;
const PLACEHOLDER_IKEY: &str = "DIXXXXXXXXXXXXXXXXXX";
const PLACEHOLDER_HOST: &str = "api-xxxxxxxx.duosecurity.com";
const PLACEHOLDER_SKEY: &str = "REPLACE-WITH-YOUR-SECRET-KEY";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub duo: DuoConfig,
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub openvpn: OpenVpnConfig,
    #[serde(default)]
    pub log: LogConfig,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DuoConfig {
    pub integration_key: String,
    #[serde(default)]
    pub secret_key: Option<Secret>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    pub api_hostname: String,
    #[serde(default = "default_mode")]
    pub mode: Mode,
    #[serde(default = "default_failmode")]
    pub failmode: FailMode,
    #[serde(default = "default_timeout")]
    pub timeout: u64,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default = "default_signature")]
    pub signature: Signature,
    #[serde(default)]
    pub proxy: Option<String>,
    #[serde(default = "default_true")]
    pub pushinfo: bool,
    #[serde(default)]
    pub push_type: Option<String>,
    #[serde(default)]
    pub server_name: Option<String>,
    #[serde(default = "default_username_from")]
    pub username_from: UsernameFrom,
    #[serde(default = "default_normalization")]
    pub username_normalization: Normalization,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Push,
    Phone,
    Passcode,
    PushPhone,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailMode {
    Secure,
    Safe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    V5,
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UsernameFrom {
    Username,
    CommonName,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Normalization {
    None,
    Simple,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    #[serde(default = "default_cache_path")]
    pub path: PathBuf,
    #[serde(default = "default_ttl")]
    pub ttl: u64,
    #[serde(default)]
    pub max_age: u64,
    #[serde(default)]
    pub match_hwaddr: bool,
    #[serde(default)]
    pub match_platform: bool,
    #[serde(default)]
    pub match_uv_id: bool,
    #[serde(default = "default_ipv6_prefix")]
    pub ipv6_prefix: u8,
    #[serde(default)]
    pub instance: Option<String>,
    #[serde(default = "default_true")]
    pub trust_auth_token: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OpenVpnConfig {
    #[serde(default = "default_true")]
    pub defer: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    #[serde(default = "default_true")]
    pub syslog: bool,
    #[serde(default = "default_facility")]
    pub facility: Facility,
    #[serde(default)]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Facility {
    Auth,
    Authpriv,
    Daemon,
    Local0,
    Local1,
    Local2,
    Local3,
    Local4,
    Local5,
    Local6,
    Local7,
}

fn default_mode() -> Mode {
    Mode::PushPhone
}
fn default_failmode() -> FailMode {
    FailMode::Secure
}
fn default_timeout() -> u64 {
    50
}
fn default_signature() -> Signature {
    Signature::V5
}
fn default_true() -> bool {
    true
}
fn default_username_from() -> UsernameFrom {
    UsernameFrom::Username
}
fn default_normalization() -> Normalization {
    Normalization::None
}
fn default_cache_path() -> PathBuf {
    PathBuf::from("/var/lib/openvpn-auth-duo/cache.sqlite3")
}
fn default_ttl() -> u64 {
    28_800
}
fn default_ipv6_prefix() -> u8 {
    128
}
fn default_facility() -> Facility {
    Facility::Authpriv
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            path: default_cache_path(),
            ttl: default_ttl(),
            max_age: 0,
            match_hwaddr: false,
            match_platform: false,
            match_uv_id: false,
            ipv6_prefix: default_ipv6_prefix(),
            instance: None,
            trust_auth_token: true,
        }
    }
}

impl Default for OpenVpnConfig {
    fn default() -> Self {
        OpenVpnConfig { defer: true }
    }
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            syslog: true,
            facility: default_facility(),
            file: None,
        }
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl Config {
    /// Reads, parses and checks the file, then loads the secret key from wherever it lives.
    pub fn load(path: &Path) -> Result<Config, Error> {
        let (text, mode) = read_guarded(path, "config file")?;
        let mut config =
            Config::parse(&text).map_err(|m| Error::Config(format!("{}: {m}", path.display())))?;
        if config.duo.secret_key.is_some() {
            refuse_world_readable(path, mode)?;
        }
        if let Some(file) = &config.duo.secret_key_file {
            let (secret, mode) = read_guarded(file, "secret_key_file")?;
            refuse_world_readable(file, mode)?;
            let secret = secret.trim();
            if secret.is_empty() {
                return Err(Error::Config(format!(
                    "secret_key_file {} is empty",
                    file.display()
                )));
            }
            config.duo.secret_key = Some(Secret::new(secret.to_owned()));
        }
        Ok(config)
    }

    /// Parses TOML text and applies `check()`; errors are one line naming the line number.
    pub fn parse(text: &str) -> Result<Config, String> {
        let config: Config = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let msg = e.message().replace('\n', " ");
            match line {
                Some(l) => format!("line {l}: {msg}"),
                None => msg,
            }
        })?;
        config.check()?;
        Ok(config)
    }

    /// Rules that span fields or values serde cannot express.
    pub fn check(&self) -> Result<(), String> {
        let duo = &self.duo;
        match (&duo.secret_key, &duo.secret_key_file) {
            (Some(_), Some(_)) => {
                return Err("set secret_key or secret_key_file in [duo], not both".into())
            }
            (None, None) => return Err("[duo] needs secret_key or secret_key_file".into()),
            (Some(s), None) if s.expose().is_empty() => {
                return Err("[duo] secret_key is empty".into())
            }
            _ => {}
        }
        let placeholders: Vec<&str> = [
            (duo.integration_key == PLACEHOLDER_IKEY, "integration_key"),
            (
                duo.secret_key
                    .as_ref()
                    .is_some_and(|s| s.expose() == PLACEHOLDER_SKEY),
                "secret_key",
            ),
            (duo.api_hostname == PLACEHOLDER_HOST, "api_hostname"),
        ]
        .into_iter()
        .filter_map(|(is, name)| is.then_some(name))
        .collect();
        if !placeholders.is_empty() {
            let names = match placeholders.as_slice() {
                [one] => format!("{one} is"),
                [a, b] => format!("{a} and {b} are"),
                [a, b, c, ..] => format!("{a}, {b} and {c} are"),
                [] => String::new(),
            };
            let plural = if placeholders.len() > 1 { "s" } else { "" };
            return Err(format!(
                "[duo] {names} still the example placeholder{plural}; copy the values from the Duo Admin Panel (Applications > your OpenVPN application)"
            ));
        }
        let ikey = &duo.integration_key;
        if ikey.len() != 20
            || !ikey.starts_with("DI")
            || !ikey
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        {
            return Err(
                "[duo] integration_key must be 20 upper-case letters and digits starting with DI"
                    .into(),
            );
        }
        check_hostname(&duo.api_hostname)?;
        if !(1..=300).contains(&duo.timeout) {
            return Err(format!(
                "[duo] timeout must be 1 to 300 seconds (keep it below OpenVPN's hand-window, 60 by default), not {}",
                duo.timeout
            ));
        }
        if let Some(t) = &duo.push_type {
            if t.is_empty() || t.len() > 100 || t.chars().any(char::is_control) {
                return Err("[duo] push_type must be 1 to 100 printable characters".into());
            }
        }
        if let Some(n) = &duo.server_name {
            if n.len() > 255 || n.chars().any(char::is_control) {
                return Err("[duo] server_name must be at most 255 printable characters".into());
            }
        }
        if let Some(p) = &duo.proxy {
            if !p.starts_with("http://") || ureq::Proxy::new(p).is_err() {
                return Err(
                    "[duo] proxy must look like http://host:port or http://user:pass@host:port"
                        .into(),
                );
            }
        }
        let cache = &self.cache;
        if cache.ttl > 31 * 86_400 || cache.max_age > 366 * 86_400 {
            return Err("[cache] ttl is limited to 31 days and max_age to 366 days".into());
        }
        if !(1..=128).contains(&cache.ipv6_prefix) {
            return Err("[cache] ipv6_prefix must be 1 to 128".into());
        }
        if cache.path.as_os_str().is_empty() || !cache.path.is_absolute() {
            return Err("[cache] path must be an absolute file path".into());
        }
        if let Some(i) = &cache.instance {
            if i.is_empty() || i.len() > 255 || i.chars().any(char::is_control) {
                return Err("[cache] instance must be 1 to 255 printable characters".into());
            }
        }
        Ok(())
    }

    pub fn secret(&self) -> &Secret {
        // load() and check() guarantee one is present; an empty secret can only fail signing.
        static EMPTY: std::sync::OnceLock<Secret> = std::sync::OnceLock::new();
        self.duo
            .secret_key
            .as_ref()
            .unwrap_or_else(|| EMPTY.get_or_init(|| Secret::new(String::new())))
    }
}

fn check_hostname(host: &str) -> Result<(), String> {
    if host.contains("://") || host.contains('/') {
        return Err(format!(
            "[duo] api_hostname must be a bare host name such as api-1234abcd.duosecurity.com, without https:// or a path (got {host:?})"
        ));
    }
    let (name, port) = match host.rsplit_once(':') {
        Some((n, p)) => (n, Some(p)),
        None => (host, None),
    };
    // DNS labels of 1-63 letters, digits and inner hyphens: anything else would either fail to
    // form the https:// URL later or be a host Duo never uses.
    let name_ok = name.len() <= 253
        && name.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
    // All digits: `str::parse::<u16>` would also take "+443", which no URL accepts.
    let port_ok = port.is_none_or(|p| {
        !p.is_empty()
            && p.bytes().all(|b| b.is_ascii_digit())
            && p.parse::<u16>().is_ok_and(|p| p != 0)
    });
    if !name_ok || !port_ok {
        return Err(format!(
            "[duo] api_hostname {host:?} is not a valid host[:port]"
        ));
    }
    // The Duo client builds https://HOST/…; what its URL parser refuses (a numeric last label
    // read as IPv4, bad punycode) would otherwise surface at login time.
    if ureq::get(&format!("https://{}/", host.to_ascii_lowercase()))
        .request_url()
        .is_err()
    {
        return Err(format!(
            "[duo] api_hostname {host:?} is not a valid host[:port]"
        ));
    }
    Ok(())
}

/// Opens a file the config depends on, refusing it when others could have written it, and
/// returns its text and mode. Checks the opened descriptor, so the file cannot be swapped between
/// the check and the read.
fn read_guarded(path: &Path, what: &str) -> Result<(String, u32), Error> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::Config(format!(
            "cannot open {what} {}: {}",
            path.display(),
            crate::io_reason(&e)
        ))
    })?;
    let meta = file
        .metadata()
        .map_err(|e| Error::Config(format!("cannot stat {}: {e}", path.display())))?;
    if !meta.is_file() {
        return Err(Error::Config(format!(
            "{what} {} is not a regular file",
            path.display()
        )));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o022 != 0 {
        return Err(Error::Config(format!(
            "{what} {} is group- or world-writable (mode {mode:04o}), so anyone could change who gets in; run chmod go-w on it",
            path.display()
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| Error::Config(format!("cannot read {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_CONFIG_BYTES {
        return Err(Error::Config(format!(
            "{what} {} is larger than 1 MiB",
            path.display()
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| Error::Config(format!("{what} {} is not valid UTF-8", path.display())))?;
    Ok((text, mode))
}

fn refuse_world_readable(path: &Path, mode: u32) -> Result<(), Error> {
    if mode & 0o004 != 0 {
        return Err(Error::Config(format!(
            "{} holds the Duo secret key but is world-readable (mode {mode:04o}); run chmod o-r on it (the package installs it root:nogroup 0640)",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[duo]
integration_key = "DITESTINTEGRATION001"
secret_key = "0123456789012345678901234567890123456789"
api_hostname = "api-test.example.com"
"#;

    #[test]
    fn minimal_config_gets_defaults() {
        let c = Config::parse(MINIMAL).expect("valid");
        assert_eq!(c.duo.mode, Mode::PushPhone);
        assert_eq!(c.duo.failmode, FailMode::Secure);
        assert_eq!(c.duo.timeout, 50);
        assert_eq!(c.duo.signature, Signature::V5);
        assert_eq!(c.cache.ttl, 28_800);
        assert!(c.openvpn.defer);
    }

    #[test]
    fn unknown_key_names_key_and_line() {
        let text = format!("{MINIMAL}modee = \"push\"\n");
        let err = Config::parse(&text).expect_err("unknown key");
        assert!(err.contains("modee"), "{err}");
        assert!(err.contains("line 6"), "{err}");
        assert!(!err.contains('\n'));
    }

    #[test]
    fn cross_field_rules() {
        let both = MINIMAL.replace("api_hostname", "secret_key_file = \"/x\"\napi_hostname");
        assert!(Config::parse(&both).unwrap_err().contains("not both"));
        let scheme = MINIMAL.replace("api-test.example.com", "https://api-test.example.com");
        assert!(Config::parse(&scheme)
            .unwrap_err()
            .contains("without https://"));
        let placeholder = MINIMAL.replace("DITESTINTEGRATION001", PLACEHOLDER_IKEY);
        assert!(Config::parse(&placeholder)
            .unwrap_err()
            .contains("placeholder"));
        let plus_port = MINIMAL.replace("api-test.example.com", "api-test.example.com:+443");
        assert!(
            Config::parse(&plus_port)
                .unwrap_err()
                .contains("api_hostname"),
            "found by the config fuzz target"
        );
        for bad in [
            "api..example.com",
            ".example.com",
            "-api.example.com",
            "api-.example.com",
            "api.example.com.",
        ] {
            let text = MINIMAL.replace("api-test.example.com", bad);
            assert!(Config::parse(&text).is_err(), "{bad} accepted");
        }
        let timeout = format!("{MINIMAL}timeout = 0\n");
        assert!(Config::parse(&timeout).unwrap_err().contains("timeout"));
    }

    #[test]
    fn all_placeholders_are_named_in_one_line() {
        let example = MINIMAL
            .replace("DITESTINTEGRATION001", PLACEHOLDER_IKEY)
            .replace("0123456789012345678901234567890123456789", PLACEHOLDER_SKEY)
            .replace("api-test.example.com", PLACEHOLDER_HOST);
        let err = Config::parse(&example).unwrap_err();
        assert!(
            err.contains(
                "integration_key, secret_key and api_hostname are still the example placeholders"
            ),
            "{err}"
        );
    }

    #[test]
    fn api_hostname_must_form_the_client_url() {
        // Found by the config fuzz target: each passed the byte and label rules, but the URL
        // parser refuses it, so every login was "Duo unavailable" and failmode = safe let it in.
        for host in [
            "a.78",
            "256.0.0.1",
            "1.2.3.4.5",
            "a.0x1",
            "xn--a",
            "xn--zz.com",
        ] {
            let text = MINIMAL.replace("api-test.example.com", host);
            assert!(Config::parse(&text).is_err(), "{host} accepted");
        }
        for host in [
            "api-1234abcd.duosecurity.com",
            "api-test.example.com:8443",
            "1.2.3.4",
        ] {
            let text = MINIMAL.replace("api-test.example.com", host);
            assert!(Config::parse(&text).is_ok(), "{host} refused");
        }
    }

    #[test]
    fn secret_never_in_debug_output() {
        let c = Config::parse(MINIMAL).expect("valid");
        assert!(!format!("{c:?}").contains("0123456789012345678901234567890123456789"));
    }
}
