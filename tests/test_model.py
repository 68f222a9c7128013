import math

import pytest
import torch
from torch import nn

from slopestudy.config import Init, StudyConfig
from slopestudy.model import build_mlp, linears, theory_decay_per_layer


def test_article_example_through_model_code():
    # The article: LeakyReLU()(tensor([-1., 2., -3., 4., -5.])) -> [-0.01, 2, -0.03, 4, -0.05];
    # the project's default slope is nn.LeakyReLU's default, and build_mlp uses it as given.
    model = build_mlp(depth=2, width=5, slope=StudyConfig().slope)
    act = model[1]
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    out = act(torch.tensor([-1.0, 2.0, -3.0, 4.0, -5.0]))
    torch.testing.assert_close(out, torch.tensor([-0.01, 2.0, -0.03, 4.0, -0.05]))


def test_slope_zero_is_relu_and_one_is_identity():
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(build_mlp(2, 4, slope=0.0)[1](x), torch.relu(x))
    torch.testing.assert_close(build_mlp(2, 4, slope=1.0)[1](x), x)


def test_inplace_semantics():
    x = torch.tensor([-1.0, 2.0, -3.0])
    out = build_mlp(2, 3, slope=0.1, inplace=True)[1](x)
    assert out.data_ptr() == x.data_ptr()  # overwrote its input
    torch.testing.assert_close(x, torch.tensor([-0.1, 2.0, -0.3]))
    y = torch.tensor([-1.0, 2.0, -3.0])
    build_mlp(2, 3, slope=0.1, inplace=False)[1](y)
    torch.testing.assert_close(y, torch.tensor([-1.0, 2.0, -3.0]))  # left alone


@pytest.mark.parametrize("init", list(Init))
def test_inplace_gives_same_outputs_and_gradients(init):
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    grads = []
    for inplace in (False, True):
        torch.manual_seed(0)
        model = build_mlp(6, 16, slope=0.2, inplace=inplace, init=init)
        nn.functional.cross_entropy(model(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_structure_depth_counts_linear_layers():
    model = build_mlp(depth=4, width=32, slope=0.0)
    shapes = [tuple(layer.weight.shape) for layer in linears(model)]
    assert shapes == [(32, 784), (32, 32), (32, 32), (10, 32)]
    assert sum(isinstance(m, nn.LeakyReLU) for m in model) == 3


@pytest.mark.parametrize(
    ("init", "slope", "var"),
    [("pytorch", 0.0, 1 / (3 * 256)), ("kaiming", 0.2, 2 / (1.04 * 256)), ("xavier", 0.0, 2 / 512)],
)
def test_init_weight_variance(init, slope, var):
    torch.manual_seed(0)
    w = linears(build_mlp(3, 256, slope=slope, init=init))[1].weight
    assert w.var().item() == pytest.approx(var, rel=0.03)


@pytest.mark.parametrize(
    ("init", "slope", "expected"),
    [  # the table in SCIENCE.md / README
        ("pytorch", 0.0, 0.389), ("pytorch", 0.2, 0.381), ("pytorch", 0.5, 0.341),
        ("xavier", 0.0, 0.151), ("xavier", 0.2, 0.142), ("xavier", 0.5, 0.102),
        ("kaiming", 0.0, 0.0), ("kaiming", 0.5, 0.0),
    ],
)  # fmt: skip
def test_theory_decay_table(init, slope, expected):
    assert theory_decay_per_layer(init, slope) == pytest.approx(expected, abs=5e-4)


def test_slope_factor_over_30_layers():
    # sqrt((1+a^2)/2) relative to ReLU per layer: 1.0198 for a=0.2, i.e. ~1.8x over 30 layers
    ratio = 10 ** (30 * (theory_decay_per_layer("pytorch", 0) - theory_decay_per_layer("pytorch", 0.2)))
    assert ratio == pytest.approx(math.sqrt(1.04) ** 30, rel=1e-9)
    assert 1.7 < ratio < 1.9
