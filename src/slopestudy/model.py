"""The MLP under study: Linear(784, w) -> LeakyReLU -> ... -> Linear(w, 10)."""

from __future__ import annotations

import math

import torch
from torch import nn

from slopestudy.config import Act, Init, PreluParams

N_IN, N_OUT = 784, 10


def build_mlp(depth: int, width: int, slope: float, inplace: bool = False,
              init: Init | str = Init.pytorch, act: Act | str = Act.leaky_relu,
              prelu_params: PreluParams | str = PreluParams.layer,
              init_gain: float = 2.0, bias_shift: float = 0.0) -> nn.Sequential:  # fmt: skip
    """`depth` Linear layers (depth-1 hidden layers of `width`), LeakyReLU(slope) between them,
    or PReLU starting at `slope` (one learned slope per layer, or one per unit); `bias_shift` is
    added to every hidden layer's bias after init."""
    sizes = [N_IN] + [width] * (depth - 1) + [N_OUT]
    layers: list[nn.Module] = []
    for i in range(depth):
        layers.append(nn.Linear(sizes[i], sizes[i + 1]))
        if i < depth - 1 and Act(act) is Act.prelu:
            n = width if PreluParams(prelu_params) is PreluParams.unit else 1
            layers.append(nn.PReLU(num_parameters=n, init=slope))
        elif i < depth - 1:
            layers.append(nn.LeakyReLU(negative_slope=slope, inplace=inplace))
    model = nn.Sequential(*layers)
    init_weights(model, Init(init), slope, init_gain)
    with torch.no_grad():
        for layer in linears(model)[:-1]:
            layer.bias += bias_shift
    return model


def prelus(model: nn.Sequential) -> list[nn.PReLU]:
    return [m for m in model if isinstance(m, nn.PReLU)]


def linears(model: nn.Sequential) -> list[nn.Linear]:
    """The Linear layers in order: index 0 is the input side, -1 the output layer."""
    return [m for m in model if isinstance(m, nn.Linear)]


def init_weights(model: nn.Sequential, init: Init, slope: float, gain: float = 2.0) -> None:
    if init is Init.pytorch:
        return  # nn.Linear already did kaiming_uniform_(a=sqrt(5)) and its uniform bias
    for layer in linears(model):
        if init is Init.kaiming:
            # The leaky gain sqrt(2/(1+a^2)) keeps the backprop signal's scale per layer at 1.
            nn.init.kaiming_normal_(layer.weight, a=slope, nonlinearity="leaky_relu")
        elif init is Init.scaled:  # Var(W) = gain / fan_in: the init scale as a variable
            nn.init.normal_(layer.weight, std=math.sqrt(gain / layer.in_features))
        else:
            nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)


def weight_variance_factor(init: Init | str, width_in: int, width_out: int, slope: float,
                           gain: float = 2.0) -> float:  # fmt: skip
    """sigma^2 in Var(W) = sigma^2 / fan_in for a hidden-to-hidden layer (SCIENCE.md)."""
    init = Init(init)
    if init is Init.pytorch:
        return 1.0 / 3.0
    if init is Init.kaiming:
        return 2.0 / (1.0 + slope**2)
    if init is Init.scaled:
        return gain
    return 2.0 * width_in / (width_in + width_out)


def theory_decay_per_layer(init: Init | str, slope: float, width: int = 256, gain: float = 2.0) -> float:
    """Mean-field decay of log10 ||dL/dz|| per layer toward the input: -1/2 log10 g(a), with
    g = sigma^2 (1 + a^2) / 2 (for PReLU: a = its starting slope)."""
    g = weight_variance_factor(init, width, width, slope, gain) * (1.0 + slope**2) / 2.0
    return -0.5 * math.log10(g) + 0.0  # + 0.0 turns -0.0 into 0.0
