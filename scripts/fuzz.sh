#!/usr/bin/env bash
# The long fuzzing run: every cargo-fuzz target in fuzz/ (one per parser: world, card, NVRAM, key
# blob, ACL, token record, stored object, generatekey's key=value syntax, the .byok transfer
# package, the KEK and world packages and their verifier, the transfer commands' arguments,
# HSMKIT_CONF, attribute templates through the module's ABI, expectation files) for SECONDS each,
# under AddressSanitizer, starting from the seed files the test suite writes.
#
# Usage: bash scripts/fuzz.sh [SECONDS-PER-TARGET (default 60)] [TARGET ...]
# Needs a nightly toolchain (`rustup toolchain install nightly`) and cargo-fuzz (installed here
# when missing). The test command runs the same entry points over seeds and mutants on stable
# (the fuzz_smoke tests); this script is the longer run. A crash leaves its input under
# fuzz/artifacts/<target>/ and stops the script with status 1.
# Writes target/fuzz-summary.txt, which scripts/reliability.sh puts in docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
if ! rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  echo "fuzz.sh: cargo-fuzz needs a nightly toolchain: rustup toolchain install nightly" >&2
  exit 2
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# Seeds: the smoke tests write one good input per target under target/fuzz-seeds/.
cargo test -q -p hsmkit-emulator --test fuzz_smoke >/dev/null
cargo test -q -p hsmkit-transfer --test packages every_fuzz >/dev/null
cargo test -q -p hsmkit-pkcs11-module --test fuzz_smoke >/dev/null

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^hsmkit-fuzz$')
fi
summary=target/fuzz-summary.txt
: > "$summary.tmp"
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  cp -n target/fuzz-seeds/"$t"/* "fuzz/corpus/$t/" 2>/dev/null || true
  log=$(mktemp)
  echo "== $t: ${seconds} s"
  if ! (cd fuzz && cargo +nightly fuzz run "$t" "corpus/$t" -- \
        -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1) >"$log" 2>&1; then
    tail -40 "$log"
    echo "fuzz.sh: $t crashed; its input is under fuzz/artifacts/$t/" >&2
    exit 1
  fi
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | cut -d' ' -f2)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  echo "FUZZ $t: ${runs:-?} runs in $seconds s, coverage ${cov:-?} edges, corpus $corpus inputs, no crash" | tee -a "$summary.tmp"
  rm -f "$log"
done
mv "$summary.tmp" "$summary"
echo "wrote $summary"
