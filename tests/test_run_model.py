import math

import pytest
import torch
from torch import nn

from slopestudy.config import Act, ConfigError, Init, Norm, StudyConfig
from slopestudy.run.model import Residual, activations, linears

from .helpers.nets import mlp, theory_decay


def test_article_example_through_model_code():
    # The article: LeakyReLU()(tensor([-1., 2., -3., 4., -5.])) -> [-0.01, 2, -0.03, 4, -0.05];
    # the project's default slope is nn.LeakyReLU's default, and build_mlp uses it as given.
    model = mlp(depth=2, width=5, slope=StudyConfig().slope)
    act = model[1]
    assert isinstance(act, nn.LeakyReLU) and act.negative_slope == 0.01
    out = act(torch.tensor([-1.0, 2.0, -3.0, 4.0, -5.0]))
    torch.testing.assert_close(out, torch.tensor([-0.01, 2.0, -0.03, 4.0, -0.05]))


def test_slope_zero_is_relu_and_one_is_identity():
    x = torch.linspace(-3, 3, 13)
    torch.testing.assert_close(mlp(depth=2, width=4, slope=0.0)[1](x), torch.relu(x))
    torch.testing.assert_close(mlp(depth=2, width=4, slope=1.0)[1](x), x)


def test_inplace_semantics():
    x = torch.tensor([-1.0, 2.0, -3.0])
    out = mlp(depth=2, width=3, slope=0.1, inplace=True)[1](x)
    assert out.data_ptr() == x.data_ptr()  # overwrote its input
    torch.testing.assert_close(x, torch.tensor([-0.1, 2.0, -0.3]))
    y = torch.tensor([-1.0, 2.0, -3.0])
    mlp(depth=2, width=3, slope=0.1, inplace=False)[1](y)
    torch.testing.assert_close(y, torch.tensor([-1.0, 2.0, -3.0]))  # left alone


@pytest.mark.parametrize("init", list(Init))
def test_inplace_gives_same_outputs_and_gradients(init):
    x, y = torch.randn(32, 784), torch.randint(0, 10, (32,))
    grads = []
    for inplace in (False, True):
        torch.manual_seed(0)
        model = mlp(depth=6, width=16, slope=0.2, inplace=inplace, init=Init(init))
        nn.functional.cross_entropy(model(x), y).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_structure_depth_counts_linear_layers():
    model = mlp(depth=4, width=32, slope=0.0)
    shapes = [tuple(layer.weight.shape) for layer in linears(model)]
    assert shapes == [(32, 784), (32, 32), (32, 32), (10, 32)]
    assert sum(isinstance(m, nn.LeakyReLU) for m in model) == 3


@pytest.mark.parametrize(
    ("init", "slope", "var"),
    [("pytorch", 0.0, 1 / (3 * 256)), ("kaiming", 0.2, 2 / (1.04 * 256)), ("xavier", 0.0, 2 / 512)],
)
def test_init_weight_variance(init, slope, var):
    torch.manual_seed(0)
    w = linears(mlp(depth=3, width=256, slope=slope, init=Init(init)))[1].weight
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
    assert theory_decay(init, slope) == pytest.approx(expected, abs=5e-4)


def test_slope_factor_over_30_layers():
    # sqrt((1+a^2)/2) relative to ReLU per layer: 1.0198 for a=0.2, i.e. ~1.8x over 30 layers
    ratio = 10 ** (30 * (theory_decay("pytorch", 0) - theory_decay("pytorch", 0.2)))
    assert ratio == pytest.approx(math.sqrt(1.04) ** 30, rel=1e-9)
    assert 1.7 < ratio < 1.9


@pytest.mark.parametrize("act", ["elu", "selu", "gelu", "silu", "tanh"])
def test_other_activations_reject_a_slope_they_would_ignore(act):
    mlp(depth=3, width=8, act=Act(act))  # the default slope: accepted
    with pytest.raises(ConfigError, match=f"slope=0.2; allowed: its default 0.01 with act={act}"):
        StudyConfig(act=Act(act), slope=0.2)


