"""Mean-field theory at initialization for any activation (numpy/scipy only, no torch).

Conventions (SCIENCE.md, "Theory for any activation"): a net of `depth` Linear layers with outputs
z_0 .. z_{depth-1} (z_{depth-1} = logits), weights Var(W) = sigma2 / fan_in, zero biases unless
`sigma_b2` is given. Forward (Poole et al. 2016): q_0 = sigma2_first * q_in, with q_in the data's
per-unit second moment (about 1 for normalized MNIST), and q_{l+1} = sigma2 E_{z~N(0,q_l)}[phi(z)^2]
(+ sigma_b2). Backward (Schoenholz et al. 2017): going from z_{l+1} back to z_l the squared norm of
dL/dz is multiplied by chi_l = sigma2_{l+1} E_{z~N(0,q_l)}[phi'(z)^2], one chi per hidden layer.
The predicted profile and decay use the convention of probes.fit_decay: log10 of the norm (not
squared), fitted over the hidden layers only, positive = the signal shrinks toward the input.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from numpy.polynomial.legendre import leggauss
from scipy import optimize, special

# SELU's constants (Klambauer et al. 2017), as in torch.nn.SELU.
SELU_LAMBDA = 1.0507009873554804934193349852946
SELU_ALPHA = 1.6732632423543772848170429916717


@dataclass(frozen=True)
class Activation:
    """An activation and its own theory: phi and phi' (numpy, vectorized, keyword parameters such
    as `slope`), whether phi(cz) = c phi(z) for c > 0 (then the moments are exact and chi does not
    depend on q), and sigma2 of "kaiming" init for it: torch.nn.init.calculate_gain(.)^2 where torch
    defines a gain; GELU/SiLU/ELU have none in torch, so kaiming means the ReLU gain^2 = 2 there
    (kaiming_normal_'s default nonlinearity)."""

    name: str
    phi: Callable[..., np.ndarray]
    dphi: Callable[..., np.ndarray]
    positively_homogeneous: bool = False
    kaiming: Callable[..., float] = lambda: 2.0


def _leaky(z, slope=0.0):
    return np.where(z > 0, z, slope * z)


def _dleaky(z, slope=0.0):
    return np.where(z > 0, 1.0, slope)


def _elu(z, alpha=1.0):
    return np.where(z > 0, z, alpha * np.expm1(np.minimum(z, 0.0)))


def _delu(z, alpha=1.0):
    return np.where(z > 0, 1.0, alpha * np.exp(np.minimum(z, 0.0)))


def _selu(z):
    return SELU_LAMBDA * _elu(z, SELU_ALPHA)


def _dselu(z):
    return SELU_LAMBDA * _delu(z, SELU_ALPHA)


def _pdf(z):
    return np.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)


def _dsilu(z):
    s = special.expit(z)
    return s * (1 + z * (1 - s))


# Parameterless activations take no keywords, so `slope` given to tanh fails loudly (TypeError).
ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in [
        Activation("leaky_relu", _leaky, _dleaky, True, lambda slope=0.0: 2.0 / (1.0 + slope**2)),
        Activation("identity", lambda z: z, lambda z: np.ones_like(z), True, lambda: 1.0),
        Activation("elu", _elu, _delu, kaiming=lambda alpha=1.0: 2.0),
        Activation("selu", _selu, _dselu, kaiming=lambda: 9 / 16),
        Activation("gelu", lambda z: z * special.ndtr(z), lambda z: special.ndtr(z) + z * _pdf(z)),
        Activation("silu", lambda z: z * special.expit(z), _dsilu),
        Activation("tanh", np.tanh, lambda z: 1 - np.tanh(z) ** 2, kaiming=lambda: 25 / 9),
    ]
}


def get(act: str | Activation) -> Activation:
    return act if isinstance(act, Activation) else ACTIVATIONS[act]


# Why not plain Gauss-Hermite: phi' of ReLU/LeakyReLU/SELU/ELU jumps (or phi'' does) at 0, and GH
# converges only algebraically there: SELU's E[phi'^2] at q=1 is off by 1e-2 with 100 nodes, and an
# odd node count puts a node on the kink (ReLU's E[phi'^2] = 0.438 instead of 0.5 with 101 nodes).
# Splitting at 0 and using Gauss-Legendre on each half of [-12, 12] (standard-normal units, the tail
# beyond is < 1e-32) makes each piece smooth, so it converges exponentially: ~1e-15 with 100 nodes.
_T, _N = 12.0, 100
_x, _w = leggauss(_N)
_x = (_x + 1) * _T / 2
_w = _w * _T / 2 * _pdf(_x)
_NODES, _WEIGHTS = np.concatenate([-_x[::-1], _x]), np.concatenate([_w[::-1], _w])


