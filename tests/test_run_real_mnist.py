"""Smoke test on real MNIST (runs where `make data` has fetched it, as CI does)."""

import json
import subprocess
import sys

import pytest

from .helpers import REAL_DATA, ROOT

pytestmark = pytest.mark.skipif(
    not (REAL_DATA / "MNIST" / "raw").exists(), reason="real MNIST not fetched (make data)"
)


@pytest.mark.slow
def test_one_epoch_on_real_mnist_learns(tmp_path):
    cmd = [sys.executable, "train.py", "depth=3", "epochs=1", "data.train_size=8192",
           f"data.root={REAL_DATA}", f"hydra.run.dir={tmp_path}"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = json.loads((tmp_path / "run.json").read_text())
    assert run["status"] == "completed"
    assert run["history"][0]["test_acc"] < 0.3  # untrained
    assert run["final"]["test_acc"] > 0.75  # one epoch on 8k real digits (0.84 seen)
