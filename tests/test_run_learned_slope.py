"""PReLU (a learned slope) and init=scaled (the init scale as a variable)."""

import json
import math

import pytest
import torch
from torch import nn

from slopestudy.config import Act, Init, PreluParams
from slopestudy.run.model import linears, prelus
from slopestudy.summary.summarize import summarize

from .helpers.children import train
from .helpers.nets import mlp, theory_decay


@pytest.mark.parametrize(("params", "n"), [("layer", 1), ("unit", 32)])
def test_prelu_starts_at_slope_with_one_slope_per_layer_or_unit(params, n):
    model = mlp(depth=4, width=32, slope=0.25, act=Act("prelu"), prelu_params=PreluParams(params))
    assert [m.weight.numel() for m in prelus(model)] == [n] * 3
    assert all(torch.all(m.weight == 0.25) for m in prelus(model))
    x = torch.tensor([[-4.0, 2.0]])
    torch.testing.assert_close(nn.PReLU(init=0.25)(x), torch.tensor([[-1.0, 2.0]]))


def test_scaled_init_has_the_asked_weight_variance():
    torch.manual_seed(0)
    for gain in (0.5, 2.0, 4.0):
        w = linears(mlp(depth=3, width=512, slope=0.0, init=Init("scaled"), init_gain=gain))[1].weight
        assert w.var().item() * 512 == pytest.approx(gain, rel=0.02)
        assert torch.all(linears(mlp(depth=3, width=8, slope=0.0, init=Init("scaled")))[1].bias == 0)


@pytest.mark.parametrize("slope", [0.0, 0.2, 0.5])
def test_scaled_theory_equals_the_tables_at_their_gains(slope):
    assert theory_decay("scaled", slope, 256, gain=1 / 3) == pytest.approx(
        theory_decay("pytorch", slope, 256)
    )
    assert theory_decay("scaled", slope, 256, gain=2 / (1 + slope**2)) == pytest.approx(
        theory_decay("kaiming", slope, 256)
    )
    g = 1.5 * (1 + slope**2) / 2
    assert theory_decay("scaled", slope, 256, gain=1.5) == pytest.approx(-0.5 * math.log10(g))


@pytest.mark.slow
def test_prelu_slopes_move_are_logged_and_tabulated(tiny_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = train(tiny_root, "act=prelu", "prelu_params=layer,unit", "slope=0.25", "depth=3", "epochs=3",
                 "lr=0.05", "seed=0,1", f"hydra.sweep.dir={sweep}", multirun=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    runs = [json.loads(p.read_text()) for p in sweep.rglob("run.json")]
    assert len(runs) == 4
    for run in runs:
        learned = [h["prelu_slope"] for h in run["history"]]
        assert learned[0] == pytest.approx([0.25, 0.25])  # at init
        assert any(abs(v - 0.25) > 1e-4 for v in learned[-1])  # gradient descent moved them
    s = summarize([sweep], figures=True)
    assert set(s.prelu["layer"]) == {0, 1} and set(s.prelu["prelu_params"]) == {"layer", "unit"}
    assert (s.prelu["n"] == 2).all() and s.prelu["learned_slope_lo"].notna().all()
    assert "learned slope per hidden layer" in (s.out_dir / "tables.md").read_text()
    assert (s.out_dir / "prelu_slopes.png").exists() and (s.out_dir / "val_curves.png").exists()
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    job = next(sweep.rglob("run.json")).parent
    acc = EventAccumulator(str(job))
    acc.Reload()
    assert {"prelu_slope/layer_00", "prelu_slope/layer_01"} <= set(acc.Tags()["scalars"])


def test_phase_boundary_finds_the_contour_the_runs_follow(tmp_path):
    from .helpers.runs import make_run

    gains, depths = (0.25, 0.5, 1.0, 2.0, 4.0), (3, 5, 10, 20, 30, 50)
    for slope in (0.0, 0.5):
        for gain in gains:
            g = gain * (1 + slope**2) / 2
            for depth in depths:  # synthetic truth: a net learns while depth * |log10 g| <= 2
                learns = depth * abs(math.log10(g)) <= 2
                make_run(tmp_path, f"a{slope}g{gain}d{depth}/seed=0", init="scaled", init_gain=gain,
                         slope=slope, depth=depth, val=0.95 if learns else 0.11)  # fmt: skip
    s = summarize([tmp_path], out_dir=tmp_path / "out", figures=True)
    best = s.phase[s.phase["best"]].set_index("slope")
    assert best.loc[0.0, "k"] == 2 and best.loc[0.5, "k"] == 2
    assert best.loc[0.5, "critical_gain"] == pytest.approx(1.6)
    assert (tmp_path / "out" / "phase_diagram.png").stat().st_size > 10_000
    assert "edge of trainability" in (tmp_path / "out" / "tables.md").read_text()
