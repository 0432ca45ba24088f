#!/usr/bin/env bash
# Builds the .deb and the .rpm and checks them the way an administrator meets them: lintian,
# dpkg -i, the binary and both man pages from the installed package, the shipped config refused
# with a one-line placeholder message, ownership and modes (config root:nogroup 0640, cache dir
# nobody:nogroup 0700, readable/writable after OpenVPN drops to nobody:nogroup), a reinstall that
# keeps the edited config, dpkg -r keeping it and dpkg -P removing it and the cache, and the
# .rpm's file list. Run as root on Debian 12 (.ci/run calls it after the test suite).
#
# Any failed check exits non-zero with "ci-check: FAIL: ...". Safe to run twice: an installed
# openvpn-auth-duo package is purged first, and a hand-made /etc/openvpn/auth-duo.toml or
# /var/lib/openvpn-auth-duo is moved aside and put back afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive LC_ALL=C.UTF-8 MANWIDTH=80

PKG=openvpn-auth-duo
BIN=/usr/sbin/openvpn-auth-duo
CONF=/etc/openvpn/auth-duo.toml
CACHE=/var/lib/openvpn-auth-duo
OUT=target/packages
T0=$(date +%s)

fail() {
    echo "ci-check: FAIL: $*" >&2
    exit 1
}
step() { printf '\n--- %s (%s)\n' "$1" "$(date +%T)"; }
ok() { echo "ok: $*"; }

[ "$(id -u)" = 0 ] || fail "run as root: the check installs and removes the package with dpkg"
command -v dpkg >/dev/null || fail "dpkg not found: this check runs on Debian"

WORK=$(mktemp -d)
LINTDIR=
BACKUP=$WORK/backup
mkdir -p "$BACKUP"
restore() {
    # Leave the machine as found: no package, and anything hand-made put back.
    if dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null | grep -qv '^not-installed$'; then
        dpkg -P "$PKG" >/dev/null 2>&1 || true
    fi
    [ -e "$BACKUP/conf" ] && mkdir -p "$(dirname "$CONF")" && mv "$BACKUP/conf" "$CONF"
    [ -e "$BACKUP/cache" ] && mv "$BACKUP/cache" "$CACHE"
    rm -rf "$WORK" ${LINTDIR:+"$LINTDIR"}
}
trap restore EXIT

step "tools"
missing=()
for p in lintian rpm mandoc man-db dpkg-dev binutils; do
    dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}"
    apt-get update -qq || fail "apt-get update"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
        fail "apt-get install ${missing[*]}"
