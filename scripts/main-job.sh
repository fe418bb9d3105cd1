#!/usr/bin/env bash
# The main job: the ceremony's world and key steps on the embedded emulator, in a fresh folder.
# (The transfer steps join when the transfer engine lands.) No setup, no prompts.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p hsmkit-cli
hsmkit="$PWD/target/release/hsmkit"

dir="${1:-$(mktemp -d -t hsmkit-ceremony.XXXXXX)}"
mkdir -p "$dir/kmdata"
export NFAST_KMDATA="$dir/kmdata"
# Card PINs for a demonstration: made here, written beside the cards, and said so.
printf 'pin-card-1\npin-card-2\npin-card-3\n' > "$dir/pins"
chmod 600 "$dir/pins"
export HSMKIT_PIN_FILE="$dir/pins"
echo "== hsmkit ceremony in $dir (demonstration card PINs in $dir/pins)"

step() { echo; echo "== $*"; "$hsmkit" "$@"; }
step new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3
step nkminfo
step generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=
step cngimport --import -M --key=contosokey --appname=simple contosokey
step nkminfo -k
step preload -m 1 -A simple -K contosokey python aclprint.py
step kmfile-dump "$NFAST_KMDATA/local/key_simple_contosokey"
echo
echo "Result: SUCCESS (world and key steps; files in $dir)"
