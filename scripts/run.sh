#!/usr/bin/env bash
# The README's first command: set up, build, then open the ViT Studio window on its default
# (the Fashion-MNIST preset, ready to press Start). Arguments go to vit-studio
# (scripts/run.sh --open-run runs/fm); `scripts/run.sh vit ARGS` runs the command line instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [ "${1:-}" = vit ]; then
  shift
  exec build/app/vit "$@"
fi
if [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] && [ -z "${QT_QPA_PLATFORM:-}" ]; then
  echo "run.sh: no display (DISPLAY and WAYLAND_DISPLAY are unset). Run it on a desktop, over" >&2
  echo "ssh -X, or in a virtual one: xvfb-run -a -s '-screen 0 1600x1000x24' scripts/run.sh" >&2
  echo "(headless training: scripts/run.sh vit train --help)" >&2
  exit 2
fi
exec build/app/vit-studio "$@"
