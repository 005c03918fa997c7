#!/usr/bin/env bash
# Screenshots of the real window for the README, made under Xvfb with fresh settings:
#   scripts/screenshots.sh [RUN_DIR]
# writes docs/screenshots/*.png (each with fresh settings): the start state, an invalid value,
# training (the default preset trained for TRAIN_SECONDS, default 150, then stopped by closing the
# window), and a run reopened in each tab: RUN_DIR when given (e.g. a finished `vit train --out
# RUN_DIR`), else the one just trained.
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
studio() {
  XDG_CONFIG_HOME="$(mktemp -d -p "$tmp")" QT_QPA_PLATFORM=xcb \
    xvfb-run -a -s "-screen 0 1600x1000x24" build/app/vit-studio --runs-root "$tmp/runs" --size 1360x860 "$@"
}
studio --tab summary --screenshot "$out/start.png"
studio --tab summary --set heads=5 --screenshot "$out/invalid.png"
studio --start --set epochs=4 --screenshot "$out/training.png" \
  --screenshot-delay "$(( ${TRAIN_SECONDS:-150} * 1000 ))"
run=${1:-$(ls -d "$tmp"/runs/*/ | head -1)}
studio --open-run "$run" --screenshot "$out/run.png"
studio --open-run "$run" --tab patches --probe 3 --screenshot "$out/patches.png" --screenshot-delay 5000
studio --open-run "$run" --tab attention --probe 3 --screenshot "$out/attention.png" --screenshot-delay 5000
studio --open-run "$run" --tab predict --classify resources/samples --classify README.md \
  --screenshot "$out/predict.png" --screenshot-delay 6000
studio --open-run "$run" --tab evaluation --evaluate --screenshot "$out/evaluation.png" \
  --screenshot-delay "$(( ${EVAL_SECONDS:-40} * 1000 ))"
ls -l "$out"