@pytest.mark.parametrize(("norm", "norm_type"), [("layer", nn.LayerNorm), ("batch", nn.BatchNorm1d)])
@pytest.mark.parametrize("residual", [False, True])
def test_norm_sits_before_the_activation_and_residual_wraps_hidden_blocks(norm, norm_type, residual):
    model = mlp(depth=5, width=16, norm=Norm(norm), residual=residual, act=Act("selu"), init=Init("lecun"))
    assert len(linears(model)) == 5 and len(activations(model)) == 4
    blocks = [m for m in model if isinstance(m, Residual)]
    assert len(blocks) == (3 if residual else 0)  # hidden width->width layers 1..3
    if residual:
        assert [type(m) for m in blocks[0].branch] == [nn.Linear, norm_type, nn.SELU]
        assert blocks[0].scale == pytest.approx(1 / math.sqrt(3))
    else:
        assert [type(m) for m in list(model)[:3]] == [nn.Linear, norm_type, nn.SELU]
    x = torch.randn(8, 784)
    assert model(x).shape == (8, 10)


def test_plain_net_keeps_its_modules_random_draws_and_state_dict_keys():
    # norm=none, residual=false must be the nn.Sequential it always was: same keys, same weights
    torch.manual_seed(3)
    model = mlp(depth=4, width=8, slope=0.2, init=Init("kaiming"))
    torch.manual_seed(3)
    ref = nn.Sequential(nn.Linear(784, 8), nn.LeakyReLU(0.2), nn.Linear(8, 8), nn.LeakyReLU(0.2),
                        nn.Linear(8, 8), nn.LeakyReLU(0.2), nn.Linear(8, 10))  # fmt: skip
    for layer in linears(ref):
        nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
        nn.init.zeros_(layer.bias)
    assert list(model.state_dict()) == list(ref.state_dict())
    for a, b in zip(model.state_dict().values(), ref.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


OTHER_INITS = [("tanh", "kaiming", 25 / 9), ("selu", "lecun", 1.0), ("gelu", "kaiming", 2.0),
               ("selu", "kaiming", 9 / 16)]  # fmt: skip


@pytest.mark.parametrize(("act", "init", "var"), OTHER_INITS)
def test_init_for_other_activations(act, init, var):
    torch.manual_seed(0)
    w = linears(mlp(depth=3, width=512, act=Act(act), init=Init(init)))[1].weight
    assert w.var().item() * 512 == pytest.approx(var, rel=0.03)


def test_theory_column_for_norms_and_skips():
    # BatchNorm in the wide, large-batch limit: chi = E[phi'^2] / Var[phi]; for ReLU pi/(pi-1)
    assert theory_decay("pytorch", 0.0, norm=Norm("batch")) == pytest.approx(
        -0.5 * math.log10(math.pi / (math.pi - 1))
    )
    assert theory_decay("pytorch", 0.2, norm=Norm("layer")) == pytest.approx(
        0.0, abs=1e-12
    )  # LayerNorm: chi = 1
    # skips: flat inside the stack, the first (unscaled) Linear 1/2 log10(blocks) above it
    assert theory_decay("pytorch", 0.2, depth=30, residual=True) == pytest.approx(-0.0063, abs=5e-5)
    assert math.isnan(theory_decay("pytorch", 0.2, norm=Norm("batch"), residual=True))
    assert math.isnan(theory_decay("pytorch", 0.01, act=Act("gelu"), residual=True))
    assert theory_decay("kaiming", 0.2) == pytest.approx(0.0, abs=1e-12)


def test_bias_shift_moves_hidden_biases_only():
    torch.manual_seed(0)
    base = linears(mlp(depth=3, width=8))
    torch.manual_seed(0)
    shifted = linears(mlp(depth=3, width=8, bias_shift=0.1))
    for a, b in zip(base[:-1], shifted[:-1], strict=True):
        torch.testing.assert_close(b.bias, a.bias + 0.1)
    torch.testing.assert_close(shifted[-1].bias, base[-1].bias)
