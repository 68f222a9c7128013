#!/usr/bin/env bash
# The whole GPU check in one call (issue 13), on a machine with a CUDA GPU and the .gpu/ folder
# from scripts/gpu_prepare.sh. Writes into $OUT (or ./gpu_out): the gpu-marked tests' log,
# bench_gpu.md (matmul limit, bare loop, instrumented, DataLoader on the GPU) and the wall time
# of the default 24-run `make study` sweep on the GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src
mkdir -p data/MNIST/raw && cp .gpu/mnist/*.gz data/MNIST/raw/
python3 -m slopestudy.data --root data || exit 1  # unpacks the .gz and checks MD5
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$OUT/gpu.txt"

echo "== gpu-marked tests"
timeout 240 python3 -m pytest -m gpu -v -p no:cacheprovider tests/test_gpu.py 2>&1 | tee "$OUT/gpu_tests.log"

echo "== benchmark"
timeout 180 python3 -m slopestudy.bench --device cuda --rounds 3 --out "$OUT/bench_gpu.md" 2>&1 | tail -8

echo "== the default 24-run study sweep (make study's STUDY_ARGS), basic launcher, device=cuda"
start=$(date +%s.%N)
timeout 300 python3 train.py -m slope=0,0.01,0.2 init=pytorch,kaiming device=cuda \
  hydra.sweep.dir=/tmp/study_gpu > "$OUT/study_gpu.log" 2>&1
rc=$?
end=$(date +%s.%N)
python3 -c "print(f'study sweep: rc=$rc, {($end - $start):.1f} s wall for 24 runs')" | tee -a "$OUT/gpu.txt"
grep -h '"seconds"' /tmp/study_gpu/*/seed=0/run.json | head -3
tail -25 "$OUT/study_gpu.log"
