#!/usr/bin/env bash
# Fuzzes one reader of the core with libFuzzer for real:
#
#   scripts/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]     e.g. scripts/fuzz.sh pth 600
#   scripts/fuzz.sh list                                      the targets
#
# Configures (once) a separate clang-14 build in build-fuzz/ (FUZZ_BUILD_DIR) where the whole core
# is compiled with -fsanitize=fuzzer-no-link,address,undefined and the harness
# tests/fuzz/fuzz_TARGET.cpp is linked with libFuzzer, builds that harness (JOBS compile jobs,
# default 1), copies the checked-in corpus tests/fuzz/corpus/TARGET into a scratch corpus
# (build-fuzz/work/TARGET/corpus; the checked-in one is never modified), runs for SECONDS
# (default 60), and prints executions, coverage (cov: edges, ft: features), the corpus size and
# the crashes. An input that crashed, leaked, timed out or ran out of memory is kept in
# build-fuzz/work/TARGET/crashes/: reproduce it with
#   build-fuzz/tests/fuzz/fuzz_TARGET FILE
# then fix the reader, add a test, and copy the input into tests/fuzz/corpus/TARGET/ (named
# crash-*) so `ctest -L fuzz` replays it from then on. Exit status 1 when something was found.
#
# Limits (override with flags): -rss_limit_mb=4096 (a decoded 100-megapixel image is legal),
# -timeout=30 s per input. Uses only Debian's clang-14 and libclang-rt-14-dev.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS=$(sed -n 's/^  safetensors /safetensors /p' tests/fuzz/CMakeLists.txt | tr -d ')')
if [ "${1:-}" = list ] || [ $# -lt 1 ]; then
  echo "targets: $TARGETS"
  [ $# -ge 1 ] && exit 0
  echo "usage: scripts/fuzz.sh TARGET [SECONDS] [libFuzzer flags...]" >&2
  exit 2
fi
target=$1
seconds=${2:-60}
shift $(( $# >= 2 ? 2 : 1 ))
case " $TARGETS " in
  *" $target "*) ;;
  *) echo "unknown target '$target'; targets: $TARGETS" >&2; exit 2 ;;
esac
for tool in clang++-14 cmake ninja; do
  command -v $tool >/dev/null || { echo "fuzz.sh needs $tool (apt-get install clang-14 libclang-rt-14-dev cmake ninja-build)" >&2; exit 1; }
done

BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  # -fno-sanitize=function: clang's check of indirect calls reads a signature in front of the
  # callee, which the gcc-built libraries (LibTorch, OpenCV, Qt) do not have. UBSan checks stay
  # recoverable at compile time and are made fatal by UBSAN_OPTIONS=halt_on_error=1 below: the
  # same effect, but a known finding can be suppressed for one run with UBSAN_OPTIONS=suppressions=FILE,
  # which -fno-sanitize-recover would not allow.
  flags="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize=function -fno-omit-frame-pointer"
  CC=clang-14 CXX=clang++-14 cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DCMAKE_CXX_FLAGS="$flags" \
    -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
    -DVIT_FUZZ=ON -DVIT_USE_JEMALLOC=OFF
fi
# Quiet unless it fails: gold prints a warning per ASan register thunk when it links.
if ! cmake --build "$BUILD_DIR" --target "fuzz_$target" --parallel "${JOBS:-1}" >"$BUILD_DIR/build.log" 2>&1; then
  grep -v "Cannot export local symbol" "$BUILD_DIR/build.log" | tail -40 >&2
  exit 1
fi

work="$BUILD_DIR/work/$target"
rm -rf "$work"
mkdir -p "$work/corpus" "$work/crashes"
cp tests/fuzz/corpus/"$target"/* "$work/corpus/"
seeds=$(ls "$work/corpus" | wc -l)

# A 32 MB quarantine instead of 256: freed blocks are reused sooner, so each input does not
# page-fault fresh memory in (5x more executions per second here).
export ASAN_OPTIONS=${ASAN_OPTIONS:-allocator_may_return_null=1:detect_leaks=1:quarantine_size_mb=32}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/sanitizers/lsan.supp:print_suppressions=0}
log="$work/fuzz.log"
echo "fuzz.sh: fuzz_$target for ${seconds} s from $seeds seeds; log $log"
set +e
"$BUILD_DIR/tests/fuzz/fuzz_$target" "$work/corpus" -max_total_time="$seconds" \
  -artifact_prefix="$work/crashes/" -rss_limit_mb=4096 -timeout=30 -print_final_stats=1 \
  "$@" >"$log" 2>&1
status=$?
set -e

last=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)  # none when an input of the seed corpus crashed
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
cov=$(echo "$last" | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
ft=$(echo "$last" | sed -n 's/.*ft: \([0-9]*\).*/\1/p')
corp=$(echo "$last" | sed -n 's/.*corp: \([^ ]*\).*/\1/p')
# Inputs slower than 10 s (libFuzzer's -report_slow_units) are kept as slow-unit-*: listed, but
# not findings; a timeout (-timeout) is.
found=$(ls "$work/crashes" | grep -vc '^slow-unit-' || true)
slow=$(ls "$work/crashes" | grep -c '^slow-unit-' || true)
echo "fuzz.sh: $target: ${execs:-?} execs (${speed:-?}/s) in ${seconds} s, cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?} (entries/bytes), crashes $found, slow inputs $slow"
if [ "$found" -gt 0 ] || [ "$status" -ne 0 ]; then
  grep -E '^==[0-9]+==ERROR|^SUMMARY|runtime error' "$log" | head -5 || true
  echo "fuzz.sh: found something (exit $status); inputs in $work/crashes/:" >&2
  ls -l "$work/crashes" >&2
  exit 1
fi
