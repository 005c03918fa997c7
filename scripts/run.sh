#!/usr/bin/env bash
# The README's first command: set up, build, then start ViT Studio on its default.
# Extra arguments go to the program, e.g. scripts/run.sh summary --preset vit-b16
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh
if [ $# -eq 0 ]; then
  set -- summary --preset fmnist-small
fi
exec build/app/vit "$@"
