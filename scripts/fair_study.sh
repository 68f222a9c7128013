#!/usr/bin/env bash
# The fair training comparison (results/README.md, "Training, tuned per cell"), start to end:
#   1. tune lr per cell (init x slope x depth) on the validation split, 2 seeds, 2 epochs
#   2. every cell at its chosen lr, 5 fresh seeds, 6 epochs
#   3. one summary of both inits: accuracy with 95 % CIs, slope vs slope 0, failures k/n
# Every step resumes where it stopped (fixed sweep folders; finished jobs are skipped).
#   scripts/fair_study.sh [kaiming|pytorch|summary]...   (default: kaiming pytorch summary)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
declare -A GRID=(
  [kaiming]=0.001,0.002,0.005,0.01,0.02,0.05
  [pytorch]=0.005,0.01,0.02,0.05,0.1,0.2
)

# A sweep with a failed job exits 1 after running all the others; the study goes on with what
# finished (the summary lists the failure), and running this script again retries only it.
sweep() { "$PY" train.py -m "$@" || echo "some jobs of '$*' failed (listed above); rerun to retry them" >&2; }

one_init() {
  local init=$1
  sweep +experiment=fair_tune init="$init" lr="${GRID[$init]}"
  $PY -m slopestudy.summarize "multirun/fair_tune/sgd/$init" --tune lr --out "results/fair_tune_sgd_$init"
  sweep +experiment=fair_final init="$init"
}

for step in "${@:-kaiming pytorch summary}"; do
  for s in $step; do
    case $s in
      kaiming | pytorch) one_init "$s" ;;
      summary)
        dirs=()
        for d in multirun/fair_final/sgd/*; do dirs+=("$d"); done
        $PY -m slopestudy.summarize "${dirs[@]}" --out results/fair_final_sgd
        ;;
      *) echo "unknown step: $s (kaiming, pytorch or summary)" >&2; exit 2 ;;
    esac
  done
done
