//! Untrusted input from OpenVPN becomes validated newtypes here, at the boundary: the credential
//! file (via-file), the `username`/`password` variables (via-env), and the factor grammar of the
//! password field. Anyone who can run the script can write these, so nothing is assumed.

use crate::codec::base64_decode;
use crate::error::Error;
use std::ffi::OsStr;
use std::fmt;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Largest credential file accepted; OpenVPN itself sends at most 128 (or 4096) bytes a field.
pub const MAX_CREDFILE: usize = 4096;
/// Largest username accepted. Duo usernames are far shorter.
pub const MAX_USERNAME: usize = 256;
/// Largest password field accepted.
pub const MAX_PASSWORD: usize = 4096;

/// A string that must never be printed: passwords and passcodes.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: String) -> Self {
        Secret(s)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

/// A username that is non-empty, bounded, UTF-8 and free of control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Username(String);

impl Username {
    pub fn parse(what: &str, raw: &[u8]) -> Result<Self, Error> {
        let s = text_field(what, raw, MAX_USERNAME)?;
        if s.trim().is_empty() {
            return Err(Error::Input(format!("{what} is empty")));
        }
        Ok(Username(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Username {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone)]
pub struct Credentials {
    pub username: Username,
    pub password: Secret,
}

impl Credentials {
    /// Validates a username and password field from any source (file, env, hand-over, CLI).
    pub fn parse(user: &[u8], pass: &[u8]) -> Result<Credentials, Error> {
        Ok(Credentials {
            username: Username::parse("username", user)?,
            password: Secret(text_field("password", pass, MAX_PASSWORD)?),
        })
    }
}

/// Validates one untrusted text field: bounded length, no NUL, UTF-8, no control characters.
/// The message names the field and the problem, never the content.
pub fn text_field(what: &str, raw: &[u8], max: usize) -> Result<String, Error> {
    if raw.len() > max {
        return Err(Error::Input(format!(
            "{what} is {} bytes, longer than the {max} allowed",
            raw.len()
        )));
    }
    if raw.contains(&0) {
        return Err(Error::Input(format!("{what} contains a NUL byte")));
    }
    let s =
        std::str::from_utf8(raw).map_err(|_| Error::Input(format!("{what} is not valid UTF-8")))?;
    if s.chars().any(char::is_control) {
        return Err(Error::Input(format!("{what} contains control characters")));
    }
    Ok(s.to_owned())
}

/// Reads OpenVPN's via-file credentials: exactly `username\npassword\n`.
pub fn from_file(path: &Path) -> Result<Credentials, Error> {
    let file = std::fs::File::open(path).map_err(|e| {
        Error::Input(format!(
            "cannot open credential file {}: {}",
            path.display(),
            crate::io_reason(&e)
        ))
    })?;
    let mut buf = Vec::with_capacity(256);
    file.take(MAX_CREDFILE as u64 + 1)
        .read_to_end(&mut buf)
        .map_err(|e| {
            Error::Input(format!(
                "cannot read credential file {}: {}",
                path.display(),
                crate::io_reason(&e)
            ))
        })?;
    parse_credfile(&buf)
}

pub fn parse_credfile(buf: &[u8]) -> Result<Credentials, Error> {
    if buf.len() > MAX_CREDFILE {
        return Err(Error::Input(format!(
            "credential file is larger than {MAX_CREDFILE} bytes"
        )));
    }
    let body = buf.strip_suffix(b"\n").unwrap_or(buf);
    let mut lines = body.split(|&b| b == b'\n');
    let user = lines.next().unwrap_or_default();
    let Some(pass) = lines.next() else {
        return Err(Error::Input(
            "credential file has no password line (expected username and password lines)".into(),
        ));
    };
    if lines.next().is_some() {
        return Err(Error::Input(
            "credential file has more than two lines (expected username and password lines)".into(),
        ));
    }
    Credentials::parse(user, pass)
}

/// Reads via-env credentials; OpenVPN passes `password` only at script-security 3.
pub fn from_env(user: Option<&OsStr>, pass: Option<&OsStr>) -> Result<Credentials, Error> {
    let user = user.ok_or_else(|| {
        Error::Input("no credential file argument and no username in the environment".into())
    })?;
    let pass = pass.ok_or_else(|| {
        Error::Input(
            "no password in the environment (via-env needs script-security 3; via-file is preferred)"
                .into(),
        )
    })?;
    Credentials::parse(user.as_bytes(), pass.as_bytes())
}

/// What the user asked Duo to do, read from the password field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Factor {
    Passcode(Secret),
    /// Device number (1-based, among capable devices) when the user typed e.g. `push2`.
    Push(Option<u32>),
    Phone(Option<u32>),
    Sms(Option<u32>),
    /// Nothing recognisable: the configured mode decides.
    Default,
}

impl Factor {
    pub fn name(&self) -> &'static str {
        match self {
            Factor::Passcode(_) => "passcode",
            Factor::Push(_) => "push",
            Factor::Phone(_) => "phone",
            Factor::Sms(_) => "sms",
            Factor::Default => "default",
        }
    }
}

/// The password-field grammar:
/// `SCRV1:<b64 password>:<b64 response>` → the response is the factor text;
/// `anything,FACTOR` → the text after the last comma; otherwise the whole field.
/// Factor text: digits → passcode; `push`/`phone`/`sms` with an optional device number → that
/// factor; anything else (including empty) → the configured mode.
pub fn parse_factor(password: &Secret) -> Result<Factor, Error> {
    let field = password.expose();
    let decoded;
    let text: &str = if let Some(rest) = field.strip_prefix("SCRV1:") {
        let Some((_, response_b64)) = rest.split_once(':') else {
            return Err(Error::Input(
                "static-challenge password (SCRV1) lacks its response part".into(),
            ));
        };
        let bytes = base64_decode(response_b64).ok_or_else(|| {
            Error::Input("static-challenge response (SCRV1) is not valid base64".into())
        })?;
        decoded = text_field("static-challenge response", &bytes, MAX_PASSWORD)?;
        &decoded
    } else if let Some((_, after)) = field.rsplit_once(',') {
        after
    } else {
        field
    };
    Ok(factor_from_text(text.trim()))
}

fn factor_from_text(text: &str) -> Factor {
    if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
        return Factor::Passcode(Secret(text.to_owned()));
    }
    let lower = text.to_ascii_lowercase();
    for (word, make) in [
        ("push", Factor::Push as fn(Option<u32>) -> Factor),
        ("phone", Factor::Phone),
        ("sms", Factor::Sms),
    ] {
        if let Some(num) = lower.strip_prefix(word) {
            if num.is_empty() {
                return make(None);
            }
            if num.len() <= 2 && num.bytes().all(|b| b.is_ascii_digit()) {
                if let Ok(n @ 1..) = num.parse::<u32>() {
                    return make(Some(n));
                }
            }
        }
    }
    Factor::Default
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::base64_encode;

