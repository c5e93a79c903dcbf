#!/usr/bin/env bash
# Issue 15's speed numbers: `compare_speed.py` (the PyTorch reference's side-by-side run) RUNS times,
# median ratio per workload, under the environment's OpenBLAS kernel choice and/or OpenBLAS's own.
# Some machines set OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) because older OpenBLAS builds miscompute
# on their processors; that pins medsynth's GEMMs to those kernels (PyTorch uses its own). "own" unsets
# both for the benchmark command alone (the tests and CI never do) and prints which kernels then run.
#   bash scripts/experiments/compare_speed_runs.sh [RUNS] [env|own|both]
# Needs an idle machine, a release build and `pip install torch`; REFERENCE overrides the script path.
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${1:-3}
MODE=${2:-both}
B=${MEDSYNTH_BIN:-.build/release/medsynth}
REFERENCE=${REFERENCE:-../shared/reference/compare_speed.py}
[ -f "$REFERENCE" ] || { echo "no $REFERENCE (set REFERENCE=path/to/compare_speed.py)" >&2; exit 1; }
run_mode() {  # run_mode LABEL [env -u ...]
    local label=$1; shift
    local kernels
    kernels=$("$@" "$B" bench --only dcgan64_generate_b256 --repetitions 1 2>&1 >/dev/null | sed -n "s/^bench: \(OpenBLAS.*\)/\1/p")
    echo "== $label: $kernels"
    local logs=()
    for r in $(seq 1 "$RUNS"); do
        local log
        log=$(mktemp)
        "$@" python3 "$REFERENCE" "$B" > "$log"
        sed 's/^/   /' "$log"
        logs+=("$log")
    done
    python3 - "${logs[@]}" <<'PY'
import statistics, sys
rows = {}
for path in sys.argv[1:]:
    for line in open(path):
        parts = line.split()
        if len(parts) == 4 and parts[0] != "workload":
            rows.setdefault(parts[0], []).append((float(parts[1]), float(parts[2]), float(parts[3])))
for workload, values in rows.items():
    ratios = [v[2] for v in values]
    print(f"   {workload:26s} ratios {' / '.join(f'{r:.2f}' for r in ratios)}  median {statistics.median(ratios):.2f}"
          f"  (medsynth {statistics.median(v[0] for v in values):.1f}, PyTorch {statistics.median(v[1] for v in values):.1f} img/s)")
PY
    rm -f "${logs[@]}"
}
case $MODE in env|both) run_mode "environment's OpenBLAS kernels" env ;; esac
case $MODE in own|both) run_mode "OpenBLAS's own kernel choice" env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE ;; esac
