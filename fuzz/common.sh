# Shared by ci-smoke.sh and long-run.sh (sourced, not run).
#
# No nightly toolchain needed. Without a sanitizer, cargo-fuzz passes rustc only stable flags
# (-C passes=sancov-module, -C llvm-args=..., --cfg fuzzing), so stable builds it as is. With one
# it adds -Zsanitizer=..., which stable accepts only with RUSTC_BOOTSTRAP=1, set below then.
# The sanitizer defaults to none: the crate is #![deny(unsafe_code)] and the parsers are safe
# Rust, so AddressSanitizer finds nothing the panics and assertions would not, at half the speed.
# FUZZ_SANITIZER=address turns it on. (RUSTC_BOOTSTRAP changes cargo's fingerprints, so switching
# between the two rebuilds everything.)

FUZZ_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SANITIZER=${FUZZ_SANITIZER:-none}
if [ "$SANITIZER" != none ]; then
  export RUSTC_BOOTSTRAP=1
fi

# Every target, in the order they run.
TARGETS=(credfile factor env config duo_preauth duo_auth_result codec_base64 codec_misc)

# Largest input per target: a little over each parser's own limit, so the limit itself is tested.
max_len() {
  case $1 in
    credfile) echo 4200 ;;    # MAX_CREDFILE is 4096
    factor) echo 8400 ;;      # SCRV1 responses up to MAX_PASSWORD (4096) after base64
    duo_*) echo 16384 ;;
    *) echo 4096 ;;
  esac
}

log() { printf '%s: %s\n' "$(basename "$0")" "$*" >&2; }

# Installs what building the targets needs, when missing: a C++ compiler (libFuzzer is C++) and
# cargo-fuzz itself.
ensure_tools() {
  if ! command -v cargo >/dev/null; then
    log "cargo is not on PATH; install Rust (rustup) first"
    return 1
  fi
  if ! command -v c++ >/dev/null || ! command -v cc >/dev/null; then
    log "installing build-essential (libFuzzer needs a C++ compiler)"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends build-essential >/dev/null
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    log "installing cargo-fuzz"
    cargo install --locked cargo-fuzz
  fi
}

# Arguments for libFuzzer common to both scripts (after `--`).
libfuzzer_args() {
  local t=$1 args=(-max_len="$(max_len "$t")" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1)
  [ -f "$FUZZ_DIR/dicts/$t.dict" ] && args+=(-dict="$FUZZ_DIR/dicts/$t.dict")
  printf '%s\n' "${args[@]}"
}

# Corpus directories: the working corpus (written, git-ignored) first, then the committed seeds.
corpus_dirs() {
  local t=$1
  mkdir -p "$FUZZ_DIR/corpus/$t"
  echo "$FUZZ_DIR/corpus/$t"
  [ -d "$FUZZ_DIR/seeds/$t" ] && echo "$FUZZ_DIR/seeds/$t"
  return 0
}

build_all() {
  (cd "$FUZZ_DIR" && cargo fuzz build -s "$SANITIZER" "$@")
}

# Where `cargo fuzz build` puts the binaries.
bin_dir() {
  echo "$FUZZ_DIR/target/$(rustc -vV | sed -n 's/^host: //p')/release"
}

# Runs one built target with extra libFuzzer flags. Runs the binary directly, as `cargo fuzz run`
# would after its build step, which build_all has done once for all targets.
run_target() {
  local t=$1
  shift
  local corpora args
  mapfile -t corpora < <(corpus_dirs "$t")
  mapfile -t args < <(libfuzzer_args "$t")
  mkdir -p "$FUZZ_DIR/artifacts/$t"
  (cd "$FUZZ_DIR" && "$(bin_dir)/$t" -artifact_prefix="$FUZZ_DIR/artifacts/$t/" "${args[@]}" "$@" "${corpora[@]}")
}
