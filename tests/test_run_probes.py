import math

import numpy as np
import pytest
import torch
from torch import nn

from slopestudy.config import Init, StudyConfig
from slopestudy.run.model import linears
from slopestudy.run.probes import GradientProbe, activation_stats

from .helpers.nets import autograd_reference, mlp, theory_decay


@pytest.mark.parametrize("inplace", [False, True])
def test_probe_matches_autograd(inplace):
    torch.manual_seed(0)
    model = mlp(depth=5, width=24, slope=0.1, inplace=inplace, init=Init("xavier"))
    x, y = torch.randn(16, 784), torch.randint(0, 10, (16,))
    probe = GradientProbe(model)
    probe.armed = True
    model.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    measured = probe.read()
    ref_w, ref_z = autograd_reference(model, x, y)
    torch.testing.assert_close(measured[0], ref_w)
    torch.testing.assert_close(measured[1], ref_z)


def test_probe_costs_nothing_when_unarmed():
    model = mlp(depth=3, width=8, slope=0.0)
    probe = GradientProbe(model)
    nn.functional.cross_entropy(model(torch.randn(4, 784)), torch.zeros(4, dtype=torch.long)).backward()
    with pytest.raises(RuntimeError, match="before an armed"):
        probe.read()


def test_activation_stats_dead_units():
    model = mlp(depth=3, width=4, slope=0.0)
    first, second = linears(model)[:2]
    with torch.no_grad():
        for layer in (first, second):
            layer.weight.fill_(0.0)
            layer.bias.copy_(torch.tensor([1.0, -1.0, -1.0, 0.0]))  # units 1, 2, 3 never > 0
    stats = activation_stats(model, torch.randn(8, 784))
    assert stats.shape == (3, 2)
    torch.testing.assert_close(stats[0], torch.tensor([0.75, 0.75]))
    # layer 0 activations: one unit at 1, three at 0 -> mean 0.25
    assert stats[1, 0].item() == pytest.approx(0.25)


@pytest.mark.parametrize(("init", "slope"), [("pytorch", 0.0), ("xavier", 0.2), ("kaiming", 0.2)])
def test_step0_signal_decay_matches_mean_field_theory(init, slope):
    # The science check in miniature: fitted log10 decay per layer over hidden layers at
    # step 0 agrees with -1/2 log10 g(a) within a few hundredths on a wide net.
    torch.manual_seed(0)
    depth, width = 16, 512
    model = mlp(depth=depth, width=width, slope=slope, init=Init(init))
    probe = GradientProbe(model)
    probe.armed = True
    x, y = torch.randn(256, 784), torch.randint(0, 10, (256,))
    nn.functional.cross_entropy(model(x), y).backward()
    signal = probe.read()[1, : depth - 1].log10().numpy()
    fitted = np.polyfit(np.arange(depth - 1), signal, 1)[0]  # > 0: shrinks toward the input
    assert fitted == pytest.approx(theory_decay(init, slope, width), abs=0.03)


def test_denormal_from_names_the_highest_layer_in_float32_denormals():
    from slopestudy.science.profiles import denormal_from

    widths = [256, 256, 256, 10]
    batch = 128
    rms = [1e-40, 1e-31, 1e-20, 1.0]  # per unit, input side first
    signal = [r * math.sqrt(batch * w) for r, w in zip(rms, widths, strict=True)]
    assert denormal_from(signal, batch, widths) == 1
    assert denormal_from([1.0] * 4, batch, widths) is None


def test_a_run_whose_step0_signal_is_denormal_says_so_in_one_line(caplog):
    from slopestudy.run.measures import Measures

    model = mlp(depth=4, width=256)
    measures = Measures(StudyConfig(depth=4, width=256), model, None, torch.zeros(2, 784), None, {})
    rms = [1e-40, 1e-31, 1e-20, 1.0]  # per unit, input side first: layers 0 and 1 are denormal
    signal = [r * math.sqrt(128 * w) for r, w in zip(rms, [256, 256, 256, 10], strict=True)]
    with caplog.at_level("WARNING"):
        measures.warn_if_denormal(signal)
    (line,) = caplog.messages
    assert "from layer 1 down to the input: float32 denormals" in line
    caplog.clear()
    measures.warn_if_denormal([1.0] * 4)
    assert not caplog.messages
