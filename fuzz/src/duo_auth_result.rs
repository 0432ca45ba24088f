//! `duo::parse_response::<AuthResult>`: the answer to `/auth/v2/auth`, which decides the login.
//! Besides the envelope checks, an accepted answer's `result` and `status` must be exactly the
//! strings Duo sent, since the allow/deny match in `decide` is on them.

use crate::duo_preauth::check_envelope;
use openvpn_auth_duo::duo::{parse_response, AuthResult};
use serde_json::Value;

pub fn check(data: &[u8]) {
    let result = parse_response::<AuthResult>(data);
    let json = check_envelope(data, &result);
    if let (Ok(a), Some(v)) = (result, json) {
        let response = &v["response"];
        if response.is_object() {
            assert_eq!(
                response.get("result").and_then(Value::as_str),
                Some(a.result.as_str())
            );
            let status = response.get("status").and_then(Value::as_str).unwrap_or("");
            assert_eq!(status, a.status);
        }
    }
}
