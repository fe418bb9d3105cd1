"""Writes BENCHMARKS.md from one run of scripts/bench.sh: the targets of the benchmark issue
against the measured ratios, the whole table, the chart, and what the figures depend on.

Usage: python3 scripts/benchmarks_md.py BENCH.json BENCH.txt STARTUP.json SECONDS ABI.json > BENCHMARKS.md
"""

import datetime
import json
import os
import re
import subprocess
import sys

bench = json.load(open(sys.argv[1]))
table = open(sys.argv[2]).read()
startup = json.load(open(sys.argv[3]))
seconds = sys.argv[4]
abi = json.load(open(sys.argv[5]))

EMU = "emulator (in process)"
SO = "libhsmkit_pkcs11.so (PKCS#11)"
SOFT = "libsofthsm2.so (PKCS#11)"
REF = "reference (AWS-LC)"


def cell(row, op, threads=1):
    for c in bench["cells"]:
        if c["row"] == row and c["op"] == op and c["threads"] == threads and c["error"] is None:
            return c
    return None


def ratio(a, b):
    if a is None or b is None or b["ops_per_sec"] == 0:
        return None
    return a["ops_per_sec"] / b["ops_per_sec"]


def version(cmd):
    try:
        out = subprocess.run(cmd, capture_output=True, text=True).stdout + subprocess.run(cmd, capture_output=True, text=True).stderr
        return out.strip().splitlines()[0]
    except (OSError, IndexError):
        return "not found"


def lock_version(name):
    text = open("Cargo.lock").read()
    m = re.search(r'name = "%s"\nversion = "([^"]+)"' % re.escape(name), text)
    return m.group(1) if m else "?"


rows = []


def target(what, got, want, higher=True, fmt="{:.2f}x", why=""):
    if got is None:
        rows.append((what, "not measured", want, "-", why))
        return
    met = got >= want if higher else got <= want
    bound = (">= " if higher else "<= ") + fmt.format(want)
    rows.append((what, fmt.format(got), bound, "met" if met else "MISSED", why))


op = "sign-pkcs1-2048"
target("RSA-2048 PKCS#1 v1.5 sign, 1 thread: emulator in process / AWS-LC", ratio(cell(EMU, op), cell(REF, op)), 0.95)
target("... through the .so / emulator in process", ratio(cell(SO, op), cell(EMU, op)), 0.9)
target("... through the .so / SoftHSM2", ratio(cell(SO, op), cell(SOFT, op)), 2.0)
target("RSA-2048 sign, 2 threads / 1 thread: emulator in process", ratio(cell(EMU, op, 2), cell(EMU, op, 1)), 1.8)
target("... through the .so", ratio(cell(SO, op, 2), cell(SO, op, 1)), 1.8)
target("RSA-AES wrap of an RSA-2048 key (KEK 2048), C_WrapKey: the .so / SoftHSM2",
       ratio(cell(SO, "wrap-rsa-aes-kek2048"), cell(SOFT, "wrap-rsa-aes-kek2048")), 2.5)
target("... emulator in process / SoftHSM2",
       ratio(cell(EMU, "wrap-rsa-aes-kek2048"), cell(SOFT, "wrap-rsa-aes-kek2048")), 2.5)
target("RSA-AES unwrap (KEK 2048), C_UnwrapKey: the .so / SoftHSM2",
       ratio(cell(SO, "unwrap-rsa-aes-kek2048"), cell(SOFT, "unwrap-rsa-aes-kek2048")), 2.0)
kg = "keygen-rsa-2048"
med = lambda r: (cell(r, kg) or {}).get("median_ns")
for r, label in ((EMU, "emulator in process"), (SO, "the .so")):
    m, s = med(r), med(SOFT)
    target(f"RSA-2048 key generation, median: {label} / SoftHSM2", (m / s) if m and s else None, 0.5, higher=False)
