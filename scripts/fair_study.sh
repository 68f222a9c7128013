#!/usr/bin/env bash
# The fair training comparison (results/README.md section 2), start to end:
#   1. tune lr per cell (init x slope x depth) on the validation split, 2 seeds, 2 epochs
#   2. every cell at its chosen lr, 5 fresh seeds, 6 epochs
#   3. one summary per optimizer: accuracy with 95 % CIs, slope vs slope 0, failures k/n
# Every step resumes where it stopped (fixed sweep folders; finished jobs are skipped).
#   scripts/fair_study.sh [kaiming|pytorch|edge|long|adam|summary]...
#                                         (default: kaiming pytorch edge long adam summary)
#   kaiming, pytorch: SGD, both steps, all 20 cells of that init
#   edge:    kaiming, depth 5, a=0.1 and 0.2 chose the top of the grid (0.05): lr 0.1 and 0.2 added,
#            re-tuned, and those cells' final runs redone at the new choice if it moved
#   long:    the default-init cells that never learn (depth 20, 30) at 8 and 24 epochs, lr 0.05
#   adam:    Adam, default init, depth 10-30, slopes 0, 0.2, 0.5, its own lr grid
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
declare -A GRID=(
  [sgd/kaiming]=0.001,0.002,0.005,0.01,0.02,0.05
  [sgd/pytorch]=0.005,0.01,0.02,0.05,0.1,0.2
  [adam/pytorch]=0.0001,0.0002,0.0005,0.001,0.002,0.005
)

# A sweep with a failed job exits 1 after running all the others; the study goes on with what
# finished (the summary lists the failure), and running this script again retries only it.
sweep() { "$PY" train.py -m "$@" || echo "some jobs of '$*' failed (listed above); rerun to retry them" >&2; }

# one_cell_set OPT INIT [overrides...]: tune, summarize the tuning, final runs
one_cell_set() {
  local opt=$1 init=$2
  shift 2
  sweep +experiment=fair_tune optimizer="$opt" init="$init" lr="${GRID[$opt/$init]}" "$@"
  $PY -m slopestudy.summarize "multirun/fair_tune/$opt/$init" --tune lr --out "results/fair_tune_${opt}_$init"
  sweep +experiment=fair_final optimizer="$opt" init="$init" "$@"
}

for step in "${@:-kaiming pytorch edge long adam summary}"; do
  for s in $step; do
    case $s in
      kaiming | pytorch) one_cell_set sgd "$s" ;;
      edge)
        sweep +experiment=fair_tune init=kaiming depth=5 slope=0.1,0.2 lr=0.1,0.2
        $PY -m slopestudy.summarize multirun/fair_tune/sgd/kaiming --tune lr --out results/fair_tune_sgd_kaiming
        sweep +experiment=fair_final init=kaiming depth=5 slope=0.1,0.2  # skips runs whose lr did not move
        ;;
      long)
        sweep +experiment=fair_tune init=pytorch lr=0.05 depth=30,20 epochs=8 seed=0,1 \
          hydra.sweep.dir=multirun/fair_long/sgd/pytorch
        sweep +experiment=fair_tune init=pytorch lr=0.05 depth=30,20 epochs=24 seed=0 \
          hydra.sweep.dir=multirun/fair_24/sgd/pytorch
        $PY -m slopestudy.summarize multirun/fair_long/sgd/pytorch --out results/fair_long_sgd_pytorch
        $PY -m slopestudy.summarize multirun/fair_24/sgd/pytorch --out results/fair_24ep_sgd_pytorch
        ;;
      adam) one_cell_set adam pytorch depth=30,20,10 slope=0,0.2,0.5 ;;
      summary)
        for opt in sgd adam; do
          dirs=()
          for d in multirun/fair_final/$opt/*; do [ -d "$d" ] && dirs+=("$d"); done
          [ ${#dirs[@]} -gt 0 ] && $PY -m slopestudy.summarize "${dirs[@]}" --out "results/fair_final_$opt"
        done
        $PY scripts/fair_tables.py >/dev/null
        ;;
      *) echo "unknown step: $s (kaiming, pytorch, edge, long, adam or summary)" >&2; exit 2 ;;
    esac
  done
done
