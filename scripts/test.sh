#!/usr/bin/env bash
# Every test of the workspace, from a fresh clone: unit, integration, CLI and a smoke run of each bench.
set -euo pipefail
cd "$(dirname "$0")/.."
export INSTA_UPDATE=no
cargo test --workspace --all-targets
cargo test --workspace --doc
