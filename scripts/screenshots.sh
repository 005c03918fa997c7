#!/usr/bin/env bash
# Screenshots of the real window for the README, made under Xvfb with fresh settings:
#   scripts/screenshots.sh [finished-run-dir]
# writes docs/screenshots/{start,invalid,training,run}.png. "training" trains the default preset
# for TRAIN_SECONDS (default 150) first; "run" needs a finished run directory (e.g. from
# `vit train --out runs/fm`).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
studio() {
  XDG_CONFIG_HOME="$tmp/config" QT_QPA_PLATFORM=xcb \
    xvfb-run -a -s "-screen 0 1600x1000x24" build/app/vit-studio --runs-root "$tmp/runs" --size 1360x860 "$@"
}
studio --tab summary --screenshot "$out/start.png"
studio --tab summary --set heads=5 --screenshot "$out/invalid.png"
studio --start --set epochs=4 --screenshot "$out/training.png" \
  --screenshot-delay "$(( ${TRAIN_SECONDS:-150} * 1000 ))"
if [ -n "${1:-}" ]; then
  studio --open-run "$1" --screenshot "$out/run.png"
fi
ls -l "$out"
