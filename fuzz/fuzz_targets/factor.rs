#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| openvpn_auth_duo_fuzz::factor::check(data));
