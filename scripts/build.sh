#!/usr/bin/env bash
# Configures (once) and builds ViT Studio in build/ with Ninja, Release.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release
fi
# Two jobs: each torch translation unit takes ~1.2 GB and a core for ~20 s.
cmake --build "$BUILD_DIR" --parallel "${JOBS:-$(nproc)}"
