#!/usr/bin/env bash
# Reproduce the published study in results/: every preset, then its summary.
#   bash scripts/run_study.sh [preset ...]     (default: all; ~45 min on 2 cores)
# Sweeps go to multirun/<preset>/...; tables and figures to results/<preset>/;
# each preset's wall time to results/wall_times.tsv. Sweeps use hydra/launcher=parallel.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(lr_tune init_probe init_probe_depth3 slope_depth slope_depth_lowlr dying_units
  adam_contrast fashion)
touch results/wall_times.tsv

run() {  # run NAME OUT OVERRIDES...: one sweep into multirun/NAME/<OUT>, timed
  local name=$1 out=$2; shift 2
  local dir="multirun/$name/$out"
  rm -rf "$dir"
  local t0=$SECONDS
  # A failed job does not stop the study: the sweep exits 1 and its summary lists it.
  "$PY" train.py -m +experiment="$name" hydra/launcher=parallel "hydra.sweep.dir=$dir" "$@" > "multirun/$name-$out.log" 2>&1 \
    || echo "sweep $dir exited non-zero: see multirun/$name-$out.log"
  printf '%s\t%s\t%s\t%d\n' "$name" "$out" "$*" $((SECONDS - t0)) >> results/wall_times.tsv
  echo "$dir"
}

mkdir -p multirun
for preset in "${presets[@]}"; do
  echo "== $preset ($(date +%H:%M:%S))"
  case $preset in
    slope_depth|fashion)  # learning rate chosen per init by lr_tune
      dirs=("$(run "$preset" kaiming init=kaiming lr=0.01 | tail -1)"
            "$(run "$preset" pytorch init=pytorch lr=0.1 | tail -1)") ;;
    init_probe_depth3)  # follow-up: depth 3 (a 2-point fit) with 10 seeds instead of 3
      dirs=("$(run init_probe depth3 depth=3 init=pytorch seed=0,1,2,3,4,5,6,7,8,9 | tail -1)") ;;
    slope_depth_lowlr)  # follow-up: is slope 0.5's divergence at depth 30 the learning rate?
      dirs=("$(run slope_depth lowlr init=kaiming lr=0.003 slope=0.5,0.01 depth=30 | tail -1)") ;;
    *)
      dirs=("$(run "$preset" all | tail -1)") ;;
  esac
  "$PY" -m slopestudy.summarize "${dirs[@]}" --out "results/$preset" > "results/$preset.txt"
  tail -n 5 "results/$preset.txt"
done
