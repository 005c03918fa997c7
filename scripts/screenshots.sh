#!/usr/bin/env bash
# Screenshots of the real window for the README, made under Xvfb with fresh settings:
#   scripts/screenshots.sh [RUN_DIR [OTHER_RUN_DIR...]]
# writes docs/screenshots/*.png (each with fresh settings): the start state, an invalid value,
# patches before any training, training (the default preset, 10 epochs, trained for TRAIN_SECONDS, default
# 150, then stopped by closing the window), one epoch run to its end (FINISH_SECONDS, default 75:
# the finish message with the FLOP rate), a run reopened in each tab (RUN_DIR when given, e.g. a
# finished `vit train --out RUN_DIR`, else the one just trained), the whole window on a 1280x720
# screen, and Curves > Compare runs of RUN_DIR and the OTHER_RUN_DIRs (without them: two short
# `vit train` runs of COMPARE_EPOCHS, default 3, with lr 2e-3 and 5e-4).
set -euo pipefail
cd "$(dirname "$0")/.."
out=docs/screenshots
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
SCREEN=${SCREEN:-1600x1000}
studio() {
  XDG_CONFIG_HOME="$(mktemp -d -p "$tmp")" QT_QPA_PLATFORM=xcb \
    xvfb-run -a -s "-screen 0 ${SCREEN}x24" build/app/vit-studio --runs-root "$tmp/runs" "$@"
}
big() { studio --size 1360x860 "$@"; }
big --tab summary --screenshot "$out/start.png"
big --tab summary --set heads=5 --screenshot "$out/invalid.png"
big --tab patches --screenshot "$out/patches-untrained.png" --screenshot-delay 8000
big --start --set epochs=10 --screenshot "$out/training.png" \
  --screenshot-delay "$(( ${TRAIN_SECONDS:-150} * 1000 ))"
big --start --set epochs=1 --screenshot "$out/finished.png" \
  --screenshot-delay "$(( ${FINISH_SECONDS:-75} * 1000 ))"
if [ $# -ge 1 ]; then
  run=$1
  shift
else
  run=$(ls -d "$tmp"/runs/*/ | head -1)
fi
big --open-run "$run" --screenshot "$out/run.png"
big --open-run "$run" --tab patches --probe 3 --screenshot "$out/patches.png" --screenshot-delay 6000
big --open-run "$run" --tab attention --probe 3 --attention gradient --screenshot "$out/attention.png" \
  --screenshot-delay 8000
big --open-run "$run" --tab predict --classify resources/samples --classify README.md \
  --screenshot "$out/predict.png" --screenshot-delay 8000
big --open-run "$run" --tab evaluation --evaluate --cell 6,0 --screenshot "$out/evaluation.png" \
  --screenshot-delay "$(( ${EVAL_SECONDS:-40} * 1000 ))"
# A small screen: the window's default size is brought within 1280x720 and every control shows.
SCREEN=1280x720 studio --open-run "$run" --tab attention --probe 3 --screenshot "$out/small-screen.png" \
  --screenshot-delay 8000
# Run comparison: the run above and others side by side.
others=("$@")
if [ ${#others[@]} -eq 0 ]; then
  for lr in 2e-3 5e-4; do
    build/app/vit train --epochs "${COMPARE_EPOCHS:-3}" --lr "$lr" --out "$tmp/compare-lr$lr" >/dev/null
    others+=("$tmp/compare-lr$lr")
  done
fi
compare=()
for d in "$run" "${others[@]}"; do compare+=(--compare "$d"); done
big --tab compare "${compare[@]}" --hover 3 --screenshot "$out/compare.png" --screenshot-delay 3000
ls -l "$out"
