#!/usr/bin/env bash
# The README's second command: set up, build, then run the whole test suite with CTest.
# VIT_BUILD_GUI=OFF: the headless setup and build, and the core's suites only.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${VIT_BUILD_GUI:-ON}" = OFF ]; then scripts/setup.sh --headless; else scripts/setup.sh; fi
scripts/build.sh
cd "${BUILD_DIR:-build}"
QT_QPA_PLATFORM=offscreen ctest --output-on-failure --timeout 900 "$@"
