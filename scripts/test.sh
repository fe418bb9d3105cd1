#!/usr/bin/env bash
# Every test of the workspace, from a fresh clone: unit, integration, CLI, the conformance suite on
# the emulator and on SoftHSM2 (installed here when missing), and a smoke run of each bench.
# Another PKCS#11 module runs the same suite when HSMKIT_PKCS11_MODULE names it (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -f /usr/lib/softhsm/libsofthsm2.so ] || ! command -v softhsm2-util >/dev/null; then
  echo "== installing SoftHSM2 (Debian package softhsm2)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq softhsm2 >/dev/null
fi

export INSTA_UPDATE=no
cargo test --workspace --all-targets
cargo test --workspace --doc
