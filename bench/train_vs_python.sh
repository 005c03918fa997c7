#!/usr/bin/env bash
# Training throughput of `vit train` against Debian's python3-torch on the same model, side by side
# on this machine. Prints both figures, the ratio and the achieved GFLOP/s. Never fails on a time.
#
#   [REPEATS=N] bench/train_vs_python.sh [preset=keras-cifar] [steps=20] [batch=256] [precision=fp32]
#
# precision bf16: both sides under CPU autocast to bfloat16 (torch.autocast("cpu") in Python,
# `--precision bf16` here), weights and optimizer in float.
# Both sides: AdamW, label smoothing 0.1, grad clipping 1.0, dropout from the preset, the
# default thread count (one per core). The C++ side runs the real CLI on a CIFAR-10-format
# directory of random images (data loading excluded from its images/s, as in the Python peer).
# The Python peer gets GLIBC_TUNABLES (mmap_max=0, huge trim threshold), its best setting here;
# our programs get the same effect with mallopt at startup. PEER_OPENBLAS_CORETYPE=CORE gives the
# peer that OpenBLAS kernel set (by default it runs on whatever Debian's OpenBLAS picks, as a user's
# python3-torch does; on a CPU that OpenBLAS does not know, that is its SSE3 "Prescott" set, while
# `vit` selects a better one itself).
set -euo pipefail
cd "$(dirname "$0")/.."
preset=${1:-keras-cifar}
steps=${2:-20}
batch=${3:-256}
precision=${4:-fp32}
case "$precision" in fp32) bf16_flag=() ;; bf16) bf16_flag=(--bf16) ;; *) echo "precision: fp32 or bf16" >&2; exit 2 ;; esac
vit=${VIT:-build/app/vit}
if ! /usr/bin/python3 -c 'import torch, numpy' 2>/dev/null; then
  echo "$0: the Python peer needs Debian's python3-torch and python3-numpy, which scripts/setup.sh" >&2
  echo "does not install (only the benchmarks use them): apt-get install python3-torch python3-numpy" >&2
  exit 2
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

/usr/bin/python3 - "$work/cifar" <<'PY'
import os, sys
import numpy as np
d = sys.argv[1]; os.makedirs(d)
rng = np.random.default_rng(0)
def write(name, n):
    rec = np.empty((n, 3073), np.uint8)
    rec[:, 0] = rng.integers(0, 10, n)
    rec[:, 1:] = rng.integers(0, 256, (n, 3072))
    rec.tofile(os.path.join(d, name))
for i in range(1, 6):
    write(f"data_batch_{i}.bin", 1200)
write("test_batch.bin", 500)
PY

flops=$("$vit" summary --preset "$preset" --json | /usr/bin/python3 -c 'import json,sys; print(json.load(sys.stdin)["flops"])')
# REPEATS=N alternates the two sides N times (C++, Python, C++, Python, ...) and prints every
# pair and the median ratio: this machine's speed drifts between the halves of one run (README,
# "Speed on any x86 CPU"), so a single pair can land anywhere within ~30% of the median.
repeats=${REPEATS:-1}
pairs=()
for ((i = 0; i < repeats; i++)); do
  cpp=$("$vit" train --preset "$preset" --dataset "cifar10:$work/cifar" --batch-size "$batch" \
        --max-steps "$steps" --augment none --precision "$precision" --out "$work/run$i" --json 2>/dev/null | tail -n 1)
  py=$(env GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
       ${PEER_OPENBLAS_CORETYPE:+OPENBLAS_CORETYPE=$PEER_OPENBLAS_CORETYPE} /usr/bin/python3 bench/python_peer.py --preset "$preset" --batch-size "$batch" --steps "$steps" "${bf16_flag[@]}")
  pairs+=("$cpp" "$py")
done

/usr/bin/python3 - "$flops" "$preset" "$batch" "$precision" "${pairs[@]}" <<'PY'
import json, os, statistics, sys
flops = int(sys.argv[1])
runs = [(json.loads(a), json.loads(b)) for a, b in zip(sys.argv[5::2], sys.argv[6::2])]
g = lambda ips: 3 * flops * ips / 1e9  # forward + backward ~ 3x forward FLOPs
print(f"preset {sys.argv[2]}, batch {sys.argv[3]}, {sys.argv[4]}, {runs[0][1]['threads']} threads")
ratios = []
for i, (cpp, py) in enumerate(runs):
    c, p = cpp["images_per_second"], py["images_per_second"]
    ratios.append(c / p)
    tag = f" (pair {i + 1})" if len(runs) > 1 else ""
    print(f"  vit train (C++)      : {c:8.1f} images/s  {g(c):6.1f} GFLOP/s{tag}")
    core = os.environ.get("PEER_OPENBLAS_CORETYPE")
    print(f"  python3-torch (peer) : {p:8.1f} images/s  {g(p):6.1f} GFLOP/s  ({py['peer']}"
          + (f", OPENBLAS_CORETYPE={core})" if core else ")"))
    print(f"  ratio C++ / Python   : {c / p:8.2f}x")
if len(runs) > 1:
    print(f"  median ratio of {len(runs)} alternated pairs: {statistics.median(ratios):.2f}x "
          f"(range {min(ratios):.2f}-{max(ratios):.2f}x)")
PY