    fn factor(s: &str) -> Factor {
        parse_factor(&Secret(s.into())).expect("parses")
    }

    #[test]
    fn factor_grammar() {
        assert_eq!(factor("123456"), Factor::Passcode(Secret("123456".into())));
        assert_eq!(factor("push"), Factor::Push(None));
        assert_eq!(factor("PUSH2"), Factor::Push(Some(2)));
        assert_eq!(factor("Phone"), Factor::Phone(None));
        assert_eq!(factor("phone3"), Factor::Phone(Some(3)));
        assert_eq!(factor("sms"), Factor::Sms(None));
        assert_eq!(factor(""), Factor::Default);
        assert_eq!(factor("hunter2"), Factor::Default);
        assert_eq!(factor("push0"), Factor::Default);
        assert_eq!(factor("pushy"), Factor::Default);
        assert_eq!(
            factor("secret,123456"),
            Factor::Passcode(Secret("123456".into()))
        );
        assert_eq!(factor("a,b,push"), Factor::Push(None));
        assert_eq!(factor("secret,"), Factor::Default);
    }

    #[test]
    fn static_challenge_response_is_the_factor() {
        let scrv1 = format!(
            "SCRV1:{}:{}",
            base64_encode(b"pw,with:colon"),
            base64_encode(b"654321")
        );
        assert_eq!(factor(&scrv1), Factor::Passcode(Secret("654321".into())));
        assert_eq!(factor("SCRV1::"), Factor::Default);
        assert!(parse_factor(&Secret("SCRV1:abc".into())).is_err());
        assert!(parse_factor(&Secret("SCRV1::!!!".into())).is_err());
    }

    #[test]
    fn credfile_shapes() {
        let c = parse_credfile(b"alice\nsecret,push\n").expect("valid");
        assert_eq!(c.username.as_str(), "alice");
        assert_eq!(c.password.expose(), "secret,push");
        assert!(parse_credfile(b"alice\n").is_err());
        assert!(parse_credfile(b"alice").is_err());
        assert!(parse_credfile(b"alice\npw\nextra\n").is_err());
        assert!(parse_credfile(b"\npw\n").is_err());
        assert!(parse_credfile(b"al\0ice\npw\n").is_err());
        assert!(parse_credfile(b"al\x1bice\npw\n").is_err());
        assert!(parse_credfile(b"alice\np\xffw\n").is_err());
        assert!(parse_credfile(&[b'a'; MAX_CREDFILE + 1]).is_err());
        // An empty password is allowed: the configured mode then decides.
        assert!(parse_credfile(b"alice\n\n").is_ok());
    }

    #[test]
    fn secret_debug_is_redacted() {
        assert!(!format!("{:?}", Secret("123456".into())).contains("123456"));
    }
}
