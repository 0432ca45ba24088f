//! `credentials::parse_credfile`: OpenVPN's via-file credentials, `username\npassword\n`.
//! Compared with an oracle; an accepted username is bounded, printable and non-blank; errors never
//! echo the username or password; the password then goes through the factor grammar, and the
//! username through Duo's "Simple" normalization.

use crate::{assert_not_leaked, valid_text};
use openvpn_auth_duo::credentials::{parse_credfile, MAX_CREDFILE, MAX_PASSWORD, MAX_USERNAME};
use openvpn_auth_duo::error::Error;
use openvpn_auth_duo::simple_normalize;

/// What the file should parse to, from the documented format alone.
fn oracle(data: &[u8]) -> Option<(&str, &str)> {
    if data.len() > MAX_CREDFILE {
        return None;
    }
    let body = match data.last() {
        Some(b'\n') => &data[..data.len() - 1],
        _ => data,
    };
    let nl = body.iter().position(|&b| b == b'\n')?;
    let (user, pass) = (&body[..nl], &body[nl + 1..]);
    if pass.contains(&b'\n') {
        return None;
    }
    let user = valid_text(user, MAX_USERNAME)?;
    if user.chars().all(char::is_whitespace) {
        return None;
    }
    Some((user, valid_text(pass, MAX_PASSWORD)?))
}

/// The two lines as raw bytes, for the leak checks (whatever the parser thought of them).
fn raw_lines(data: &[u8]) -> Vec<&[u8]> {
    data.split(|&b| b == b'\n').take(3).collect()
}

pub fn check(data: &[u8]) {
    let expected = oracle(data);
    match parse_credfile(data) {
        Ok(c) => {
            let (user, pass) = expected.unwrap_or_else(|| panic!("accepted {data:?}"));
            let u = c.username.as_str();
            assert_eq!(u, user);
            assert_eq!(c.password.expose(), pass);
            assert!(u.len() <= MAX_USERNAME, "username of {} bytes", u.len());
            assert!(!u.chars().any(char::is_control), "control char in {u:?}");
            assert!(!u.trim().is_empty(), "blank username {u:?}");
            assert!(!c.password.expose().chars().any(char::is_control));
            assert_eq!(
                format!("{c:?}"),
                format!(
                    "Credentials {{ username: {:?}, password: Secret([redacted]) }}",
                    c.username
                ),
                "Debug of Credentials shows more than the username"
            );

            let n = simple_normalize(u);
            assert!(u.contains(n), "{n:?} is not part of {u:?}");
            assert!(!n.contains('\\'), "{n:?} keeps a domain");
            assert!(!n.contains('@'), "{n:?} keeps a realm");

            crate::factor::check_password(c.password.expose());
        }
        Err(e) => {
            assert!(
                expected.is_none(),
                "rejected {data:?} ({e}), expected {expected:?}"
            );
            assert!(matches!(e, Error::Input(_)), "wrong error kind {e:?}");
            let msg = e.to_string();
            assert!(!msg.chars().any(char::is_control), "{msg:?}");
            for line in raw_lines(data) {
                assert_not_leaked("credential file error", &msg, line);
            }
        }
    }
}
