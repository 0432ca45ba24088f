#![no_main]
use openvpn_auth_duo_fuzz::codec_misc::{check, Input};
libfuzzer_sys::fuzz_target!(|input: Input| check(&input));
