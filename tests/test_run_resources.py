"""Memory is checked before any work: the estimate against real peak RSS, and a run too big."""

import subprocess
import sys

import pytest

from slopestudy.config import ConfigError, Optimizer, StudyConfig
from slopestudy.run.resources import check_fits, estimate_bytes, pick_device

from .helpers import REAL_DATA, ROOT

PEAK = """import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True, text=True)
assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)"""


@pytest.mark.slow
@pytest.mark.skipif(not (REAL_DATA / "MNIST" / "raw").exists(), reason="real MNIST not fetched")
@pytest.mark.parametrize(
    "kw",
    [
        {"depth": 10, "width": 256},
        {"depth": 4, "width": 2048, "batch_size": 512},
        {"depth": 3, "width": 4096, "batch_size": 1024, "optimizer": "adam", "lr": 0.001},
    ],
)
def test_estimate_is_within_25_percent_of_measured_peak_rss(tmp_path, kw):
    args = [f"{k}={v}" for k, v in kw.items()]
    cmd = [sys.executable, "train.py", *args, "epochs=1", "data.train_size=4096", "threads=1",
           f"hydra.run.dir={tmp_path}"]  # fmt: skip
    out = subprocess.run([sys.executable, "-c", PEAK, *cmd], cwd=ROOT, capture_output=True, text=True,
                         timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stderr
    measured = int(out.stdout.split()[-1])
    cfg = StudyConfig(**{**kw, "optimizer": Optimizer(kw.get("optimizer", "sgd"))})
    estimated = sum(estimate_bytes(cfg).values())
    assert 0.8 < estimated / measured < 1.25, (estimated / 2**20, measured / 2**20)


def test_estimate_grows_with_the_parts_that_need_memory():
    base = sum(estimate_bytes(StudyConfig()).values())
    parts = estimate_bytes(StudyConfig(optimizer=Optimizer.adam))
    assert parts["optimizer state"] == 2 * parts["parameters"]  # Adam: two moments
    assert sum(estimate_bytes(StudyConfig(width=512)).values()) > base
    assert sum(estimate_bytes(StudyConfig(batch_size=1024)).values()) > base
    sgd = estimate_bytes(StudyConfig())
    assert sgd["parameters"] == 4 * (784 * 256 + 256 + 8 * (256 * 256 + 256) + 256 * 10 + 10)


def test_a_run_that_cannot_fit_is_a_config_error_naming_both_numbers():
    with pytest.raises(
        ConfigError, match=r"width=300000, depth=10.* needs about [\d.]+ GiB.* has [\d.]+ GiB"
    ):
        check_fits(StudyConfig(width=300_000), pick_device(StudyConfig().device))
    check_fits(StudyConfig(), pick_device(StudyConfig().device))  # the default fits


@pytest.mark.slow
def test_too_big_run_fails_fast_in_one_line_without_a_folder(tmp_path):
    run_dir = tmp_path / "run"
    proc = subprocess.run([sys.executable, "train.py", "width=300000", f"hydra.run.dir={run_dir}"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: invalid config: width=300000") and proc.stderr.count("\n") == 1
    assert not run_dir.exists()
