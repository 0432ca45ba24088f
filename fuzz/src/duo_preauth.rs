//! `duo::parse_response::<Preauth>` on any body Duo (or whoever sits in its place) could send.
//! Shared envelope checks live in [`check_envelope`]; here the devices are described as the
//! `test` command shows them, which must stay printable and bounded.

use openvpn_auth_duo::duo::{parse_response, Preauth};
use openvpn_auth_duo::error::Error;
use serde_json::Value;

/// Checks that hold for every response type: only `Error::Duo`, or `Error::DuoFail` carrying
/// Duo's code for a FAIL; no control characters in any message; FAIL messages bounded; and
/// acceptance only of `{"stat":"OK","response":…}`.
/// Returns the parsed JSON when the parse succeeded, for the caller's own comparisons.
pub fn check_envelope<T>(data: &[u8], result: &Result<T, Error>) -> Option<Value> {
    let json: Option<Value> = serde_json::from_slice(data).ok();
    match result {
        Ok(_) => {
            let v = json.unwrap_or_else(|| panic!("accepted invalid JSON {data:?}"));
            assert_eq!(v.get("stat").and_then(Value::as_str), Some("OK"), "{v}");
            let response = v.get("response").expect("response present");
            assert!(!response.is_null(), "null response accepted");
            Some(v)
        }
        Err(Error::DuoFail { code, message }) => {
            assert!(
                !message.chars().any(char::is_control),
                "control character in {message:?}"
            );
            assert!(
                message.chars().count() <= 250,
                "FAIL message of {} chars",
                message.chars().count()
            );
            let v = json.unwrap_or_else(|| panic!("FAIL from invalid JSON {data:?}"));
            assert_eq!(v.get("stat").and_then(Value::as_str), Some("FAIL"), "{v}");
            assert_eq!(*code, v.get("code").and_then(Value::as_u64), "{v}");
            None
        }
        Err(e) => {
            let Error::Duo(msg) = e else {
                panic!("parse_response gave {e:?}, not Error::Duo or Error::DuoFail");
            };
            assert!(
                !msg.chars().any(char::is_control),
                "control character in {msg:?}"
            );
            if msg.starts_with("unexpected stat") {
                // 40 characters of Duo's text, each at most 10 once escaped (`\u{10ffff}`).
                assert!(msg.chars().count() <= 40 * 10 + 40, "{msg:?}");
            }
            None
        }
    }
}

pub fn check(data: &[u8]) {
    let result = parse_response::<Preauth>(data);
    let json = check_envelope(data, &result);
    if let (Ok(p), Some(v)) = (result, json) {
        let response = &v["response"];
        if let Some(r) = response.get("result") {
            assert_eq!(r.as_str(), Some(p.result.as_str()));
        }
        for d in &p.devices {
            let text = d.describe();
            // Shown on a terminal by `test`: found printing Duo's `type` raw (fixed in 528cfc0).
            assert!(
                !text.chars().any(char::is_control),
                "describe() gives {text:?}"
            );
            // "<type> <label>", the label at most 80 characters. Checked only for a plain type, so
            // that a fix which filters or shortens odd types does not trip this check.
            let plain = d.kind.chars().count() <= 32 && !d.kind.chars().any(char::is_control);
            if plain {
                let kind = if d.kind.is_empty() { "device" } else { &d.kind };
                let label = text
                    .strip_prefix(kind)
                    .and_then(|t| t.strip_prefix(' '))
                    .unwrap_or_else(|| panic!("{text:?} does not start with {kind:?}"));
                assert!(
                    label.chars().count() <= 80,
                    "label of {} chars",
                    label.chars().count()
                );
            }
            for cap in &d.capabilities {
                assert!(d.can(cap));
            }
        }
    }
}
