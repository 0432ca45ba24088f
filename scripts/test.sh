#!/usr/bin/env bash
# The whole test suite: unit tests, the integration crate (fake Duo over HTTPS, real SQLite,
# real OpenVPN 2.6 end to end) and the man-page checks. Needs root (the OpenVPN server opens a
# tun device); installs the Debian packages the tests use when they are missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v openvpn >/dev/null || missing+=(openvpn)
command -v mandoc >/dev/null || missing+=(mandoc)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "test.sh: missing ${missing[*]} and not root; run: sudo $0" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
cargo test --all-targets "$@"