fi
export PATH="$PATH:${CARGO_HOME:-$HOME/.cargo}/bin"
need_cargo=()
command -v cargo-deb >/dev/null || need_cargo+=(cargo-deb)
command -v cargo-generate-rpm >/dev/null || need_cargo+=(cargo-generate-rpm)
if [ ${#need_cargo[@]} -gt 0 ]; then
    echo "cargo install --locked ${need_cargo[*]}"
    nice -n 10 cargo install --locked --quiet "${need_cargo[@]}" || fail "cargo install ${need_cargo[*]}"
fi
echo "$(cargo deb --version), $(cargo generate-rpm --version), lintian $(lintian --version | awk '{print $2}')"

step "man pages lint"
mandoc -T lint -W warning man/openvpn-auth-duo.8 man/auth-duo.toml.5 ||
    fail "mandoc -T lint -W warning reports problems in man/"
ok "mandoc lint clean"

step "build .deb (release build) and .rpm (same binary)"
rm -rf "$OUT"
mkdir -p "$OUT"
# Debian's hardening flags for the C compiled into the binary (bundled SQLite, ring), as
# dpkg-buildflags gives them, less -g and -O2: the release profile strips and optimises for size.
CFLAGS="$(DEB_CFLAGS_MAINT_STRIP='-g -O2' dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)"
export CFLAGS
nice -n 10 cargo build --release --locked --bin openvpn-auth-duo || fail "cargo build --release"
# The release profile strips symbols; the compilers' version notes (.comment) go too.
objcopy --remove-section=.comment target/release/openvpn-auth-duo || fail "objcopy"
# Both packages take this one binary from target/release.
cargo deb --no-build --output "$OUT/" || fail "cargo deb"
cargo generate-rpm --output "$OUT/" || fail "cargo generate-rpm"
DEB=$(ls "$OUT"/*.deb)
RPM=$(ls "$OUT"/*.rpm)
{ [ -f "$DEB" ] && [ -f "$RPM" ]; } || fail "expected one .deb and one .rpm in $OUT, found: $(ls "$OUT")"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)

step "lintian"
# As an unprivileged user, as lintian recommends, in a directory of its own.
LINTDIR=$(mktemp -d)
cp "$DEB" "$LINTDIR/"
chown -R nobody:nogroup "$LINTDIR"
lint_rc=0
setpriv --reuid=nobody --regid=nogroup --clear-groups env HOME="$LINTDIR" TMPDIR="$LINTDIR" \
    lintian --tag-display-limit 0 --display-info --show-overrides "$LINTDIR/$(basename "$DEB")" >"$WORK/lintian.txt" 2>&1 ||
    lint_rc=$?
rm -rf "$LINTDIR"
# lintian exits 1 when it found errors, 2 and up when it could not check at all.
[ "$lint_rc" -le 1 ] || { cat "$WORK/lintian.txt"; fail "lintian did not run (exit $lint_rc)"; }
LINT_E=$(grep -c '^E: ' "$WORK/lintian.txt" || true)
LINT_W=$(grep -c '^W: ' "$WORK/lintian.txt" || true)
LINT_I=$(grep -c '^I: ' "$WORK/lintian.txt" || true)
LINT_O=$(grep -c '^O: ' "$WORK/lintian.txt" || true)
grep -E '^(E|W|I|O): ' "$WORK/lintian.txt" || true
if grep -qvE '^(E|W|I|O|N|P|X|C): |^$' "$WORK/lintian.txt"; then
    echo "lintian also said:" && grep -vE '^(E|W|I|O|N|P|X|C): |^$' "$WORK/lintian.txt"
fi
[ "$LINT_E" = 0 ] || fail "lintian reports $LINT_E error(s) (listed above)"
ok "lintian: no errors"

step "contents"
dpkg-deb -c "$DEB" | awk '{print $1, $2, $6}' >"$WORK/deb-contents.txt"
cat "$WORK/deb-contents.txt"
expect_in_deb() {
    grep -qE "^$1 (root/root|0/0) \./$2\$" "$WORK/deb-contents.txt" ||
        fail ".deb lacks $2 owned by root with mode $1"
}
expect_in_deb '-rwxr-xr-x' 'usr/sbin/openvpn-auth-duo'
expect_in_deb '-rw-r--r--' 'usr/share/man/man8/openvpn-auth-duo\.8\.gz'
expect_in_deb '-rw-r--r--' 'usr/share/man/man5/auth-duo\.toml\.5\.gz'
expect_in_deb '-rw-r-----' 'etc/openvpn/auth-duo\.toml'
expect_in_deb '-rw-r--r--' 'usr/share/doc/openvpn-auth-duo/copyright'
expect_in_deb '-rw-r--r--' 'usr/share/doc/openvpn-auth-duo/changelog\.Debian\.gz'
dpkg-deb -I "$DEB" conffiles | grep -qx "$CONF" || fail "$CONF is not a conffile of the .deb"
mkdir "$WORK/deb"
dpkg-deb -x "$DEB" "$WORK/deb"
for page in man8/openvpn-auth-duo.8 man5/auth-duo.toml.5; do
    cmp -s <(zcat "$WORK/deb/usr/share/man/$page.gz") "man/${page#*/}" ||
        fail "the .deb's $page differs from man/${page#*/} (the pages must come from man/)"
done
cmp -s "$WORK/deb$CONF" packaging/auth-duo.toml || fail "the .deb's $CONF differs from packaging/auth-duo.toml"
ok ".deb layout, modes, conffile, pages from man/"

step "rpm -qlp"
rpm -qlp "$RPM" 2>/dev/null | tee "$WORK/rpm-files.txt"
for f in "$BIN" /usr/share/man/man8/openvpn-auth-duo.8 /usr/share/man/man5/auth-duo.toml.5 "$CONF"; do
    grep -qx "$f" "$WORK/rpm-files.txt" || fail "the .rpm lacks $f"
done
# Same layout as the .deb, apart from Debian's compressed pages and /usr/share/doc, lintian bits.
grep -E '^-' "$WORK/deb-contents.txt" | awk '{print substr($3, 2)}' |
    grep -vE '^/usr/share/(doc|lintian)/' | sed 's/\.gz$//' | sort >"$WORK/deb-files.txt"
sort "$WORK/rpm-files.txt" | diff -u "$WORK/deb-files.txt" - ||
    fail "the .rpm and the .deb install different files (diff above: - deb, + rpm)"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" 2>/dev/null >"$WORK/rpm-modes.txt"
grep -qx -- "-rw-r----- cn $CONF" "$WORK/rpm-modes.txt" ||
    fail "the .rpm's $CONF is not %config(noreplace) mode 0640: $(grep "$CONF" "$WORK/rpm-modes.txt")"
grep -qx -- "-rwxr-xr-x  $BIN" "$WORK/rpm-modes.txt" || fail "the .rpm's $BIN is not mode 0755"
rpm -qp --scripts "$RPM" 2>/dev/null | grep -q 'install -d -m 0700' || fail "the .rpm lacks its %post scriptlet"
rpm -qp --scripts "$RPM" 2>/dev/null | grep -q 'rm -rf /var/lib/openvpn-auth-duo' || fail "the .rpm lacks its %postun scriptlet"
ok ".rpm: same files as the .deb, config %config(noreplace) 0640, scriptlets present"

step "dpkg -i"
if dpkg-query -W -f='${db:Status-Status}' "$PKG" 2>/dev/null | grep -qv '^not-installed$'; then
    dpkg -P "$PKG" >/dev/null || fail "purging the previously installed $PKG"
fi
[ -e "$CONF" ] && mv "$CONF" "$BACKUP/conf" && echo "moved a hand-made $CONF aside"
[ -e "$CACHE" ] && mv "$CACHE" "$BACKUP/cache" && echo "moved a hand-made $CACHE aside"
dpkg -i "$DEB" || fail "dpkg -i $DEB"
[ "$(command -v openvpn-auth-duo)" = "$BIN" ] || fail "openvpn-auth-duo is not $BIN on PATH"
"$BIN" --version | grep -qx "openvpn-auth-duo $VERSION" || fail "--version: $("$BIN" --version)"
ok "$("$BIN" --version)"

step "man pages of the installed package"
if grep -qs 'path-exclude=/usr/share/man' /etc/dpkg/dpkg.cfg.d/*; then
    fail "dpkg is configured to drop man pages (path-exclude in /etc/dpkg/dpkg.cfg.d); remove that to check them"
fi
[ "$(man -w openvpn-auth-duo)" = /usr/share/man/man8/openvpn-auth-duo.8.gz ] ||
    fail "man -w openvpn-auth-duo: $(man -w openvpn-auth-duo 2>&1)"
[ "$(man -w auth-duo.toml)" = /usr/share/man/man5/auth-duo.toml.5.gz ] ||
    fail "man -w auth-duo.toml: $(man -w auth-duo.toml 2>&1)"
man -P cat openvpn-auth-duo 2>"$WORK/man.err" >"$WORK/man8.txt" || fail "man openvpn-auth-duo: $(cat "$WORK/man.err")"
man -P cat auth-duo.toml 2>"$WORK/man.err" >"$WORK/man5.txt" || fail "man auth-duo.toml: $(cat "$WORK/man.err")"
grep -q 'Duo two-factor authentication for OpenVPN servers' "$WORK/man8.txt" || fail "man openvpn-auth-duo: NAME line missing"
grep -q 'auth-user-pass-verify' "$WORK/man8.txt" || fail "man openvpn-auth-duo: no server.conf example"
grep -q 'integration_key' "$WORK/man5.txt" || fail "man auth-duo.toml: no integration_key"
grep -q 'trust_auth_token' "$WORK/man5.txt" || fail "man auth-duo.toml: no trust_auth_token"
ok "man openvpn-auth-duo ($(wc -l <"$WORK/man8.txt") lines), man auth-duo.toml ($(wc -l <"$WORK/man5.txt") lines)"

step "installed config and cache directory"
dpkg-query -W -f='${Conffiles}\n' "$PKG" | grep -q "^ $CONF " || fail "$CONF is not a registered conffile"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:nogroup 640" ] ||
    fail "$CONF is $(stat -c '%U:%G %a' "$CONF"), want root:nogroup 640"
[ "$(stat -c '%U:%G %a' "$CACHE")" = "nobody:nogroup 700" ] ||
    fail "$CACHE is $(stat -c '%U:%G %a' "$CACHE"), want nobody:nogroup 700"
ok "$CONF root:nogroup 0640, $CACHE nobody:nogroup 0700"

as_openvpn() { setpriv --reuid=nobody --regid=nogroup --clear-groups "$@"; }
as_other() { setpriv --reuid=daemon --regid=daemon --clear-groups "$@"; }

step "openvpn-auth-duo check on the shipped config"
check_refuses_placeholders() { # $1: who
    local rc=0
    "${@:2}" "$BIN" check >"$WORK/check.out" 2>"$WORK/check.err" || rc=$?
    [ "$rc" = 1 ] || fail "check as $1 exited $rc, want 1 (stdout: $(cat "$WORK/check.out"); stderr: $(cat "$WORK/check.err"))"
    [ "$(wc -l <"$WORK/check.err")" = 1 ] || fail "check as $1 printed more than one line: $(cat "$WORK/check.err")"
    grep -q placeholder "$WORK/check.err" || fail "check as $1 does not mention the placeholders: $(cat "$WORK/check.err")"
    echo "as $1: exit 1: $(cat "$WORK/check.err")"
}
check_refuses_placeholders root env
# After OpenVPN's "user nobody / group nogroup" the config must still be readable.
check_refuses_placeholders nobody:nogroup as_openvpn
as_openvpn sh -c "touch $CACHE/.probe && rm $CACHE/.probe" || fail "nobody:nogroup cannot write $CACHE"
if as_other cat "$CONF" >/dev/null 2>&1; then fail "another user (daemon) can read $CONF"; fi
if as_other ls "$CACHE" >/dev/null 2>&1; then fail "another user (daemon) can list $CACHE"; fi
ok "refused with one line; readable and writable for nobody:nogroup, closed to others"

step "reinstall keeps the edited config"
echo "# edited by ci-check" >>"$CONF"
dpkg -i "$DEB" >/dev/null || fail "reinstalling $DEB"
grep -q '^# edited by ci-check$' "$CONF" || fail "reinstalling overwrote the edited $CONF"
[ "$(stat -c '%U:%G %a' "$CONF")" = "root:nogroup 640" ] || fail "reinstalling changed $CONF to $(stat -c '%U:%G %a' "$CONF")"
ok "edited $CONF kept, still root:nogroup 0640"

step "dpkg -r keeps the config, dpkg -P removes config and cache"
dpkg -r "$PKG" >/dev/null || fail "dpkg -r"
[ ! -e "$BIN" ] || fail "dpkg -r left $BIN"
grep -q '^# edited by ci-check$' "$CONF" 2>/dev/null || fail "dpkg -r removed $CONF"
[ -d "$CACHE" ] || fail "dpkg -r removed $CACHE"
dpkg -P "$PKG" >/dev/null || fail "dpkg -P"
[ ! -e "$CONF" ] || fail "dpkg -P left $CONF"
[ ! -e "$CACHE" ] || fail "dpkg -P left $CACHE"
ok "remove kept $CONF; purge removed it and $CACHE"

step "summary"
printf '%-60s %9s bytes\n' "$(basename "$DEB")" "$(stat -c %s "$DEB")" "$(basename "$RPM")" "$(stat -c %s "$RPM")"
echo "lintian: $LINT_E errors, $LINT_W warnings, $LINT_I info, $LINT_O overridden"
echo "ci-check: all package checks passed in $(($(date +%s) - T0)) s"
