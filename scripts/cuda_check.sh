#!/usr/bin/env bash
# The CUDA check, for a machine with an NVIDIA GPU and PyTorch installed with pip (how most GPU
# users have LibTorch): builds the headless core against that wheel's LibTorch, trains the
# default model briefly on the GPU, evaluates it on the GPU and the CPU, and compares the logits of
# the same weights on both devices (bench/device_parity).
#
#   scripts/cuda_check.sh [OUT_DIR]            (default OUT_DIR: /tmp/vit-cuda-check)
#
# Dependencies are Debian's: on a Debian/Ubuntu GPU box, `scripts/setup.sh --headless` first. On a
# machine without apt, put the .deb files of the header-only and small libraries in .deps/ of
# this checkout (`scripts/cuda_check.sh --fetch-deps`, run where apt works, downloads them); they
# are unpacked into a private prefix. OpenCV must be installed (libopencv-dev): its runtime
# libraries pull in too much to carry as .deb files.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(nlohmann-json3-dev libcli11-dev libprotobuf-dev libprotobuf32 protobuf-compiler libprotoc32
      libzip-dev libzip4 zlib1g-dev libgloo-dev dataset-fashion-mnist)
if [ "${1:-}" = "--fetch-deps" ]; then
  mkdir -p .deps
  (cd .deps && apt-get download "${DEBS[@]}")
  echo "cuda_check: $(ls .deps | wc -l) packages in .deps ($(du -sh .deps | cut -f1))"
  exit 0
fi
out=${1:-/tmp/vit-cuda-check}
mkdir -p "$out"

python3 - <<'PY'
import torch
print("cuda_check: torch", torch.__version__, "CUDA", torch.version.cuda, "available", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")
PY
torch_prefix=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')

prefix_path="$torch_prefix"
extra=()
data=/usr/share/datasets/fashion-mnist
if [ -d .deps ]; then
  deps=/tmp/vit-deps
  rm -rf "$deps" && mkdir -p "$deps"
  for f in .deps/*.deb; do dpkg -x "$f" "$deps"; done
  prefix_path="$prefix_path;$deps/usr"
  export PATH="$deps/usr/bin:$PATH" LD_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}"
  extra+=(-DProtobuf_PROTOC_EXECUTABLE="$deps/usr/bin/protoc" -DCMAKE_INCLUDE_PATH="$deps/usr/include"
          -DCMAKE_LIBRARY_PATH="$deps/usr/lib/x86_64-linux-gnu")
  [ -d "$deps$data" ] && data="$deps$data"
fi
if ! ls /usr/include/opencv4/opencv2/core.hpp >/dev/null 2>&1; then
  # The core reads image files and augments with OpenCV; a build without it does not exist yet.
  echo "cuda_check: OpenCV's headers are missing (/usr/include/opencv4): install libopencv-dev" \
       "(scripts/setup.sh --headless); the core cannot be built without them" >&2
  exit 1
fi
if ! ls /usr/lib/x86_64-linux-gnu/libjemalloc.so >/dev/null 2>&1; then
  extra+=(-DVIT_USE_JEMALLOC=OFF)
fi

cmake -S . -B build-cuda -G Ninja -DCMAKE_BUILD_TYPE=Release -DVIT_BUILD_GUI=OFF \
  -DCMAKE_PREFIX_PATH="$prefix_path" "${extra[@]}" >"$out/configure.log" 2>&1 ||
  { tail -n 40 "$out/configure.log"; exit 1; }
grep -E "ViT Studio|Torch" "$out/configure.log" | tail -n 3
cmake --build build-cuda --parallel "$(nproc)" --target vit device_parity >"$out/build.log" 2>&1 ||
  { tail -n 60 "$out/build.log"; exit 1; }
echo "cuda_check: built ($(grep -c 'Building CXX' "$out/build.log") files)"

vit=build-cuda/app/vit
set -x
# A short training on the GPU: bf16 autocast, the default model, 300 steps of 64 images.
"$vit" train --device cuda --precision bf16 --max-steps 300 --log-every 50 \
  --dataset "fashion-mnist:$data" --out "$out/run" --json
# The same weights evaluated on the GPU and on the CPU.
"$vit" eval --run "$out/run" --device cuda --json
"$vit" eval --run "$out/run" --device cpu --json
# Logits of the same weights on the CPU and the GPU.
build-cuda/bench/device_parity "$out/run" cpu cuda 256
