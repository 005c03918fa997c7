#!/usr/bin/env bash
# The default user's experience: `vit train` with no flags on Debian's Fashion-MNIST. Prints the
# wall time and the test accuracy of the best weights (the README's figures come from this).
#   bench/fmnist_quality.sh [extra vit train flags...]
set -euo pipefail
cd "$(dirname "$0")/.."
vit=${VIT:-build/app/vit}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
start=$(date +%s.%N)
result=$("$vit" train --out "$out/run" --json "$@" | tail -n 1)
end=$(date +%s.%N)
/usr/bin/python3 - "$result" "$start" "$end" <<'PY'
import json, sys
r = json.loads(sys.argv[1]); wall = float(sys.argv[3]) - float(sys.argv[2])
print(f"wall time {wall / 60:.1f} min, {r['epochs']} epochs, {r['steps']} steps, "
      f"{r['images_per_second']:.0f} images/s")
print(f"test accuracy {100 * r['test_accuracy']:.2f}%, top-5 {100 * r['test_top5_accuracy']:.2f}%")
PY
