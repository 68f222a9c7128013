"""Mean-field theory at initialization for any activation (numpy/scipy only, no torch).

Conventions (SCIENCE.md, "Theory for any activation"): a net of `depth` Linear layers with outputs
z_0 .. z_{depth-1} (z_{depth-1} = logits), weights Var(W) = sigma2 / fan_in, zero biases unless
`sigma_b2` is given. Forward (Poole et al. 2016): q_0 = sigma2_first * q_in, with q_in the data's
per-unit second moment (about 1 for normalized MNIST), and q_{l+1} = sigma2 E_{z~N(0,q_l)}[phi(z)^2]
(+ sigma_b2). Backward (Schoenholz et al. 2017): going from z_{l+1} back to z_l the squared norm of
dL/dz is multiplied by chi_l = sigma2_{l+1} E_{z~N(0,q_l)}[phi'(z)^2], one chi per hidden layer.
The predicted profile and decay use the convention of profiles.fit_decay: log10 of the norm (not
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
    """The measured "decay per layer" of profiles.fit_decay applied to the predicted profile: the
    least-squares slope over the hidden layers (all but the output); NaN with < 2 hidden layers.
    For LeakyReLU it equals profiles.theory_decay_per_layer, -1/2 log10(sigma2 (1 + a^2) / 2)."""
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


def residual_profile(act: str | Activation, sigma2: float, depth: int, *, pre_activation: bool = False,
                     **kw) -> list[float]:  # fmt: skip
    """Predicted log10 ||dL/dz_l|| (up to a constant) of the Linear outputs 0..depth-2 of a net
    whose hidden width->width blocks are h + branch(h) / sqrt(blocks) (model.Residual), for a
    positively homogeneous activation (zero biases, wide limit). Going back through one block,
    the stream's squared gradient grows by 1 + chi / blocks (chi = sigma^2 E[phi'^2]); a branch's
    Linear output sees the stream's gradient times E[phi'^2] / blocks, the first Linear (outside
    the scaled branches) times E[phi'^2]: a step of 1/2 log10(blocks) above the rest. With
    `pre_activation` (branch = act -> Linear) a branch's Linear output is the branch's end, so it
    sees the stream's gradient times 1 / blocks, and the first Linear's output is the stream."""
    a = get(act)
    if not a.positively_homogeneous or depth < 3:
        return []
    blocks = depth - 2
    _, e_dphi2 = moments(a, 1.0, **kw)
    stream = [0.0]  # log10 of the stream's squared gradient above block l, from the top down
    for _ in range(blocks):
        stream.append(stream[-1] + math.log10(1 + sigma2 * e_dphi2 / blocks))
    stream = stream[::-1]  # stream[l]: below block l (l = 0: the first Linear's output side)
    through = 1.0 if pre_activation else e_dphi2  # phi' between a Linear output and the stream
    first = 0.5 * (math.log10(through) + stream[0])
    return [first] + [0.5 * (math.log10(through / blocks) + above) for above in stream[1:]]


def fitted_decay(profile: list[float]) -> float:
    """Least-squares slope of a log10 profile over its layers, sign as profiles.fit_decay (> 0:
    shrinks toward the input); NaN with fewer than 2 layers."""
    if len(profile) < 2:
        return math.nan
    return float(np.polyfit(np.arange(len(profile)), np.asarray(profile), 1)[0])


# --- the kernel: how correlations between two inputs move through the layers ------------------
# Poole et al. 2016; SCIENCE.md "The kernel". Two inputs whose pre-activations z_l have second
# moment q and correlation c (the cosine of z_l(x) and z_l(x') over a wide layer) have, after
# phi and the next Linear (zero bias, Var(W) = sigma2 / fan_in), correlation
# C(c) = E[phi(u) phi(v)] / E[phi(u)^2], (u, v) ~ N(0, q [[1, c], [c, 1]]): sigma2 cancels, and
# for a positively homogeneous phi so does q. z_l has l activations behind it (z_0 = W_0 x has
# the input's cosine), so a net of `depth` Linear layers applies C depth - 1 times.
def _inner_expect(f, mean: np.ndarray, scale: float) -> np.ndarray:
    """E_{z~N(0,1)}[f(mean + scale z)] for each entry of `mean`, split at the kink mean + scale z = 0
    so that each piece is smooth (as `expect`); scale > 0."""
    x, w = leggauss(_N)
    kink = np.clip(-mean / scale, -_T, _T)[:, None]  # (M, 1)
    lo = (x + 1) / 2 * (kink + _T) - _T  # nodes on [-T, kink], (M, N)
    hi = (x + 1) / 2 * (_T - kink) + kink  # on [kink, T]
    w_lo, w_hi = w * (kink + _T) / 2 * _pdf(lo), w * (_T - kink) / 2 * _pdf(hi)
    m = mean[:, None]
    return (w_lo * f(m + scale * lo)).sum(axis=1) + (w_hi * f(m + scale * hi)).sum(axis=1)


def pair_moment(act: str | Activation, c: float, q: float = 1.0, **kw) -> float:
    """E[phi(u) phi(v)] for (u, v) ~ N(0, q [[1, c], [c, 1]]), by nested split Gauss-Legendre
    quadrature: u = sqrt(q) z1, v = sqrt(q) (c z1 + sqrt(1 - c^2) z2); the inner integral over z2
    is split at phi's kink and is smooth in z1, the outer one is split at 0 (about 1e-13)."""
    a = get(act)
    c = float(np.clip(c, -1.0, 1.0))
    s = math.sqrt(1.0 - c * c)
    r = math.sqrt(max(q, 0.0))
    if s < 1e-12:  # v = +-u
        return math.copysign(1.0, c) * expect(
            lambda z: a.phi(z, **kw) * a.phi(math.copysign(1, c) * z, **kw), q
        )
    inner = _inner_expect(lambda v: a.phi(v, **kw), r * c * _NODES, r * s)
    return float(_WEIGHTS @ (a.phi(r * _NODES, **kw) * inner))


def leaky_c_map_coefficient(slope: float) -> float:
    """k(a) = (1 - a)^2 / (pi (1 + a^2)) in the closed-form C-map of LeakyReLU(a): 1/pi for ReLU,
    0 for the identity (a = 1)."""
    return (1.0 - slope) ** 2 / (math.pi * (1.0 + slope**2))


def c_map(act: str | Activation, c, q: float = 1.0, **kw):
    """One layer's correlation map C(c) (vectorized over c). LeakyReLU in closed form,
    C(c) = c + k(a) (sqrt(1 - c^2) - c arccos c) (the arc-cosine kernel, Cho & Saul 2009, for
    phi = a z + (1 - a) relu z); any other activation by `pair_moment` at second moment q."""
    a = get(act)
    c_arr = np.clip(np.asarray(c, dtype=float), -1.0, 1.0)
    if a.name == "leaky_relu":
        out = c_arr + leaky_c_map_coefficient(kw.get("slope", 0.0)) * (
            np.sqrt(1.0 - c_arr**2) - c_arr * np.arccos(c_arr)
        )
    elif a.name == "identity":
        out = c_arr
    else:
        e_phi2 = moments(a, q, **kw)[0]
        out = np.vectorize(lambda x: pair_moment(a, x, q, **kw) / e_phi2)(c_arr)
    return out if out.ndim else float(out)


def residual_c_map(act: str | Activation, c, blocks: int, **kw):
    """C-map of one pre-activation residual block h + beta W phi(h), beta^2 = 1/blocks
    (model.Residual with the branch ending in its Linear layer), He-scaled W, zero bias: the
    stream's kernel is Sigma + beta^2 Sigma_branch, and with E[phi^2] sigma2 = q (He) the branch
    adds beta^2 q C(c) to the covariance and beta^2 q to the variance, so
    c' = (c + beta^2 C(c)) / (1 + beta^2). For a positively homogeneous phi at its He scale only."""
    b2 = 1.0 / blocks
    return (np.asarray(c, dtype=float) + b2 * np.asarray(c_map(act, c, **kw))) / (1.0 + b2)


def correlation_profile(
    act: str | Activation, c_in, depth: int, *, residual: bool = False, **kw
) -> np.ndarray:
    """Predicted cosine of z_l for l = 0..depth-1, shape (depth, *c_in.shape), from the inputs'
    cosines c_in (each pair its own). Plain: z_l = C^l(c_in). Pre-activation residual net
    (model.build_mlp with residual_branch=act_linear): the stream after the first Linear has the
    input's cosine, each block maps it by residual_c_map, and a branch's Linear output z_l has
    C(stream's cosine); the output layer reads phi of the last stream."""
    c = np.asarray(c_in, dtype=float)
    rows = [c]
    if not residual:
        for _ in range(depth - 1):
            rows.append(np.asarray(c_map(act, rows[-1], **kw)))
        return np.stack(rows)
    blocks = max(depth - 2, 1)
    stream = c
    for _ in range(depth - 2):
        rows.append(np.asarray(c_map(act, stream, **kw)))
        stream = np.asarray(residual_c_map(act, stream, blocks, **kw))
    if depth >= 2:
        rows.append(np.asarray(c_map(act, stream, **kw)))
    return np.stack(rows)


def composed_c0(slope: float, depth: int) -> float:
    """C_f(0) of a plain He-scaled LeakyReLU(slope) net of `depth` Linear layers: C^{depth-1}(0)."""
    c = 0.0
    k = leaky_c_map_coefficient(slope)
    for _ in range(depth - 1):
        c = c + k * (math.sqrt(max(1.0 - c * c, 0.0)) - c * math.acos(min(c, 1.0)))
    return c


class UnreachableEta(ValueError):
    """No slope in [0, 1] gives C_f(0) = eta at this depth (even ReLU's map stays below it)."""


def tat_slope(depth: int, eta: float = 0.9) -> float:
    """TAT's slope (Zhang, Botev & Martens 2022) for a plain MLP of `depth` Linear layers: the
    a in [0, 1] with C_f(0) = C^{depth-1}(0) = eta. C_f(0) falls from ReLU's value at a = 0 to 0 at
    a = 1 (the identity), monotonically (k(a) falls, C rises with k for c < 1), so brentq."""
    if not 0.0 < eta < 1.0:
        raise ValueError(f"eta must lie in (0, 1), not {eta}")
    if depth < 2:
        raise UnreachableEta(f"a net of depth {depth} has no activation: no slope gives C_f(0) = {eta}")
    relu = composed_c0(0.0, depth)
    if relu < eta:
        raise UnreachableEta(
            f"no slope reaches C_f(0) = {eta} at depth {depth}: even ReLU (a = 0) gives {relu:.4f}"
        )
    return float(optimize.brentq(lambda a: composed_c0(a, depth) - eta, 0.0, 1.0, xtol=1e-14, rtol=1e-14))
