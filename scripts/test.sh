#!/usr/bin/env bash
# Every test of the workspace, from a fresh clone: unit, integration, CLI, the conformance suite on
# the emulator, on SoftHSM2 and through libhsmkit_pkcs11.so (SoftHSM2 and OpenSC's pkcs11-tool are
# installed here when missing), and a smoke run of each bench.
# Another PKCS#11 module runs the same suite when HSMKIT_PKCS11_MODULE names it (see README).
set -euo pipefail
cd "$(dirname "$0")/.."

# The independent peers the tests check against: SoftHSM2 (a second PKCS#11 module), OpenSC's
# pkcs11-tool, OpenSSL's PKCS#11 engine and Java's SunPKCS11 (PKCS#11 applications that load
# libhsmkit_pkcs11.so).
missing=()
{ [ -f /usr/lib/softhsm/libsofthsm2.so ] && command -v softhsm2-util >/dev/null; } || missing+=(softhsm2)
command -v pkcs11-tool >/dev/null || missing+=(opensc)
dpkg -s libengine-pkcs11-openssl >/dev/null 2>&1 || missing+=(libengine-pkcs11-openssl)
# Java's SunPKCS11 (keytool, and the JDK's source launcher for a small signing program).
{ command -v keytool >/dev/null && command -v javac >/dev/null; } || missing+=(default-jdk-headless)
# GnuTLS's p11tool and certtool; a virtual environment for python-pkcs11 (from PyPI).
{ command -v p11tool >/dev/null && command -v certtool >/dev/null; } || missing+=(gnutls-bin)
/usr/bin/python3 -c "import ensurepip, venv" 2>/dev/null || missing+=(python3-venv)
# p11-kit's server and client module (remote use of the token).
command -v p11-kit >/dev/null || missing+=(p11-kit)
# NSS's software token (libsoftokn3.so), the conformance kit's third independent module.
ls /usr/lib/*/libsoftokn3.so >/dev/null 2>&1 || missing+=(libnss3)
# xmllint validates the conformance kit's JUnit report against docs/junit.xsd.
command -v xmllint >/dev/null || missing+=(libxml2-utils)
ls /usr/lib/*/pkcs11/p11-kit-client.so >/dev/null 2>&1 || missing+=(p11-kit-modules)
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (Debian packages)"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

export INSTA_UPDATE=no
cargo test --workspace --all-targets
# The cargo-fuzz targets (their own workspace, run by scripts/fuzz.sh on nightly) compile on
# stable; the entry points they call run in the fuzz_smoke tests above.
CARGO_TARGET_DIR=target cargo check -q --manifest-path fuzz/Cargo.toml --bins
cargo test --workspace --doc
