#![forbid(unsafe_code)]

fn main() {
    std::process::exit(openvpn_auth_duo::run());
}
