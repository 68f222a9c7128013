"""The MLP under study: Linear(784, w) -> [norm] -> act -> ... -> Linear(w, 10), optionally
with identity skips around the hidden width->width blocks.

Without norm and residual the model is the plain nn.Sequential it always was (the same modules
in the same order, so the same random draws, state_dict keys and numbers)."""

from __future__ import annotations

import math

import torch
from torch import nn

from slopestudy.config import Act, Init, Norm, PreluParams, ResidualBranch, StudyConfig, layer_sizes

ACTIVATION_TYPES = (nn.LeakyReLU, nn.PReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Tanh)
_PLAIN_ACTS = {Act.elu: nn.ELU, Act.selu: nn.SELU, Act.gelu: nn.GELU, Act.silu: nn.SiLU, Act.tanh: nn.Tanh}
# torch.nn.init's name for each activation's kaiming gain; torch has none for GELU, SiLU, ELU,
# so kaiming means ReLU's gain there (kaiming_normal_'s own default).
_KAIMING_NONLINEARITY = {Act.tanh: "tanh", Act.selu: "selu"}


class Residual(nn.Module):
    """h + scale * branch(h): an identity skip around one hidden block of equal width."""

    def __init__(self, branch: nn.Sequential, scale: float) -> None:
        super().__init__()
        self.branch, self.scale = branch, scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.scale * self.branch(h)


def build_mlp(cfg: StudyConfig) -> nn.Sequential:
    """`cfg.depth` Linear layers (depth-1 hidden layers of `cfg.width`), each hidden one followed
    by the norm (if any) and the activation; with `cfg.residual` every hidden width->width block
    is wrapped in a Residual whose branch is scaled by 1/sqrt(number of blocks). The branch is
    Linear -> act (residual_branch=linear_act) or act -> Linear (act_linear, pre-activation: the
    first Linear's output is the stream, and the last block's activation is the output layer's)."""
    sizes = layer_sizes(cfg.depth, cfg.width)
    n_blocks = max(cfg.depth - 2, 1)
    pre_act = cfg.residual and ResidualBranch(cfg.residual_branch) is ResidualBranch.act_linear
    layers: list[nn.Module] = []
    for i in range(cfg.depth):
        linear = nn.Linear(sizes[i], sizes[i + 1])
        if pre_act:  # Linear_0, Res(act, Linear_1), ..., Res(act, Linear_{L-2}), act, Linear_{L-1}
            block = [linear] if i == 0 else [*_norm(cfg), _activation(cfg), linear]
        else:
            block = [linear, *_norm(cfg), _activation(cfg)] if i < cfg.depth - 1 else [linear]
        in_branch = cfg.residual and 0 < i < cfg.depth - 1
        if in_branch:
            layers.append(Residual(nn.Sequential(*block), 1.0 / math.sqrt(n_blocks)))
        else:
            layers += block
    model = nn.Sequential(*layers)
    init_weights(model, cfg)
    with torch.no_grad():
        for layer in linears(model)[:-1]:
            layer.bias += cfg.bias_shift
    return model


def _norm(cfg: StudyConfig) -> list[nn.Module]:
    norm = Norm(cfg.norm)
    if norm is Norm.layer:
        return [nn.LayerNorm(cfg.width)]
    if norm is Norm.batch:
        return [nn.BatchNorm1d(cfg.width)]
    return []


def _activation(cfg: StudyConfig) -> nn.Module:
    act = Act(cfg.act)
    if act is Act.prelu:
        n = cfg.width if PreluParams(cfg.prelu_params) is PreluParams.unit else 1
        return nn.PReLU(num_parameters=n, init=cfg.slope)
    if act is Act.leaky_relu:
        return nn.LeakyReLU(negative_slope=cfg.slope, inplace=cfg.inplace)
    return _PLAIN_ACTS[act]()


def prelus(model: nn.Module) -> list[nn.PReLU]:
    return [m for m in model.modules() if isinstance(m, nn.PReLU)]


def linears(model: nn.Module) -> list[nn.Linear]:
    """The Linear layers in order: index 0 is the input side, -1 the output layer."""
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def activations(model: nn.Module) -> list[nn.Module]:
    """The hidden layers' activation modules, in order (one per hidden layer)."""
    return [m for m in model.modules() if isinstance(m, ACTIVATION_TYPES)]


def init_weights(model: nn.Module, cfg: StudyConfig) -> None:
    init = Init(cfg.init)
    if init is Init.pytorch:
        return  # nn.Linear already did kaiming_uniform_(a=sqrt(5)) and its uniform bias
    for layer in linears(model):
        if init is Init.kaiming and Act(cfg.act) in (Act.leaky_relu, Act.prelu):
            # The leaky gain sqrt(2/(1+a^2)) keeps the backprop signal's scale per layer at 1.
            nn.init.kaiming_normal_(layer.weight, a=cfg.slope, nonlinearity="leaky_relu")
        elif init is Init.kaiming:
            nonlinearity = _KAIMING_NONLINEARITY.get(Act(cfg.act), "relu")
            nn.init.kaiming_normal_(layer.weight, nonlinearity=nonlinearity)
        elif init is Init.scaled:  # Var(W) = gain / fan_in: the init scale as a variable
            nn.init.normal_(layer.weight, std=math.sqrt(cfg.init_gain / layer.in_features))
        elif init is Init.lecun:
            nn.init.normal_(layer.weight, std=math.sqrt(1.0 / layer.in_features))
        else:
            nn.init.xavier_normal_(layer.weight)
        nn.init.zeros_(layer.bias)
