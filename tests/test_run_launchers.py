"""The shipped launchers run the real code path: joblib (parallel) and submitit (local)."""

import json
import os
import subprocess
import sys

import pytest

from slopestudy.tools import bench

from .helpers import ROOT

TINY = ["depth=2,3", "width=16", "epochs=1", "batch_size=32", "probe_size=64", "data.fetch=false",
        "data.verify_md5=false", "data.val_size=64"]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("launcher", ["parallel", "submitit_local"])
def test_launcher_runs_every_job(launcher, tiny_root, tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "-m",
        f"hydra/launcher={launcher}",
        *TINY,
        f"hydra.sweep.dir={tmp_path}",
    ]
    env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root)}
    env.pop("OMP_NUM_THREADS", None)
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    runs = [json.loads(p.read_text()) for p in tmp_path.rglob("run.json")]
    assert sorted(r["config"]["depth"] for r in runs) == [2, 3]
    assert all(r["status"] == "completed" for r in runs)
    if launcher == "parallel":
        # loky gives each of the cpu_count workers one thread; threads=0 hands that to torch
        assert all(r["threads"] == 1 for r in runs)
    assert (tmp_path / "summary" / "runs.csv").exists()


def test_bench_quick_checks_the_code_path(capsys):
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "instr/bare" in out and "bare/matmul" in out


def test_bench_fixes_times_every_preset_against_the_plain_net():
    table, rounds = bench.fixes_cost([3], rounds=2, n=256, root="/nonexistent")  # synthetic data: speed only
    presets = sorted(p.stem for p in (ROOT / "conf" / "fix").glob("*.yaml"))
    assert sorted(table["fix"]) == presets
    key = f"ratio_to_{bench.FIX_REFERENCE}"
    ratio = table.set_index("fix")[key]
    assert ratio[bench.FIX_REFERENCE] == 1.0 and (ratio > 0).all()
    assert (table["ms_per_step"] > 0).all()
    # every round kept: the median of a fix's per-round ratios is the table's ratio
    assert len(rounds) == 2 * len(presets) and set(rounds["round"]) == {1, 2}
    medians = rounds.groupby("fix")[key].median()
    assert (medians - ratio[medians.index]).abs().max() < 1e-3
    # the presets really differ: BatchNorm's net has norm layers the plain net lacks
    cfgs = bench.fix_configs(3)
    assert cfgs["leaky_batchnorm"].norm.value == "batch" and cfgs["leaky_he"].norm.value == "none"
