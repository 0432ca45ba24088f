//! `credentials::parse_factor`: the password-field grammar (SCRV1 static challenge, text after the
//! last comma, factor words), on any UTF-8. Compared with an oracle written from the doc comment;
//! also checked through an SCRV1 wrapping of the same text, and for secret leaks in errors.

use crate::{assert_not_leaked, valid_text};
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use base64::Engine as _;
use openvpn_auth_duo::codec::base64_encode;
use openvpn_auth_duo::credentials::{parse_factor, Factor, Secret, MAX_PASSWORD};
use openvpn_auth_duo::error::Error;

/// Standard alphabet, no stray trailing bits, padding canonical ...
const PADDED: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireCanonical)
        .with_decode_allow_trailing_bits(false),
);
/// ... or absent. (The crate's `Indifferent` mode is laxer than that: it takes `Zg=`.)
const UNPADDED: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::RequireNone)
        .with_decode_allow_trailing_bits(false),
);

/// What `codec::base64_decode` documents: standard alphabet with optional padding, `None` for
/// anything malformed (including partial padding and non-zero leftover bits).
pub fn reference_b64_decode(text: &str) -> Option<Vec<u8>> {
    if text.ends_with('=') {
        PADDED.decode(text).ok()
    } else {
        UNPADDED.decode(text).ok()
    }
}

/// Factor text to factor: digits are a passcode; `push`/`phone`/`sms`, any case, alone or with a
/// device number 1 to 99 (one or two digits); everything else is the configured default.
pub fn oracle_text(text: &str) -> Factor {
    let t = text.trim_matches(char::is_whitespace);
    if !t.is_empty() && t.chars().all(|c| c.is_ascii_digit()) {
        return Factor::Passcode(Secret::new(t.to_owned()));
    }
    type Make = fn(Option<u32>) -> Factor;
    let words: [(&str, Make); 3] = [
        ("push", Factor::Push),
        ("phone", Factor::Phone),
        ("sms", Factor::Sms),
    ];
    for (word, make) in words {
        if t.len() < word.len() || !t.is_char_boundary(word.len()) {
            continue;
        }
        let (head, tail) = t.split_at(word.len());
        if !head.eq_ignore_ascii_case(word) {
            continue;
        }
        match tail.as_bytes() {
            [] => return make(None),
            [d @ b'0'..=b'9'] if *d != b'0' => return make(Some(u32::from(d - b'0'))),
            [a @ b'0'..=b'9', b @ b'0'..=b'9'] if (a, b) != (&b'0', &b'0') => {
                return make(Some(u32::from(a - b'0') * 10 + u32::from(b - b'0')))
            }
            _ => {}
        }
    }
    Factor::Default
}

/// The whole field: `None` where the grammar says the field is malformed.
pub fn oracle(field: &str) -> Option<Factor> {
    if let Some(rest) = field.strip_prefix("SCRV1:") {
        let colon = rest.find(':')?;
        let bytes = reference_b64_decode(&rest[colon + 1..])?;
        let text = valid_text(&bytes, MAX_PASSWORD)?;
        return Some(oracle_text(text));
    }
    Some(oracle_text(field.rsplit(',').next().unwrap_or(field)))
}

/// parse_factor on one password field, against the oracle, with the leak check on errors.
pub fn check_password(field: &str) -> Option<Factor> {
    let got = parse_factor(&Secret::new(field.to_owned()));
    let want = oracle(field);
    match got {
        Ok(f) => {
            assert_eq!(Some(&f), want.as_ref(), "parse_factor({field:?})");
            match &f {
                Factor::Passcode(p) => {
                    let p = p.expose();
                    assert!(!p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
                }
                Factor::Push(Some(n)) | Factor::Phone(Some(n)) | Factor::Sms(Some(n)) => {
                    assert!((1..=99).contains(n), "device number {n}");
                }
                _ => {}
            }
            assert_not_leaked("Debug of Factor", &format!("{f:?}"), field.as_bytes());
            Some(f)
        }
        Err(e) => {
            assert!(
                want.is_none(),
                "parse_factor({field:?}) failed ({e}), expected {want:?}"
            );
            assert!(matches!(e, Error::Input(_)), "wrong error kind {e:?}");
            assert_not_leaked("factor error", &e.to_string(), field.as_bytes());
            None
        }
    }
}

pub fn check(data: &[u8]) {
    let field = crate::text(data);
    check_password(&field);

    // The same text as a static-challenge response must give the factor the text gives on its own
    // (SCRV1 takes the whole response, no comma rule), whatever the password part holds.
    let scrv1 = format!(
        "SCRV1:{}:{}",
        base64_encode(data),
        base64_encode(field.as_bytes())
    );
    let via_scrv1 = check_password(&scrv1);
    if valid_text(field.as_bytes(), MAX_PASSWORD).is_some() {
        assert_eq!(via_scrv1, Some(oracle_text(&field)), "SCRV1 of {field:?}");
    } else {
        assert_eq!(
            via_scrv1, None,
            "SCRV1 accepted a response with control characters"
        );
    }

    // `password,FACTOR`: the text after the last comma decides.
    if !field.contains(',') {
        let with_password = format!("Tr0ub4dor&3,{field}");
        assert_eq!(check_password(&with_password), Some(oracle_text(&field)));
    }
}
