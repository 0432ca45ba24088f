//! `config::Config::parse` on any text: never panics; errors are one line and, when they carry a
//! line number, it is a line of the file; an accepted config satisfies every rule `check()`
//! states; the secret key never shows in the Debug output or in an error.

use crate::assert_not_leaked;
use openvpn_auth_duo::config::Config;

/// The secret the text assigns, read with a plain TOML parser, if it is a string that appears in
/// the text once (so that finding it in a message cannot be an echo of some other field).
fn secret_in(text: &str) -> Option<String> {
    let v: toml::Table = toml::from_str(text).ok()?;
    let s = v.get("duo")?.get("secret_key")?.as_str()?.to_owned();
    (s.len() >= 16 && text.matches(s.as_str()).count() <= 1).then_some(s)
}

fn check_ok(c: &Config) {
    assert_eq!(c.check(), Ok(()), "check() is not stable");
    let duo = &c.duo;
    assert!(duo.secret_key.is_some() != duo.secret_key_file.is_some());
    let ikey = duo.integration_key.as_bytes();
    assert!(ikey.len() == 20 && ikey.starts_with(b"DI"));
    assert!(ikey.iter().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    let host = &duo.api_hostname;
    assert!(!host.is_empty() && !host.contains('/'), "{host:?}");
    assert!(host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)));
    assert!((1..=300).contains(&duo.timeout));
    for s in [&duo.push_type, &duo.server_name, &c.cache.instance]
        .into_iter()
        .flatten()
    {
        assert!(!s.chars().any(char::is_control) && s.len() <= 255, "{s:?}");
    }
    if let Some(p) = &duo.proxy {
        assert!(p.starts_with("http://"), "{p:?}");
    }
    assert!((1..=128).contains(&c.cache.ipv6_prefix));
    assert!(c.cache.path.is_absolute());

    if let Some(secret) = &duo.secret_key {
        let secret = secret.expose();
        if secret.len() >= 8 {
            let debug = format!("{c:?}");
            // It may show legitimately only as part of another field that holds the same text.
            let others = format!(
                "{:?}",
                (
                    &duo.integration_key,
                    &duo.api_hostname,
                    &duo.secret_key_file,
                    &duo.ca_file,
                    &duo.proxy,
                    &duo.push_type,
                    &duo.server_name,
                    &c.cache.path,
                    &c.cache.instance
                )
            );
            if !others.contains(secret) {
                assert_not_leaked("Debug of Config", &debug, secret.as_bytes());
            }
        }
    }
}

pub fn check(data: &[u8]) {
    let text = crate::text(data);
    match Config::parse(&text) {
        Ok(c) => check_ok(&c),
        Err(msg) => {
            assert!(!msg.contains('\n'), "error spans lines: {msg:?}");
            if let Some(rest) = msg.strip_prefix("line ") {
                let n: usize = rest
                    .split(':')
                    .next()
                    .and_then(|n| n.parse().ok())
                    .unwrap_or_else(|| panic!("bad line number in {msg:?}"));
                let lines = text.matches('\n').count() + 1;
                assert!((1..=lines).contains(&n), "line {n} of {lines} in {msg:?}");
            }
            if let Some(secret) = secret_in(&text) {
                assert_not_leaked("config error", &msg, secret.as_bytes());
            }
        }
    }
}
