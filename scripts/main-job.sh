#!/usr/bin/env bash
# The main job: the ceremony on the embedded emulator, in a fresh folder: the provider's toolset,
# its validation, the world, the key, the CNG import and the narrowing. (Packaging and the tenant
# side join as the transfer engine grows.) No setup, no prompts.
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
cd "$dir"
step vendor init --region NA --dir "$dir/provider"
step verifykeypackage -k BYOK-KEK-pkg-NA-1 -w BYOK-SecurityWorld-pkg-NA-1
step new-world --initialize --cipher-suite=DLf1024s160mRijndael --module=1 --acs-quorum=2/3
step nkminfo
step generatekey --generate simple type=RSA size=2048 protect=module ident=contosokey plainname=contosokey nvram=no pubexp=
step cngimport --import -M --key=contosokey --appname=simple contosokey
step nkminfo -k
step preload -m 1 -A simple -K contosokey python aclprint.py
step KeyTransferRemote -ModifyAcls -KeyAppName simple -KeyIdentifier contosokey -ExchangeKeyPackage BYOK-KEK-pkg-NA-1 -NewSecurityWorldPackage BYOK-SecurityWorld-pkg-NA-1
step preload -m 1 -A xferacld -K contosokey python aclprint.py
step kmfile-dump "$NFAST_KMDATA/local/key_xferacld_contosokey"
echo
echo "Result: SUCCESS (toolset, world, key and narrowing steps; files in $dir)"
