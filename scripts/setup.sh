#!/usr/bin/env bash
# Installs exactly the Debian packages ViT Studio needs (Debian 12 bookworm or 13 trixie) and
# selects OpenBLAS as the BLAS LibTorch uses. Idempotent: packages already present are not
# downloaded again.
#
#   scripts/setup.sh              everything: the window, the command line, the tests
#   scripts/setup.sh --headless   a server: the core, the `vit` command line and the core's tests,
#                                 with no Qt, QCustomPlot or X library (build with -DVIT_BUILD_GUI=OFF)
set -euo pipefail

mode=full
case "${1:-}" in
  "") ;;
  --headless) mode=headless ;;
  *) echo "usage: $0 [--headless]" >&2; exit 2 ;;
esac

PACKAGES=(
  # build tools
  cmake ninja-build g++ ccache binutils
  # libraries
  libtorch-dev nlohmann-json3-dev libcli11-dev libprotobuf-dev protobuf-compiler zlib1g-dev
  libjemalloc-dev libzip-dev
  # tests (GoogleTest: the core suites, also in the headless build)
  libgtest-dev
  # distributed training: the headers ProcessGroupGloo.hpp includes (libtorch-dev lacks them)
  libgloo-dev
  # oneDNN's headers: attention runs as one fused oneDNN operation (model/fused_attention.h); the
  # library itself is already there, LibTorch links it
  libdnnl-dev
  # SLEEF's headers: the fused GELU/dropout kernels (model/gelu_dropout.h) use the vectorised
  # erf/exp LibTorch is built on; the library itself is already there, LibTorch links it
  libsleef-dev
  # fast BLAS for LibTorch (Debian's default reference BLAS is ~30x slower)
  libopenblas0-openmp
  # the default data set, shipped by Debian
  dataset-fashion-mnist
)
if [ "$mode" = full ]; then
  PACKAGES+=(
    # OpenCV with its CMake config (libopencv-dev also brings highgui, and with it Qt 5 and X)
    libopencv-dev
    # the window
    qt6-base-dev libqcustomplot-dev libqcustomplot2.1-qt6
    # a display for the GUI tests and screenshots on headless machines
    xvfb
  )
else
  # Only the three OpenCV modules the core uses (CMake finds them by hand, model/CMakeLists.txt).
  PACKAGES+=(libopencv-core-dev libopencv-imgproc-dev libopencv-imgcodecs-dev)
fi
# Since Debian 13, the gold linker (the build links with it: ~5x faster) is its own package.
codename=$( (. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}") || true)
case "$codename" in
  bookworm|"") ;;
  *) PACKAGES+=(binutils-gold) ;;
esac

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

blas_alt=libblas.so.3-x86_64-linux-gnu
openblas=/usr/lib/x86_64-linux-gnu/openblas-openmp/libblas.so.3
blas_ok() { [ "$(readlink -f /etc/alternatives/$blas_alt 2>/dev/null)" = "$(readlink -f $openblas 2>/dev/null)" ]; }

if [ ${#missing[@]} -eq 0 ] && blas_ok; then
  echo "setup: all ${#PACKAGES[@]} packages present ($mode${codename:+, $codename}), OpenBLAS selected"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=""
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "setup: these packages are missing: ${missing[*]:-(none)}" >&2
    blas_ok || echo "setup: and OpenBLAS is not the selected BLAS" >&2
    echo "setup: installing them needs root. Run: sudo $0 ${1:-}  (or as root: $0 ${1:-})" >&2
    exit 1
  fi
else
  SUDO=""
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  # A server gets what is listed, not what the packages recommend (GUI libraries among them).
  extra=()
  [ "$mode" = headless ] && extra=(--no-install-recommends)
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${extra[@]}" "${missing[@]}"
fi
if ! blas_ok; then
  echo "setup: selecting OpenBLAS (OpenMP) as libblas.so.3"
  $SUDO update-alternatives --set "$blas_alt" "$openblas"
fi
echo "setup: done"
