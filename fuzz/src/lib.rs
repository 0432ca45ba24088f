//! Invariant checks for the fuzz targets. Each module's `check` is what one target runs; every
//! check panics (and so makes libFuzzer report a crash) when the code under test panics, or
//! when an invariant breaks. Where practical the result is compared with an independent oracle
//! written here from the documented grammar, not copied from `src/`.

pub mod codec_base64;
pub mod codec_misc;
pub mod config;
pub mod credfile;
pub mod duo_auth_result;
pub mod duo_preauth;
pub mod env;
pub mod factor;

/// Characters that appear in the fixed parts of error messages. A secret made only of these could
/// show up in a message by coincidence, so the leak checks skip it.
fn template_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b" ()[]{}<>-,./:;_'`\"=".contains(&b)
}

/// A secret long and odd enough that finding it inside a message can only mean it leaked.
pub fn distinctive(secret: &[u8]) -> bool {
    secret.len() >= 8 && secret.iter().any(|&b| !template_byte(b))
}

pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || haystack.windows(needle.len()).any(|w| w == needle)
}

/// Panics when a distinctive secret appears in an error message (or any other text).
pub fn assert_not_leaked(what: &str, text: &str, secret: &[u8]) {
    if distinctive(secret) {
        assert!(
            !contains(text.as_bytes(), secret),
            "{what} leaks a secret: {text:?} contains {:?}",
            String::from_utf8_lossy(secret)
        );
    }
}

/// The grammar's rule for one untrusted text field (`credentials::text_field`), restated.
pub fn valid_text(raw: &[u8], max: usize) -> Option<&str> {
    if raw.len() > max {
        return None;
    }
    let s = std::str::from_utf8(raw).ok()?;
    if s.chars().any(|c| c.is_control()) {
        return None;
    }
    Some(s)
}

/// The input as text: invalid UTF-8 becomes U+FFFD, so every input exercises the parser.
pub fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}
