"""The kernel: slope_rule=tat at the config boundary, the pre-activation residual branch, and the
kernel probe (mean pair cosine of z_l) against the correlation map."""

import json
import math
import os
import subprocess

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from slopestudy.config import (
    ConfigError,
    Init,
    ResidualBranch,
    StudyConfig,
    as_plain_dict,
    config_from_record,  # fmt: skip
    register,
)
from slopestudy.run.model import build_mlp, linears
from slopestudy.run.probes import kernel_profile, mean_pair_cosine, pair_cosines
from slopestudy.run.validate import to_study_config
from slopestudy.science import theory
from slopestudy.science.profiles import theory_kernel_profile
from slopestudy.summary.collect import collect

from .helpers import ROOT

register()


def composed(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


# --- slope_rule=tat ------------------------------------------------------------------------
@pytest.mark.parametrize(("depth", "slope"), [(50, 0.425907), (100, 0.568646), (200, 0.678906)])
def test_tat_rule_sets_the_slope_from_the_depth(depth, slope):
    cfg = to_study_config(composed("slope_rule=tat", "init=kaiming", f"depth={depth}", "epochs=0"))
    assert cfg.slope == pytest.approx(slope, abs=1e-6)
    # run.json stores the resolved slope: read back (as a summary does), it is the same config
    again = config_from_record(as_plain_dict(cfg))
    assert again.slope == cfg.slope and again.slope_rule == cfg.slope_rule


@pytest.mark.parametrize(
    ("overrides", "says"),
    [(("slope_rule=tat", "init=kaiming", "depth=10"), "even ReLU"),
     (("slope_rule=tat", "init=kaiming", "depth=50", "tat_eta=1.2"), "tat_eta=1.2"),
     (("slope_rule=tat", "init=kaiming", "depth=50", "slope=0.3"), "slope=0.3 with slope_rule=tat"),
     (("slope_rule=tat", "init=pytorch", "depth=50"), "init=pytorch"),
     (("slope_rule=tat", "init=kaiming", "depth=50", "act=tanh"), "act=tanh")],
)  # fmt: skip
def test_tat_rule_rejects_what_it_cannot_apply(overrides, says):
    with pytest.raises(ConfigError) as err:
        to_study_config(composed(*overrides))
    assert says in str(err.value) and "allowed" in str(err.value)


@pytest.mark.slow
def test_a_bad_tat_sweep_fails_up_front_in_one_line_per_error(tmp_path, python):
    proc = subprocess.run(
        [python, "train.py", "-m", "slope_rule=tat", "init=kaiming", "depth=10,50", "epochs=0",
         f"hydra.sweep.dir={tmp_path}/sweep"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "depth=10" in errors[0], proc.stderr[-2000:]
    assert not any((tmp_path / "sweep").rglob("run.json"))  # no job ran


@pytest.mark.slow
def test_a_tat_run_records_the_slope_its_net_has(tiny_root, tmp_path, python):
    env = {"SLOPESTUDY_DATA": str(tiny_root)}
    proc = subprocess.run(
        [python, "train.py", "slope_rule=tat", "init=kaiming", "depth=30", "width=32", "epochs=1",
         "data.verify_md5=false", "data.val_size=64", "data.fetch=false", "threads=1",
         f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, env={**os.environ, **env},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((tmp_path / "run" / "run.json").read_text())
    assert record["config"]["slope"] == pytest.approx(theory.tat_slope(30), abs=1e-12)
    assert record["config"]["slope_rule"] == "tat" and record["hparams"]["slope_rule"] == "tat"
    assert record["hparams"]["slope"] == record["config"]["slope"]
    assert "slope=0.2933" in proc.stderr + proc.stdout  # the job's log line
    # the kernel probe: step 0 and the epoch, theory at step 0; runs.csv's columns
    assert len(record["kernel_cos_step0"]) == 30 and len(record["kernel_cos_theory"]) == 30
    assert len(record["history"][-1]["kernel_cos"]) == 30
    runs = collect([tmp_path]).runs
    row = runs.iloc[0]
    assert row["kernel_gap_step0"] == pytest.approx(1 - record["kernel_cos_step0"][-2])
    assert row["kernel_gap_theory"] == pytest.approx(1 - record["kernel_cos_theory"][-2])
    assert row["kernel_gap_end"] == pytest.approx(1 - record["history"][-1]["kernel_cos"][-2])


# --- the probe --------------------------------------------------------------------------------
def test_mean_pair_cosine_is_the_mean_over_pairs():
    x = torch.randn(17, 5, 3)
    cos = torch.nn.functional.cosine_similarity(x.flatten(1)[:, None], x.flatten(1)[None], dim=-1)
    brute = cos[~torch.eye(17, dtype=bool)].double().mean()
    assert float(mean_pair_cosine(x)) == pytest.approx(float(brute), abs=1e-6)
    assert pair_cosines(x).mean() == pytest.approx(float(brute), abs=1e-6)


@pytest.mark.parametrize("slope", [0.0, 0.5])
def test_kernel_probe_follows_the_correlation_map_in_a_wide_net(slope):
    # 64 inputs with cosine ~0.3 between pairs, a wide net: finite-width error shrinks as 1/width
    torch.manual_seed(0)
    common = torch.randn(1, 784)
    x = 0.65 * common + 0.75 * torch.randn(64, 784)
    cfg = StudyConfig(slope=slope, depth=12, width=2048, init=Init.kaiming, seed=0)
    model = build_mlp(cfg)
    measured = kernel_profile(model, x).numpy()
    predicted = np.array(theory_kernel_profile(cfg, pair_cosines(x)))
    gap_m, gap_p = 1 - measured[:-1], 1 - predicted[:-1]  # hidden layers (the logits: 10 units)
    np.testing.assert_allclose(gap_m, gap_p, rtol=0.1)
    assert np.all(np.diff(predicted) > 0)  # each layer makes different inputs more alike


def test_kernel_probe_leaves_an_inplace_net_and_its_mode_unchanged():
    cfg = StudyConfig(slope=0.1, depth=5, width=64, init=Init.kaiming, inplace=True)
    model = build_mlp(cfg).train()
    x = torch.randn(8, 784)
    before = model(x).detach()
    k = kernel_profile(model, x)
    assert model.training and torch.equal(model(x).detach(), before) and k.shape == (5,)


def test_theory_exists_only_where_the_map_holds():
    assert theory_kernel_profile(StudyConfig(init=Init.pytorch), np.array([0.3])) is None  # biases
    assert theory_kernel_profile(StudyConfig(init=Init.kaiming, act="tanh"), np.array([0.3])) is None
    assert theory_kernel_profile(StudyConfig(init=Init.kaiming, residual=True), np.array([0.3])) is None
    pre = StudyConfig(init=Init.kaiming, residual=True, residual_branch=ResidualBranch.act_linear)
    assert len(theory_kernel_profile(pre, np.array([0.3]))) == pre.depth


# --- the residual branch ------------------------------------------------------------------------
def _stream_variances(cfg, x):
    """Second moment of the input to each Linear after the first (the stream, in a residual net)."""
    moments = []
    model = build_mlp(cfg)
    hooks = [m.register_forward_pre_hook(lambda _m, i: moments.append(float(i[0].pow(2).mean())))
             for m in linears(model)[1:]]  # fmt: skip
    with torch.no_grad():
        model(x)
    for h in hooks:
        h.remove()
    return moments


def test_a_pre_activation_residual_net_keeps_its_forward_variance_within_e():
    torch.manual_seed(1)
    x = torch.randn(256, 784)
    base = {"depth": 50, "width": 512, "slope": 0.0, "init": Init.kaiming, "residual": True}
    pre = _stream_variances(StudyConfig(**base, residual_branch=ResidualBranch.act_linear), x)
    # the branch's Linear output adds beta^2 q per block: q_L / q_0 = (1 + 1/blocks)^blocks < e;
    # the inputs of branch Linears are phi(stream): their second moment is half the stream's
    assert 1.8 < pre[-1] / pre[0] < math.e * 1.2
    post = _stream_variances(StudyConfig(**base, residual_branch=ResidualBranch.linear_act), x)
    assert post[-1] / post[0] > 100  # a ReLU at the branch's end: positive means add up
