#!/usr/bin/env bash
# Prepare what travels to a GPU machine (issue 13): it has PyTorch, TensorBoard, pandas, scipy,
# matplotlib, pytest and PyYAML, but no Hydra and no internet. Into .gpu/ (git-ignored):
#   .gpu/whl/   hydra-core, omegaconf, antlr4 runtime, the joblib launcher (all py3-none-any wheels,
#               so any Python 3 takes them; the GPU machine's is 3.12.3)
#   .gpu/mnist/ the four raw MNIST files, gzipped (~11 MB; slopestudy.run.data unpacks them)
# Then, with the device tool:  run(command="bash scripts/gpu_check.sh", carry=[".gpu"], timeout_s=480)
# (about 220 s on an H200; results/bench_gpu.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .gpu && mkdir -p .gpu/whl .gpu/mnist
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}" \
  -d .gpu/whl hydra-core==1.3.8 omegaconf==2.3.1 hydra-joblib-launcher==1.2.0
# antlr4-python3-runtime 4.9.3 exists only as an sdist: build its (pure-Python) wheel here.
$PY -m pip wheel -q --no-deps -w .gpu/whl antlr4-python3-runtime==4.9.3
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  gzip -9 -c "data/MNIST/raw/$f" > ".gpu/mnist/$f.gz"
done
du -sh .gpu/whl .gpu/mnist
