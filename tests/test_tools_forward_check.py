"""The forward check splits a theory mismatch into its forward and backward halves; for a
positively homogeneous activation the backward gain does not depend on q, so all three
predictions must coincide, and the CLI reads the real loader's files."""

import math

import pytest
import torch

from slopestudy.science import theory
from slopestudy.tools import forward_check


def _batch(n=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 784, generator=g) * torch.rand(n, 1, generator=g) * 2  # examples differ in scale
    return x, torch.randint(0, 10, (n,), generator=g)


def test_leaky_relu_predictions_coincide_and_match_the_closed_form():
    x, y = _batch()
    row = forward_check.measure(
        forward_check.config_from_record({"slope": 0.2, "depth": 12, "init": "kaiming"}), x, y
    )
    assert row["plain"] == pytest.approx(0.0, abs=1e-12)  # He init for a=0.2: chi = 1 at every q
    assert row["input_mix"] == pytest.approx(row["plain"], abs=1e-9)
    assert row["at_measured_q"] == pytest.approx(row["plain"], abs=1e-9)
    assert abs(row["at_measured_units"]) < 0.02  # the units' own phi'^2: about half of them active
    assert math.isfinite(row["measured"]) and abs(row["measured"]) < 0.05


def test_smooth_activation_uses_each_examples_own_q():
    x, y = _batch()
    cfg = forward_check.config_from_record({"act": "gelu", "init": "kaiming", "depth": 20})
    row = forward_check.measure(cfg, x, y)
    # examples differ in input scale, so the per-example recursion differs from the pooled one
    assert row["input_mix"] != pytest.approx(row["plain"], abs=1e-3)
    assert row["plain"] == pytest.approx(
        theory.predicted_decay_per_layer("gelu", 2.0, 20, float((x**2).mean()))
    )
    assert row["q_mid_plain"] == pytest.approx(
        theory.forward_variances("gelu", 2.0, 20, float((x**2).mean()))[10]
    )


def test_norms_and_skips_are_refused():
    x, y = _batch(8)
    with pytest.raises(ValueError, match="plain recursion"):
        forward_check.measure(forward_check.config_from_record({"norm": "batch"}), x, y)


def test_cli_on_tiny_idx_files(tiny_root, tmp_path, capsys):
    out = tmp_path / "check.csv"
    rc = forward_check.main(["act=tanh", "init=xavier", "data.verify_md5=false", "data.val_size=32",
                             "--depths", "4", "--seeds", "2", "--batch", "32",
                             "--root", str(tiny_root), "--out", str(out)])  # fmt: skip
    assert rc == 0
    frame = forward_check.pd.read_csv(out)
    assert list(frame["seed"]) == [0, 1] and set(frame["act"]) == {"tanh"}
    assert "backward gain at measured q" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        forward_check.main(["nonsense=1", "--root", str(tiny_root)])