def expect(f: Callable[[np.ndarray], np.ndarray], q: float) -> float:
    """E_{z~N(0,q)}[f(z)] by split Gauss-Legendre quadrature (exact enough for kinks at 0)."""
    return float(_WEIGHTS @ f(math.sqrt(max(q, 0.0)) * _NODES))


def moments(act: str | Activation, q: float, **kw) -> tuple[float, float]:
    """(E[phi(z)^2], E[phi'(z)^2]) for z ~ N(0, q); closed form if phi is positively homogeneous:
    phi(z) = phi(1) z for z > 0 and -phi(-1) z below, so E[phi^2] = q (phi(1)^2 + phi(-1)^2) / 2,
    e.g. q (1 + a^2) / 2 and (1 + a^2) / 2 for LeakyReLU(a)."""
    a = get(act)
    if a.positively_homogeneous:
        p, d = a.phi(np.array([1.0, -1.0]), **kw), a.dphi(np.array([1.0, -1.0]), **kw)
        return q * float(p @ p) / 2, float(d @ d) / 2
    return expect(lambda z: a.phi(z, **kw) ** 2, q), expect(lambda z: a.dphi(z, **kw) ** 2, q)


def _sigmas(sigma2, depth, sigma2_first, sigma2_last):
    """sigma2 of Linear layer 0..depth-1: the first and last may differ (fan_in 784, fan_out 10)."""
    s = [float(sigma2)] * depth
    s[0] = s[0] if sigma2_first is None else float(sigma2_first)
    s[-1] = s[-1] if sigma2_last is None or depth < 2 else float(sigma2_last)
    return s


def forward_variances(act, sigma2, depth, q_in=1.0, *, sigma2_first=None, sigma2_last=None,
                      sigma_b2=0.0, **act_kw) -> list[float]:  # fmt: skip
    """q_l = pre-activation second moment of z_l, l = 0..depth-1. `sigma_b2` adds a bias variance
    (Poole et al.'s sigma_b^2); the default 0 ignores e.g. PyTorch's default uniform biases."""
    s = _sigmas(sigma2, depth, sigma2_first, sigma2_last)
    qs = [s[0] * q_in + sigma_b2]
    for i in range(1, depth):
        qs.append(s[i] * moments(act, qs[-1], **act_kw)[0] + sigma_b2)
    return qs


def backprop_gains(act, sigma2, depth, q_in=1.0, *, sigma2_first=None, sigma2_last=None,
                   sigma_b2=0.0, **act_kw) -> list[float]:  # fmt: skip
    """chi_l, l = 0..depth-2: ||dL/dz_l||^2 = chi_l ||dL/dz_{l+1}||^2 (chi_l uses W_{l+1}'s sigma2)."""
    s = _sigmas(sigma2, depth, sigma2_first, sigma2_last)
    qs = forward_variances(act, sigma2, depth, q_in, sigma2_first=sigma2_first,
                           sigma2_last=sigma2_last, sigma_b2=sigma_b2, **act_kw)  # fmt: skip
    return [s[i + 1] * moments(act, qs[i], **act_kw)[1] for i in range(depth - 1)]


def predicted_signal_profile(act, sigma2, depth, q_in=1.0, **kw) -> list[float]:
    """log10(||dL/dz_l|| / ||dL/dz_{depth-1}||) for l = 0..depth-1 (last entry 0): half the log10 of
    the product of chi from layer l to the output."""
    logs = 0.5 * np.log10(backprop_gains(act, sigma2, depth, q_in, **kw))
    return [float(v) for v in np.append(np.cumsum(logs[::-1])[::-1], 0.0)]


def predicted_decay_per_layer(act, sigma2, depth, q_in=1.0, **kw) -> float:
    """The measured "decay per layer" of probes.fit_decay applied to the predicted profile: the
    least-squares slope over the hidden layers (all but the output); NaN with < 2 hidden layers.
    For LeakyReLU it equals model.theory_decay_per_layer, -1/2 log10(sigma2 (1 + a^2) / 2)."""
    hidden = predicted_signal_profile(act, sigma2, depth, q_in, **kw)[:-1]
    if len(hidden) < 2:
        return math.nan
    return float(np.polyfit(np.arange(len(hidden)), hidden, 1)[0])


def init_sigma2(init, act="leaky_relu", *, slope=0.0, width_in=256, width_out=256, gain=2.0) -> float:
    """sigma2 of a layer for the project's inits: pytorch = 1/3 (kaiming_uniform_(a=sqrt 5); its
    nonzero uniform biases are ignored unless passed as sigma_b2), kaiming = the activation's own
    (Activation.kaiming; leaky: 2/(1+a^2), tanh 25/9, selu 9/16 from torch's gain 3/4 - not LeCun),
    xavier = 2 fan_in/(fan_in+fan_out) (1 for equal widths), scaled = gain, lecun = 1 (SELU's)."""
    init = getattr(init, "value", init)
    kw = {"slope": slope} if get(act).name == "leaky_relu" else {}
    table = {"pytorch": lambda: 1 / 3, "kaiming": lambda: get(act).kaiming(**kw), "scaled": lambda: gain,
             "xavier": lambda: 2 * width_in / (width_in + width_out), "lecun": lambda: 1.0}  # fmt: skip
    return float(table[init]())


