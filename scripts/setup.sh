#!/usr/bin/env bash
# Installs exactly the Debian bookworm packages ViT Studio needs and selects OpenBLAS as the BLAS
# LibTorch uses. Idempotent: packages already present are not downloaded again.
set -euo pipefail

PACKAGES=(
  # build tools
  cmake ninja-build g++ ccache binutils
  # libraries
  qt6-base-dev libqcustomplot-dev libqcustomplot2.1-qt6 libtorch-dev libopencv-dev
  nlohmann-json3-dev libcli11-dev libprotobuf-dev protobuf-compiler zlib1g-dev
  libjemalloc-dev libzip-dev
  # the test framework of the core's and the command line's suites (the window's use Qt Test)
  libgtest-dev
  # fast BLAS for LibTorch (Debian's default reference BLAS is ~30x slower)
  libopenblas0-openmp
  # the default data set, shipped by Debian
  dataset-fashion-mnist
  # a display for the GUI tests and screenshots on headless machines
  xvfb
)

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
  echo "setup: all ${#PACKAGES[@]} packages present, OpenBLAS selected"
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  SUDO=""
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO="sudo"
  else
    echo "setup: these packages are missing: ${missing[*]:-(none)}" >&2
    blas_ok || echo "setup: and OpenBLAS is not the selected BLAS" >&2
    echo "setup: installing them needs root. Run: sudo $0   (or as root: $0)" >&2
    exit 1
  fi
else
  SUDO=""
fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}"
fi
if ! blas_ok; then
  echo "setup: selecting OpenBLAS (OpenMP) as libblas.so.3"
  $SUDO update-alternatives --set "$blas_alt" "$openblas"
fi
echo "setup: done"
