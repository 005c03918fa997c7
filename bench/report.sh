#!/usr/bin/env bash
# The speed report of issue 16, side by side on this machine, in one command:
#
#   bench/report.sh [steps=15] [batch=256]        (BUILD_DIR, default build/; REPEATS, default 3)
#
# 1. Training, `vit train` against Debian's python3-torch on keras-cifar (bench/train_vs_python.sh),
#    fp32 and bf16: REPEATS alternated pairs each and their median ratio.
# 2. ViT-B/16 inference at batch 1 (the drag-and-drop case): `vit summary --benchmark` against the
#    same model in python3-torch (bench/python_peer.py --infer), fp32 and bf16 (weights in bf16).
# 3. What it ran on: the CPU, OpenBLAS's kernel set and who chose it, oneDNN's ISA, the allocator
#    and its huge page mode.
# Figures only; nothing here fails on a time. The default `vit train` wall time is measured
# separately (README, "Speed"), since it takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
steps=${1:-15}
batch=${2:-256}
vit=${BUILD_DIR:-build}/app/vit
export VIT="$vit"

summary=$("$vit" summary --preset vit-b16 --benchmark --json 2>/dev/null | tail -n 1)
/usr/bin/python3 - "$summary" <<'PY'
import json, sys
b = json.loads(sys.argv[1])["benchmark"]
print(f"CPU: {b['cpu']}; {b['threads']} threads")
print(f"OpenBLAS core: {b['blas_core']} ({b['blas_core_source']}); oneDNN ISA: {b['onednn_isa']}")
if b.get('allocator'):
    print(f"allocator: {b['allocator']}" + (f", transparent huge pages {b['huge_pages']}" if b.get('huge_pages') else ""))
print(f"bf16: {b['bf16']}; --precision auto trains in {'bf16' if b['bf16_faster_than_fp32'] else 'fp32'} here; "
      f"bf16 linear layers multiply on the {'float' if b.get('bf16_gemms_on_float_units') else 'bf16'} units")
if b['core_fp32_fma_gflops'] > 0:
    print(f"one core's peak: float FMA {b['core_fp32_fma_gflops']:.0f} GFLOP/s"
          + (f", bf16 dot product {b['core_bf16_dot_gflops']:.0f} GFLOP/s" if b['core_bf16_dot_gflops'] > 0 else "")
          + f" (x{b['threads']} threads)")
PY
# When `vit` replaced the kernel set OpenBLAS chose, the fp32 peers run twice: as Debian ships them
# (OpenBLAS's own choice, what a python3-torch user gets) and with the same core as ours.
best_core=$(/usr/bin/python3 -c 'import json,sys; b=json.loads(sys.argv[1])["benchmark"]
print(b["blas_core"] if b["blas_core_source"].startswith("selected by ViT Studio") else "")' "$summary")

# Without bf16 instructions (AVX2 only) python3-torch 1.13's bf16 runs reference kernels: 6 images/s
# on keras-cifar and 26 s per ViT-B/16 image on a Zen 3, so its bf16 passes get one short pair.
no_bf16=$(/usr/bin/python3 -c 'import json,sys; print(1 if json.loads(sys.argv[1])["benchmark"]["bf16"] == "no bf16 instructions" else "")' "$summary")

echo
echo "== training: vit train vs python3-torch, keras-cifar, $steps steps of $batch"
REPEATS=${REPEATS:-3} bench/train_vs_python.sh keras-cifar "$steps" "$batch" fp32 | sed 's/^/  /'
if [ -n "$no_bf16" ]; then
  echo "  -- bf16: one pair of 3 steps (no bf16 instructions here: python3-torch's bf16 runs reference kernels)"
  REPEATS=1 bench/train_vs_python.sh keras-cifar 3 "$batch" bf16 | sed 's/^/  /'
else
  REPEATS=${REPEATS:-3} bench/train_vs_python.sh keras-cifar "$steps" "$batch" bf16 | sed 's/^/  /'
fi
if [ -n "$best_core" ]; then
  echo "  -- fp32 again, the peer on OpenBLAS's $best_core kernels too (OPENBLAS_CORETYPE=$best_core):"
  REPEATS=${REPEATS:-3} PEER_OPENBLAS_CORETYPE=$best_core bench/train_vs_python.sh keras-cifar "$steps" "$batch" fp32 | sed 's/^/  /'
fi

echo
echo "== ViT-B/16 inference, batch 1 (median latency)"
declare -A ours
for precision in fp32 bf16; do
  ours[$precision]=$("$vit" summary --preset vit-b16 --benchmark --precision "$precision" --json 2>/dev/null | tail -n 1)
done
peer_fp32=$(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
  /usr/bin/python3 bench/python_peer.py --preset vit-b16 --infer --batch-size 1 --steps 8 --warmup 2)
peer_fp32_best='{}'
if [ -n "$best_core" ]; then
  peer_fp32_best=$(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 OPENBLAS_CORETYPE=$best_core \
    /usr/bin/python3 bench/python_peer.py --preset vit-b16 --infer --batch-size 1 --steps 8 --warmup 2)
fi
peer_bf16_steps=(--steps 8 --warmup 2)
[ -n "$no_bf16" ] && peer_bf16_steps=(--steps 2 --warmup 1)
peer_bf16=$(GLIBC_TUNABLES=glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736 \
  /usr/bin/python3 bench/python_peer.py --preset vit-b16 --infer --batch-size 1 "${peer_bf16_steps[@]}" --bf16)
/usr/bin/python3 - "${ours[fp32]}" "${ours[bf16]}" "$peer_fp32" "$peer_bf16" "$peer_fp32_best" "$best_core" <<'PY'
import json, sys
o32, o16 = (json.loads(a)["benchmark"]["forward"][0] for a in sys.argv[1:3])
p32, p16, p32b = (json.loads(a) for a in sys.argv[3:6])
print(f"  vit fp32      : {o32['latency_ms']:8.1f} ms  ({o32['gflops']:.0f} GFLOP/s)")
print(f"  vit bf16      : {o16['latency_ms']:8.1f} ms  ({o16['gflops']:.0f} GFLOP/s)")
print(f"  python3 fp32  : {p32['latency_ms']:8.1f} ms  ({p32['peer']})")
print(f"  python3 bf16  : {p16['latency_ms']:8.1f} ms")
if p32b:
    print(f"  python3 fp32 on OpenBLAS {sys.argv[6]} : {p32b['latency_ms']:8.1f} ms")
print(f"  vit fp32 / python3 fp32 speed : {p32['latency_ms'] / o32['latency_ms']:5.2f}x")
if p32b:
    print(f"  vit fp32 / python3 fp32 speed, both on {sys.argv[6]} : {p32b['latency_ms'] / o32['latency_ms']:5.2f}x")
print(f"  vit bf16 / python3 bf16 speed : {p16['latency_ms'] / o16['latency_ms']:5.2f}x")
print(f"  vit bf16 / vit fp32 speed     : {o32['latency_ms'] / o16['latency_ms']:5.2f}x")
PY
