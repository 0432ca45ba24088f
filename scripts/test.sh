#!/usr/bin/env bash
# The whole test suite: unit tests, the integration crate (fake Duo over HTTPS, real SQLite,
# real OpenVPN end to end). Run as root on Debian with openvpn installed (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --all-targets "$@"
