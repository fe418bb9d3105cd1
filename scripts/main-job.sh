#!/usr/bin/env bash
# The main job: the whole BYOK ceremony of the article on the embedded emulator, in a fresh folder
# (or `--dir DIR`), with no setup and no prompts: `hsmkit ceremony`.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --quiet --release -p hsmkit-cli
exec "$PWD/target/release/hsmkit" ceremony "$@"