def critical_sigma2(act, **act_kw) -> float:
    """sigma2 with chi = 1 at the zero-bias fixed point (the edge of chaos, Schoenholz et al. 2017).
    Positively homogeneous phi: 2/(phi'(1)^2 + phi'(-1)^2), and every q is a fixed point. Smooth
    phi with phi(0) = 0: at every nonzero fixed point chi > 1 (e.g. SELU's q* = 1 at sigma2 = 1 has
    chi = 1.0716), so the only chi = 1 fixed point is q* = 0, reached at sigma2 = 2/(phi'(0+)^2 +
    phi'(0-)^2): 1 for tanh and ELU, 4 for GELU/SiLU (there q* = 0 is unstable: q drifts upward)."""
    a = get(act)
    eps = 1.0 if a.positively_homogeneous else 1e-200  # phi'(0+) and phi'(0-), to rounding
    d = a.dphi(np.array([eps, -eps]), **act_kw)
    return 2.0 / float(d @ d)


def flat_sigma2(act, depth, q_in=1.0, lo=0.05, hi=20.0, **kw) -> float:
    """sigma2 whose predicted decay per layer is 0 at this depth: a practical "matched" init for
    activations whose chi depends on q (brentq; raises if no sign change in [lo, hi])."""
    return float(optimize.brentq(lambda s: predicted_decay_per_layer(act, s, depth, q_in, **kw), lo, hi))


def normalized_gain(act: str | Activation, norm: str, **kw) -> float:
    """Backprop gain per layer (squared norm of dL/dz, Linear output to Linear output) when a
    normalization sits between each hidden Linear and its activation, in the wide, large-batch
    limit: the norm's output is ~N(0, 1) whatever sigma^2 is, and the backward pass divides by
    the std it divided by. BatchNorm removes each unit's batch mean, so that std is
    sqrt(sigma^2 Var[phi]): chi = E[phi'^2] / Var[phi] (pi/(pi-1) for ReLU: the gradient
    explosion at init of Yang et al. 2019). LayerNorm divides by the per-example scale over
    units, sqrt(sigma^2 E[phi^2]): chi = E[phi'^2] / E[phi^2] (1 for LeakyReLU). z ~ N(0, 1)."""
    a = get(act)
    e_phi2, e_dphi2 = moments(a, 1.0, **kw)
    if norm == "batch":
        mean = expect(lambda z: a.phi(z, **kw), 1.0)
        return e_dphi2 / (e_phi2 - mean**2)
    if norm == "layer":
        return e_dphi2 / e_phi2
    raise ValueError(f"norm must be 'batch' or 'layer', not {norm!r}")


def residual_profile(act: str | Activation, sigma2: float, depth: int, **kw) -> list[float]:
    """Predicted log10 ||dL/dz_l|| (up to a constant) of the Linear outputs 0..depth-2 of a net
    whose hidden width->width blocks are h + branch(h) / sqrt(blocks) (model.Residual), for a
    positively homogeneous activation (zero biases, wide limit). Going back through one block,
    the stream's squared gradient grows by 1 + chi / blocks (chi = sigma^2 E[phi'^2]); a branch's
    Linear output sees the stream's gradient times E[phi'^2] / blocks, the first Linear (outside
    the scaled branches) times E[phi'^2]: a step of 1/2 log10(blocks) above the rest."""
    a = get(act)
    if not a.positively_homogeneous or depth < 3:
        return []
    blocks = depth - 2
    _, e_dphi2 = moments(a, 1.0, **kw)
    stream = [0.0]  # log10 of the stream's squared gradient above block l, from the top down
    for _ in range(blocks):
        stream.append(stream[-1] + math.log10(1 + sigma2 * e_dphi2 / blocks))
    stream = stream[::-1]  # stream[l]: below block l (l = 0: the first Linear's output side)
    first = 0.5 * (math.log10(e_dphi2) + stream[0])
    return [first] + [0.5 * (math.log10(e_dphi2 / blocks) + above) for above in stream[1:]]


def fitted_decay(profile: list[float]) -> float:
    """Least-squares slope of a log10 profile over its layers, sign as probes.fit_decay (> 0:
    shrinks toward the input); NaN with fewer than 2 layers."""
    if len(profile) < 2:
        return math.nan
    return float(np.polyfit(np.arange(len(profile)), np.asarray(profile), 1)[0])
