#!/usr/bin/env bash
# The whole test suite under AddressSanitizer + UndefinedBehaviorSanitizer:
#
#   scripts/sanitize.sh [ctest arguments...]      e.g. scripts/sanitize.sh -L model
#
# Configures (once) build-asan/ (ASAN_BUILD_DIR) with gcc -fsanitize=address,undefined at -O1,
# without jemalloc (ASan must own malloc) and without bench/ (figures, not tests), builds every target (JOBS jobs, default all cores), and
# runs CTest there with every report fatal: one heap error, leak or UB anywhere fails the test
# that hit it. CI runs this after scripts/test.sh.
#
# Suppressions: none were needed (LibTorch 1.13, Qt 6.4, OpenCV 4.6, fontconfig: the whole suite
# passes with empty lists). Should a library's one-time allocation ever show up as a leak, add it
# with its reason to scripts/sanitizers/lsan.supp. UBSan reports cannot be suppressed in this
# build (-fno-sanitize-recover makes every one fatal at once); fix the code instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

BUILD_DIR=${ASAN_BUILD_DIR:-build-asan}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # -fno-sanitize-recover: UBSan reports abort like ASan's instead of printing and going on.
  # -g1: line tables for the reports, without the full debug info of LibTorch's headers.
  san="-fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer"
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="$san" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DVIT_USE_JEMALLOC=OFF -DVIT_BUILD_BENCHES=OFF
fi
cmake --build "$BUILD_DIR" --parallel "${JOBS:-$(nproc)}"

supp="$PWD/scripts/sanitizers"
# allocator_may_return_null: an allocation that cannot be satisfied returns null as glibc's malloc
# does (LibTorch then throws), instead of ASan aborting.
export ASAN_OPTIONS="halt_on_error=1:abort_on_error=1:detect_leaks=1:allocator_may_return_null=1"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
cd "$BUILD_DIR"
QT_QPA_PLATFORM=offscreen ctest --output-on-failure --timeout 1800 "$@"
