//! `codec::base64_encode`/`base64_decode`: the encoder agrees with the base64 crate and round-trips
//! through the decoder; the decoder agrees exactly with the base64 crate configured the way the
//! decoder is documented (standard alphabet, padding optional but canonical, no stray bits), and
//! whatever it accepts re-encodes to the same text.

use crate::factor::reference_b64_decode;
use base64::Engine as _;
use openvpn_auth_duo::codec::{base64_decode, base64_encode};

pub fn check(data: &[u8]) {
    let encoded = base64_encode(data);
    assert_eq!(
        encoded,
        base64::engine::general_purpose::STANDARD.encode(data)
    );
    assert_eq!(base64_decode(&encoded).as_deref(), Some(data), "round trip");
    let unpadded = encoded.trim_end_matches('=');
    assert_eq!(
        base64_decode(unpadded).as_deref(),
        Some(data),
        "unpadded round trip"
    );

    let text = crate::text(data);
    let ours = base64_decode(&text);
    let reference = reference_b64_decode(&text);
    assert_eq!(ours, reference, "base64_decode({text:?})");
    if let Some(bytes) = ours {
        let again = base64_encode(&bytes);
        let canonical = text.len().is_multiple_of(4) || !text.ends_with('=');
        assert!(canonical, "accepted odd padding {text:?}");
        assert_eq!(again.trim_end_matches('='), text.trim_end_matches('='));
        assert_eq!(bytes.len(), text.trim_end_matches('=').len() * 3 / 4);
    }
}
