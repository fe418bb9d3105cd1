#!/usr/bin/env bash
# Regenerates BENCHMARKS.md and docs/benchmarks.svg from one run on this machine: `hsmkit bench`
# on the in-process emulator, libhsmkit_pkcs11.so and SoftHSM2 (both through pkcs11-client, on
# throwaway tokens) with the AWS-LC reference row, at one and two threads; then start-up:
# C_Initialize to the first C_GetTokenInfo in a fresh process, a whole `pkcs11-tool -L`, and
# `hsmkit nkminfo`; last, the per-call cost of the ABI and of the seam (benches/benches/abi.rs).
#
# Usage: bash scripts/bench.sh [SECONDS-PER-CELL (default 2)]
# Needs SoftHSM2 and OpenSC (bash scripts/test.sh installs them) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
duration=${1:-2}

cargo build --release -q -p hsmkit-cli -p hsmkit-pkcs11-module
root=$PWD
so=$root/target/release/libhsmkit_pkcs11.so
softhsm=/usr/lib/softhsm/libsofthsm2.so
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Throwaway tokens labelled "bench": user PIN 1234, SO PIN 5678.
export HSMKIT_CONF=$tmp/hsmkit.conf
echo "slot 0 $tmp/hsmkit/kmdata" > "$HSMKIT_CONF"
pkcs11-tool --module "$so" --init-token --label bench --so-pin 5678 >/dev/null
pkcs11-tool --module "$so" --init-pin --so-pin 5678 --pin 1234 >/dev/null
export SOFTHSM2_CONF=$tmp/softhsm2.conf
mkdir "$tmp/softhsm"
printf 'directories.tokendir = %s\nobjectstore.backend = file\n' "$tmp/softhsm" > "$SOFTHSM2_CONF"
softhsm2-util --init-token --free --label bench --pin 1234 --so-pin 5678 >/dev/null
echo 1234 > "$tmp/pins"
echo 5678 > "$tmp/so-pin"

ops=$(target/release/hsmkit bench --op list | paste -sd, -)
target/release/hsmkit bench \
  --backend emulator --backend "pkcs11:$so" --backend "pkcs11:$softhsm" \
  --token bench --pin-file "$tmp/pins" --so-pin-file "$tmp/so-pin" --op "$ops" --threads 1,2 --duration "$duration" --rounds 3 \
  --json target/bench.json --plot docs/benchmarks.svg | tee target/bench.txt

# Start-up, each the median of 20 fresh processes.
mkdir -p "$tmp/kmdata"
NFAST_KMDATA=$tmp/kmdata target/release/hsmkit new-world --initialize --module=1 --acs-quorum=1/1 \
  --pin-file "$tmp/pins" >/dev/null
python3 - "$so" "$softhsm" "$tmp/kmdata" > target/startup.json <<'PY'
import ctypes, json, os, statistics, subprocess, sys, time
so, softhsm, kmdata = sys.argv[1:4]

def init_to_token_info(lib):
    """C_Initialize through the first C_GetTokenInfo, in a fresh process, in ms."""
    code = r'''
import ctypes, sys, time
lib = ctypes.CDLL(sys.argv[1])
fl = ctypes.POINTER(ctypes.c_void_p)()
lib.C_GetFunctionList(ctypes.byref(fl))
fn = lambda i, *a: ctypes.CFUNCTYPE(ctypes.c_ulong, *a)(fl[1 + i])
t = time.perf_counter()
assert fn(0, ctypes.c_void_p)(None) == 0
n = ctypes.c_ulong(0)
assert fn(4, ctypes.c_ubyte, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong))(1, None, ctypes.byref(n)) == 0
slots = (ctypes.c_ulong * max(n.value, 1))()
assert fn(4, ctypes.c_ubyte, ctypes.c_void_p, ctypes.POINTER(ctypes.c_ulong))(1, slots, ctypes.byref(n)) == 0
info = ctypes.create_string_buffer(512)
assert fn(6, ctypes.c_ulong, ctypes.c_void_p)(slots[0], info) == 0
print((time.perf_counter() - t) * 1000)
'''
    runs = [float(subprocess.run([sys.executable, "-c", code, lib], check=True, capture_output=True, text=True).stdout) for _ in range(20)]
    return statistics.median(runs)

def process(cmd, env=None):
    runs = []
    for _ in range(20):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        runs.append((time.perf_counter() - t) * 1000)
    return statistics.median(runs)

env = dict(os.environ, NFAST_KMDATA=kmdata)
print(json.dumps({
    "init_to_token_info_ms": {"libhsmkit_pkcs11.so": init_to_token_info(so), "SoftHSM2": init_to_token_info(softhsm)},
    "pkcs11_tool_list_ms": {"libhsmkit_pkcs11.so": process(["pkcs11-tool", "--module", so, "-L"]),
                            "SoftHSM2": process(["pkcs11-tool", "--module", softhsm, "-L"])},
    "nkminfo_ms": process(["target/release/hsmkit", "nkminfo"], env),
}, indent=2))
PY
cat target/startup.json

# The layers under the seam: C_GetSessionInfo against an empty call, raw C_Sign against the seam
# (the criterion harness makes its own throwaway tokens).
HSMKIT_ABI_JSON=$root/target/abi.json cargo bench -q -p hsmkit-benches --bench abi -- \
  --warm-up-time 1 --measurement-time 2 >/dev/null
cat target/abi.json

python3 scripts/benchmarks_md.py target/bench.json target/bench.txt target/startup.json "$duration" target/abi.json > BENCHMARKS.md
echo "wrote BENCHMARKS.md and docs/benchmarks.svg"
