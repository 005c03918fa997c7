#!/usr/bin/env bash
# Configures (once) and builds ViT Studio in build/ with Ninja, Release.
#   VIT_BUILD_GUI=OFF   the headless build (no Qt): the core, `vit`, the core's tests, the benches
#   BUILD_DIR=DIR       another build directory; CMAKE_ARGS="..." more configure options
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # shellcheck disable=SC2086
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=Release -DVIT_BUILD_GUI="${VIT_BUILD_GUI:-ON}" ${CMAKE_ARGS:-}
fi
# Two jobs: each torch translation unit takes ~1.2 GB and a core for ~20 s.
cmake --build "$BUILD_DIR" --parallel "${JOBS:-$(nproc)}"
