"""The theory's predictions for one configured net, and the fits that turn a measured profile
into the numbers the tables compare with them (no torch: the summaries use these without a model).

- theory_decay_per_layer / theory_kernel_profile: what `theory` predicts for a StudyConfig;
- fit_decay, grad_ratio: a measured per-layer profile reduced to one number;
- denormal_from: where a measured signal falls into float32 denormals.
"""

from __future__ import annotations

import math

import numpy as np

from slopestudy.config import Act, Init, Norm, ResidualBranch, StudyConfig
from slopestudy.science import theory


# --- theory at init: what the plain mean-field recursion predicts for this config -------------
def theory_act(cfg: StudyConfig) -> tuple[str, dict]:
    """The activation's name in `theory` and its keyword arguments (a PReLU at its starting slope)."""
    act = "leaky_relu" if Act(cfg.act) in (Act.leaky_relu, Act.prelu) else Act(cfg.act).value
    return act, ({"slope": cfg.slope} if act == "leaky_relu" else {})


def weight_variance_factor(cfg: StudyConfig) -> float:
    """sigma^2 in Var(W) = sigma^2 / fan_in for a hidden-to-hidden layer (SCIENCE.md)."""
    act, kw = theory_act(cfg)
    if Init(cfg.init) is Init.kaiming:
        return theory.get(act).kaiming(**kw)
    return theory.init_sigma2(Init(cfg.init).value, act, width_in=cfg.width, width_out=cfg.width,
                              gain=cfg.init_gain, **kw)  # fmt: skip


def theory_decay_per_layer(cfg: StudyConfig) -> float:
    """Mean-field decay of log10 ||dL/dz|| per layer toward the input (the fit over the hidden
    layers, as probes.fit_decay measures it), from `theory` for this activation (a PReLU at its
    starting slope): the plain recursion; with a norm before each activation, the normalized
    gain (BatchNorm: E[phi'^2]/Var[phi], LayerNorm: E[phi'^2]/E[phi^2]); with residual skips,
    the profile of a scaled residual stack. NaN where none applies (norm and skips together,
    skips around a non-homogeneous activation, fewer than 2 hidden layers)."""
    act, kw = theory_act(cfg)
    norm = Norm(cfg.norm)
    if cfg.depth < 3 or (cfg.residual and norm is not Norm.none):
        return math.nan
    if norm is not Norm.none:
        decay = -0.5 * math.log10(theory.normalized_gain(act, norm.value, **kw))
    elif cfg.residual:
        decay = theory.fitted_decay(
            theory.residual_profile(
                act,
                weight_variance_factor(cfg),
                cfg.depth,
                **kw,
                pre_activation=cfg.residual_branch is ResidualBranch.act_linear,
            )
        )
    else:
        # q_in = 1: the inputs are normalized to zero mean and unit variance over all pixels.
        decay = theory.predicted_decay_per_layer(act, weight_variance_factor(cfg), cfg.depth, 1.0, **kw)
    return decay + 0.0  # + 0.0 turns -0.0 into 0.0


def theory_kernel_profile(cfg: StudyConfig, input_cosines: np.ndarray) -> list[float] | None:
    """Predicted mean cosine of z_l over the probe pairs, l = 0..depth-1: each pair's own input
    cosine through the composed correlation map (theory.correlation_profile), then the mean.
    Exact in the wide limit for a positively homogeneous activation with zero biases (any init
    but pytorch's, whose biases add a shared offset), no norm, and no skips or pre-activation
    skips at the slope's He scale; None elsewhere."""
    act, kw = theory_act(cfg)
    residual = cfg.residual
    pre_act = residual and ResidualBranch(cfg.residual_branch) is ResidualBranch.act_linear
    he = Init(cfg.init) is Init.kaiming
    if (act != "leaky_relu" or Init(cfg.init) is Init.pytorch or Norm(cfg.norm) is not Norm.none
            or cfg.bias_shift != 0 or (residual and not (pre_act and he))):  # fmt: skip
        return None
    profile = theory.correlation_profile(act, input_cosines, cfg.depth, residual=residual, **kw)
    return [float(v) for v in profile.mean(axis=1)]


# --- what the per-layer profiles say, in one number each (the summary and each run's report) --
def fit_decay(signal: list[float] | None) -> float:
    """Least-squares slope of log10 ||dL/dz_l|| against l over the hidden layers (all but the
    last); positive = the signal shrinks toward the input. NaN with < 2 hidden layers or a zero."""
    if not signal or len(signal) < 3:
        return math.nan
    hidden = np.asarray(signal[:-1], dtype=float)
    if not np.all(np.isfinite(hidden)) or np.any(hidden <= 0):
        return math.nan
    return float(np.polyfit(np.arange(len(hidden)), np.log10(hidden), 1)[0])


def grad_ratio(grad: list[float] | None) -> float:
    """log10(||dL/dW_first|| / ||dL/dW_last||): negative = the input side gets less."""
    if not grad or len(grad) < 2 or grad[0] <= 0 or grad[-1] <= 0:
        return math.nan
    return math.log10(grad[0] / grad[-1])


# Per-unit RMS below which float32 denormals are in play (normal numbers end at 1.2e-38; an RMS of
# 1e-30 leaves many entries of the gradient far below it).
DENORMAL_RMS = 1e-30


def denormal_from(signal: list[float], batch_size: int, widths: list[int]) -> int | None:
    """The highest layer whose signal norm per unit (norm / sqrt(batch x width)) is below
    DENORMAL_RMS, or None: from there to the input the backward pass computes with denormals."""
    low = [
        i
        for i, (s, w) in enumerate(zip(signal, widths, strict=True))
        if s / math.sqrt(batch_size * w) < DENORMAL_RMS
    ]
    return max(low) if low else None
