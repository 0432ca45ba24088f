#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openvpn_auth_duo_fuzz::codec_base64::check(data));
