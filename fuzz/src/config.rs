//! `config::Config::parse` on any text: never panics; errors are one line and, when they carry a
//! line number, it is a line of the file; an accepted config satisfies every rule `check()`
//! states; the secret key never shows in the Debug output or in an error.

use openvpn_auth_duo::config::Config;

/// The secret the text assigns, read with a plain TOML parser, if it is a string written out
/// literally, once.
fn secret_in(text: &str) -> Option<String> {
    let v: toml::Table = toml::from_str(text).ok()?;
    let s = v.get("duo")?.get("secret_key")?.as_str()?.to_owned();
    (s.len() >= 8 && text.matches(s.as_str()).count() == 1).then_some(s)
}

/// A stand-in for the secret, as long, made of letters no message or Debug output contains.
fn canary_for(secret: &str) -> String {
    "Zq7Xk3Vw"
        .chars()
        .cycle()
        .take(secret.chars().count())
        .collect()
}

/// Whether the message shows the secret because of the secret: the same text with the secret
/// swapped for a canary of the same length must not show the canary. (Comparing with fixed
/// message text instead would trip on secrets that happen to quote a message.)
fn leaks_secret(text: &str, msg: &str, secret: &str) -> bool {
    if !msg.contains(secret) {
        return false;
    }
    let canary = canary_for(secret);
    if text.contains(&canary) {
        return false;
    }
    match Config::parse(&text.replacen(secret, &canary, 1)) {
        Ok(_) => false,
        Err(m) => m.contains(&canary),
    }
}

fn check_ok(text: &str, c: &Config) {
    assert_eq!(c.check(), Ok(()), "check() is not stable");
    let duo = &c.duo;
    assert!(duo.secret_key.is_some() != duo.secret_key_file.is_some());
    let ikey = duo.integration_key.as_bytes();
    assert!(ikey.len() == 20 && ikey.starts_with(b"DI"));
    assert!(ikey
        .iter()
        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()));
    let host = &duo.api_hostname;
    assert!(!host.is_empty() && !host.contains('/'), "{host:?}");
    assert!(host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b)));
    // What check() accepts must be usable: the client puts it into https://HOST/path as is.
    let url = format!("https://{}/auth/v2/check", host.to_ascii_lowercase());
    if let Err(e) = ureq::get(&url).request_url() {
        panic!("api_hostname {host:?} passes check() but {url:?} is no URL ({e})");
    }
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

    // The secret never shows in Debug output (Secret prints as [redacted]); tested by swapping
    // it for a canary, so that the same text in another field does not count.
    if let Some(secret) = &duo.secret_key {
        let secret = secret.expose();
        let debug = format!("{c:?}");
        if secret.len() >= 8 && debug.contains(secret) && text.matches(secret).count() == 1 {
            let canary = canary_for(secret);
            if !text.contains(&canary) {
                if let Ok(c2) = Config::parse(&text.replacen(secret, &canary, 1)) {
                    let debug2 = format!("{c2:?}");
                    assert!(
                        !debug2.contains(&canary),
                        "Debug of Config shows the secret: {debug2}"
                    );
                }
            }
        }
    }
}

pub fn check(data: &[u8]) {
    let text = crate::text(data);
    match Config::parse(&text) {
        Ok(c) => check_ok(&text, &c),
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
                assert!(
                    !leaks_secret(&text, &msg, &secret),
                    "config error {msg:?} shows the secret"
                );
            }
        }
    }
}