noop = cell(REF, "noop")
target("the harness's own cost per call (median, ns)", noop and noop["median_ns"], 1000, higher=False, fmt="{:.0f}")
i = startup["init_to_token_info_ms"]
target("start-up: C_Initialize to the first C_GetTokenInfo (ms)", i["libhsmkit_pkcs11.so"], 15, higher=False, fmt="{:.1f}")
p = startup["pkcs11_tool_list_ms"]
target("start-up: a whole `pkcs11-tool -L`, the .so / SoftHSM2", p["libhsmkit_pkcs11.so"] / p["SoftHSM2"], 1.5, higher=False)

cpu = "?"
try:
    cpu = next(l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
except (OSError, StopIteration):
    pass

out = []
w = out.append
w("# Benchmarks")
w("")
w("The wrap and sign paths on the in-process emulator, on `libhsmkit_pkcs11.so` and SoftHSM2 (both")
w("through `pkcs11-client`, the same seam), and the AWS-LC reference row (each operation computed")
w("directly with the fastest library on the machine: the limit no module calling it can beat), from")
w(f"one run on {datetime.date.today().isoformat()}. Regenerate with `bash scripts/bench.sh` ({seconds} s per cell, 3")
w("interleaved rounds, one session per thread).")
w("")
w(f"- Machine: {os.cpu_count()} cores, {cpu}.")
w(f"- {version(['rustc', '--version'])}; aws-lc-rs {lock_version('aws-lc-rs')}, rsa {lock_version('rsa')}, cryptoki {lock_version('cryptoki')};")
w(f"  SoftHSM2 {version(['dpkg-query', '-W', '-f=${Version}', 'softhsm2'])}, OpenSC {version(['dpkg-query', '-W', '-f=${Version}', 'opensc'])} (Debian packages).")
w("")
w("## Targets")
w("")
w("| Target | Measured | Wanted | |")
w("|---|---|---|---|")
for what, got, want, verdict, _ in rows:
    w(f"| {what} | {got} | {want} | {verdict} |")
w("")
w("Start-up, medians of 20 fresh processes:")
w("")
w("| | libhsmkit_pkcs11.so | SoftHSM2 |")
w("|---|---|---|")
w(f"| C_Initialize to the first C_GetTokenInfo | {i['libhsmkit_pkcs11.so']:.1f} ms | {i['SoftHSM2']:.1f} ms |")
w(f"| `pkcs11-tool -L` (the whole process) | {p['libhsmkit_pkcs11.so']:.1f} ms | {p['SoftHSM2']:.1f} ms |")
w(f"| `hsmkit nkminfo` (the whole process) | {startup['nkminfo_ms']:.1f} ms | |")
w("")
w("Under the seam, per call (`benches/benches/abi.rs`; an empty C function called through a pointer")
w(f"costs {abi['empty_call_ns']} ns here):")
w("")
w("| | C_GetSessionInfo | RSA-2048 C_SignInit + C_Sign, raw | the same through pkcs11-client | the seam adds |")
w("|---|---|---|---|---|")
for name, m in abi["modules"].items():
    seam = (m["sign_seam_median_ns"] / m["sign_raw_median_ns"] - 1) * 100
    w(f"| {name} | {m['C_GetSessionInfo_ns']} ns | {m['sign_raw_median_ns'] / 1000:.1f} µs | "
      f"{m['sign_seam_median_ns'] / 1000:.1f} µs | {seam:+.1f}% |")
w("")
w("## The run")
w("")
w("![calls per second relative to the reference row](docs/benchmarks.svg)")
w("")
w("`vs 1st` is the ratio to the emulator in process, `vs ref` to AWS-LC; `(composed)` marks")
w("SoftHSM2's RSA-AES wrap, which the client composes from its RSA-OAEP and AES key wrap with")
w("padding, since SoftHSM2 lacks `CKM_RSA_AES_KEY_WRAP`.")
w("")
w("```")
w(table.rstrip())
w("```")
w("")
w(open("docs/benchmarks-notes.md").read().rstrip())
print("\n".join(out))
