"""A real `python train.py -m ...` sweep in a subprocess on tiny IDX data, read back with
TensorBoard's own reader and checked through run.json."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from .helpers import ROOT

DEPTHS, SLOPES = (2, 4), ("0", "0.2")


@pytest.fixture(scope="module")
def sweep(tiny_root, tmp_path_factory):
    sweep_dir = tmp_path_factory.mktemp("sweep")
    proc = run_sweep(sweep_dir, tiny_root, f"slope={','.join(SLOPES)}", f"depth={','.join(map(str, DEPTHS))}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return sweep_dir, proc.stdout


def run_sweep(sweep_dir, tiny_root, *overrides):
    cmd = [sys.executable, "train.py", "-m", *overrides, "width=16", "epochs=2", "batch_size=32",
           "log_every=3", "hist_every=6", "probe_size=64", "data.fetch=false",
           "data.verify_md5=false", "data.val_size=64", f"hydra.sweep.dir={sweep_dir}"]  # fmt: skip
    env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root)}
    return subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def job_dirs(sweep_dir):
    # Named from the overrides in Hydra's (sorted) order; machinery keys are excluded.
    name = "batch_size=32,data.val_size=64,depth={},epochs=2,slope={},width=16"
    return {(d, s): sweep_dir / name.format(d, s) / "seed=0" for d in DEPTHS for s in SLOPES}


def test_sweep_prints_where_and_how_to_review(sweep):
    sweep_dir, stdout = sweep
    assert f"Sweep folder: {sweep_dir}" in stdout
    assert f"tensorboard --logdir {sweep_dir}" in stdout


def test_run_json_per_job(sweep):
    for (depth, slope), job in job_dirs(sweep[0]).items():
        run = json.loads((job / "run.json").read_text())
        assert run["status"] == "completed"
        assert run["config"]["depth"] == depth and run["config"]["slope"] == float(slope)
        assert len(run["grad_norm_step0"]) == depth and len(run["signal_norm_step0"]) == depth
        assert all(v > 0 for v in run["grad_norm_step0"] + run["signal_norm_step0"])
        assert len(run["grad_norm_epoch_mean"]) == 2 == len(run["signal_norm_epoch_mean"])
        assert all(len(epoch) == depth for epoch in run["grad_norm_epoch_mean"])
        assert 0 <= run["final"]["test_acc"] <= 1 and run["final"]["train_loss"] > 0
        assert [h["epoch"] for h in run["history"]] == [0, 1, 2]


def test_tensorboard_reader_finds_every_tag(sweep):
    for (depth, _), job in job_dirs(sweep[0]).items():
        acc = EventAccumulator(str(job), size_guidance={"scalars": 0, "histograms": 0, "tensors": 0})
        acc.Reload()
        tags = acc.Tags()
        expected = {"4_loss/train", "4_loss/val", "4_loss/test", "5_acc/val", "5_acc/test"}
        expected |= {f"{m}/layer_{i:02d}" for m in ("3_grad_norm", "2_signal_norm") for i in range(depth)}
        expected |= {f"{m}/layer_{i:02d}" for m in ("6_dead_frac", "7_act_mean", "8_act_std")
                     for i in range(depth - 1)}  # fmt: skip
        expected |= {f"1_profile/{m}/epoch_{e:02d}" for m in ("grad_norm", "signal_norm") for e in (0, 1, 2)}
        assert expected <= set(tags["scalars"]), expected - set(tags["scalars"])
        assert {f"grad_hist/layer_{i:02d}" for i in range(depth)} <= set(tags["histograms"])
        # step 0 is logged, and agrees with run.json
        run = json.loads((job / "run.json").read_text())
        first = acc.Scalars("3_grad_norm/layer_00")[0]
        assert first.step == 0 and first.value == pytest.approx(run["grad_norm_step0"][0], rel=1e-6)
        steps = [e.step for e in acc.Scalars("2_signal_norm/layer_00")]
        assert steps == sorted(steps) and steps[:3] == [0, 3, 6]
        # the step-0 profile: x = layer index, values = run.json's step-0 norms
        profile = acc.Scalars("1_profile/signal_norm/epoch_00")
        assert [e.step for e in profile] == list(range(depth))
        assert [e.value for e in profile] == pytest.approx(run["signal_norm_step0"], rel=1e-6)
        # and its log10, for TensorBoard's default linear axis
        log_profile = acc.Scalars("1_profile/log10_signal_norm/epoch_00")
        assert [e.value for e in log_profile] == pytest.approx(np.log10(run["signal_norm_step0"]), rel=1e-5)
        # session hparams in this run (not a timestamped sub-run); the experiment is the sweep's
        plugins = acc.PluginTagToContent
        assert set(plugins("hparams")) == {"_hparams_/session_start_info", "_hparams_/session_end_info"}
        assert "config/text_summary" in tags["tensors"]
        assert "custom_scalars__config__" in tags["tensors"]
        assert "final/test_acc" in tags["scalars"]
    assert not [p for p in sweep[0].rglob("*") if p.is_dir() and p.name.replace(".", "").isdigit()]


def test_sweep_ends_with_summary_table_and_files(sweep):
    sweep_dir, stdout = sweep
    assert "test accuracy — all runs" in stdout and "slope=0.2" in stdout
    assert "4 runs: 4 completed" in stdout
    for name in ("runs.csv", "aggregate.csv", "tables.md", "signal_norm_step0.png", "decay_heatmap.png"):
        assert (sweep_dir / "summary" / name).exists(), name


@pytest.mark.slow
@pytest.mark.parametrize(
    ("overrides", "message"),
    [(["depth=2,0"], "depth=0; allowed"), (["slope=0,abc"], "slope='abc'"), (["lr=0.01,-1"], "lr=-1.0")],
)
def test_bad_value_anywhere_in_a_sweep_fails_before_any_job(tiny_root, tmp_path, overrides, message):
    proc = run_sweep(tmp_path / "sweep", tiny_root, *overrides)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"error: invalid config: {message}" in proc.stderr
    assert not list(tmp_path.rglob("run.json"))  # not even the valid job ran


@pytest.mark.slow
def test_real_tensorboard_serves_every_run_and_tag(sweep):
    # The real `tensorboard` server on loopback, checked through its HTTP API (screenshots off:
    # they need Chromium, which `scripts/review_dashboard.py` uses when it is installed).
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [
        sys.executable,
        "scripts/review_dashboard.py",
        str(sweep[0]),
        "--no-screenshots",
        "--port",
        str(port),
    ]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "dashboard review: OK" in proc.stdout
    assert "5 runs listed, 4 job folders" in proc.stdout  # 4 jobs + the summary run
    # swept keys first and flagged, constants after (the dashboard checks the first five)
    order = proc.stdout.split("HParams order (differs marked *): ")[1].split("\n")[0].split(", ")
    assert sorted(order[:2]) == ["depth*", "slope*"] and not any("*" in name for name in order[2:])
    assert "summary tables in Text" in proc.stdout and " 0 summary tables" not in proc.stdout
