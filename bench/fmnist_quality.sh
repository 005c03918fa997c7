#!/usr/bin/env bash
# The default user's experience: `vit train` with no flags on Debian's Fashion-MNIST. Prints the
# wall time, the epochs' times (metrics.csv) and how much of them was not training steps
# (validation, checkpoints), the training steps' model FLOPs, their rate and its share of the
# cores' float FMA peak (and so how long the steps would take at that peak), and the test accuracy
# of the best weights (the README's figures come from this).
#   bench/fmnist_quality.sh [extra vit train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
vit=${VIT:-build/app/vit}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
result=$("$vit" train --out "$out/run" --json "$@" | tail -n 1)
end=$(date +%s.%N)
/usr/bin/python3 - "$result" "$start" "$end" "$out/run/metrics.csv" <<'PY'
import csv, json, statistics, sys
r = json.loads(sys.argv[1]); wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"wall time {wall / 60:.1f} min, {r['epochs']} epochs, {r['steps']} steps, "
      f"{r['images_per_second']:.0f} images/s")
with open(sys.argv[4]) as f:
    seconds = [float(row["seconds"]) for row in csv.DictReader(f)]
if seconds:
    total = sum(seconds)
    # train_seconds: the training steps after the first (the trainer's throughput clock), so the
    # rest of the epochs' time is validation, checkpoints and the first step.
    other = max(0.0, total - r["train_seconds"])
    print(f"epochs {min(seconds):.1f}-{max(seconds):.1f} s (median {statistics.median(seconds):.1f}), "
          f"{total / 60:.1f} min in all; not training steps (validation, checkpoints): "
          f"{other:.1f} s, {100 * other / total:.1f}%")
if r.get("flops_per_second"):
    # Model FLOPs (vit summary's training_macs x 2 per image): the floor no kernel goes below.
    line = (f"training steps: {r['model_flops'] / 1e12:.1f} TFLOP of model FLOPs at "
            f"{r['flops_per_second'] / 1e9:.1f} GFLOP/s")
    if r.get("peak_flops_per_second"):
        peak = r["peak_flops_per_second"]
        line += (f", {100 * r['flops_per_second'] / peak:.0f}% of the cores' float FMA peak ({peak / 1e9:.0f} "
                 f"GFLOP/s), at which they would take {r['model_flops'] / peak / 60:.1f} min")
    print(line)
print(f"test accuracy {100 * r['test_accuracy']:.2f}%, top-5 {100 * r['test_top5_accuracy']:.2f}%")
PY
