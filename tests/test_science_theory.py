import math

import numpy as np
import pytest
from scipy import integrate, special

from slopestudy.config import Init, StudyConfig
from slopestudy.science import theory as t
from slopestudy.science.profiles import theory_decay_per_layer

SLOPES = [0.0, 0.01, 0.2, 0.5]


def quad_expect(f, q):
    """E_{z~N(0,q)}[f(z)] by adaptive quadrature, split at the kink at 0."""
    g = lambda x: f(math.sqrt(q) * x) * np.exp(-x * x / 2) / math.sqrt(2 * math.pi)  # noqa: E731
    kw = {"epsabs": 1e-14, "epsrel": 1e-13, "limit": 200}
    return integrate.quad(g, -np.inf, 0, **kw)[0] + integrate.quad(g, 0, np.inf, **kw)[0]


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("sigma2", [1 / 3, 1.0, 2.0, 3.7])
def test_leaky_relu_gain_is_the_closed_form(slope, sigma2):
    chis = t.backprop_gains("leaky_relu", sigma2, 12, q_in=0.7, slope=slope)
    assert len(chis) == 11
    np.testing.assert_allclose(chis, sigma2 * (1 + slope**2) / 2, rtol=1e-12)
    # q is multiplied by the same g each layer
    qs = t.forward_variances("leaky_relu", sigma2, 12, q_in=0.7, slope=slope)
    np.testing.assert_allclose(np.diff(np.log(qs)), math.log(sigma2 * (1 + slope**2) / 2), atol=1e-12)
    # the quadrature path (no closed form) agrees with it, kink at 0 included
    e_dphi2 = t.expect(lambda z: t.ACTIVATIONS["leaky_relu"].dphi(z, slope=slope) ** 2, 2.5)
    assert e_dphi2 == pytest.approx((1 + slope**2) / 2, rel=1e-12)


@pytest.mark.parametrize("slope", SLOPES)
@pytest.mark.parametrize("init", ["pytorch", "kaiming", "xavier", "scaled"])
@pytest.mark.parametrize("depth", [3, 10, 30])
def test_predicted_decay_matches_model_closed_form(slope, init, depth):
    s2 = t.init_sigma2(init, "leaky_relu", slope=slope, width_in=256, width_out=256, gain=1.3)
    last = t.init_sigma2(init, "leaky_relu", slope=slope, width_in=256, width_out=10, gain=1.3)
    got = t.predicted_decay_per_layer("leaky_relu", s2, depth, sigma2_last=last, slope=slope)
    # the closed form of SCIENCE.md's table: -1/2 log10(sigma^2 (1 + a^2) / 2), sigma^2 per init
    sigma2 = {"pytorch": 1 / 3, "kaiming": 2 / (1 + slope**2), "xavier": 1.0, "scaled": 1.3}[init]
    assert got == pytest.approx(-0.5 * math.log10(sigma2 * (1 + slope**2) / 2), abs=1e-9)
    # and the model's theory column is this computation
    cfg = StudyConfig(init=Init(init), slope=slope, width=256, init_gain=1.3, depth=depth)
    assert theory_decay_per_layer(cfg) == pytest.approx(got, abs=1e-12) or depth < 3


def test_profile_is_log10_of_norm_relative_to_output():
    prof = t.predicted_signal_profile("leaky_relu", 1 / 3, 5, slope=0.0)
    assert prof[-1] == 0.0 and len(prof) == 5
    np.testing.assert_allclose(prof, [0.5 * k * math.log10(1 / 6) for k in (4, 3, 2, 1, 0)], atol=1e-12)
    assert math.isnan(t.predicted_decay_per_layer("leaky_relu", 2.0, 2))  # one hidden layer: no fit


def test_init_sigma2_matches_torch_gains():
    torch = pytest.importorskip("torch")
    gain = torch.nn.init.calculate_gain
    assert t.init_sigma2("kaiming", "tanh") == pytest.approx(gain("tanh") ** 2)
    assert t.init_sigma2("kaiming", "selu") == pytest.approx(gain("selu") ** 2)
    assert t.init_sigma2("kaiming", "leaky_relu", slope=0.2) == pytest.approx(gain("leaky_relu", 0.2) ** 2)
    assert t.init_sigma2("kaiming", "identity") == pytest.approx(gain("linear") ** 2)
    assert t.init_sigma2("lecun", "selu") == 1.0 and t.init_sigma2("pytorch", "gelu") == 1 / 3
    assert t.init_sigma2("xavier", width_in=784, width_out=256) == pytest.approx(2 * 784 / 1040)


def test_selu_fixed_point_and_its_gain():
    qs = t.forward_variances("selu", 1.0, 20, q_in=1.0)
    np.testing.assert_allclose(qs, 1.0, atol=1e-3)  # q* = 1 by design (Klambauer et al. 2017)
    # ...but chi at q* is not 1: E[selu'^2] = lambda^2 (1/2 + alpha^2 e^2 Phi(-2)) = 1.0716, so the
    # backprop signal grows ~3.5% per layer toward the input; the design fixes the forward moments.
    closed = t.SELU_LAMBDA**2 * (0.5 + t.SELU_ALPHA**2 * math.exp(2) * special.ndtr(-2))
    chis = t.backprop_gains("selu", 1.0, 20, q_in=1.0)
    np.testing.assert_allclose(chis, closed, rtol=1e-6)
    assert 1.07 < closed < 1.072
    assert t.predicted_decay_per_layer("selu", 1.0, 20) == pytest.approx(-0.5 * math.log10(closed), rel=1e-5)


def test_tanh_variance_decays_and_gain_tends_to_one_from_below():
    qs = np.array(t.forward_variances("tanh", 1.0, 200, q_in=1.0))
    chis = np.array(t.backprop_gains("tanh", 1.0, 200, q_in=1.0))
    assert np.all(np.diff(qs) < 0) and qs[-1] < 0.01
    assert np.all(chis < 1) and np.all(np.diff(chis) > 0) and chis[-1] > 0.98
    assert t.predicted_decay_per_layer("tanh", 1.0, 30) > 0  # depth-dependent rate, shrinks to input


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "tanh", "selu"])
@pytest.mark.parametrize("q", [0.01, 0.3, 1.0, 4.0, 25.0])
def test_quadrature_matches_scipy_quad(name, q):
    a = t.ACTIVATIONS[name]
    e_phi2, e_dphi2 = t.moments(name, q)
    assert e_phi2 == pytest.approx(quad_expect(lambda z: a.phi(z) ** 2, q), rel=1e-8, abs=1e-12)
    assert e_dphi2 == pytest.approx(quad_expect(lambda z: a.dphi(z) ** 2, q), rel=1e-8, abs=1e-12)


@pytest.mark.parametrize("name", ["gelu", "silu", "elu", "selu", "tanh"])
def test_derivative_is_the_derivative(name):
    a, z, h = t.ACTIVATIONS[name], np.linspace(-4, 4, 41) + 0.05, 1e-6  # avoid the kink at 0
    np.testing.assert_allclose(a.dphi(z), (a.phi(z + h) - a.phi(z - h)) / (2 * h), atol=1e-7)


def test_monte_carlo_gelu():
    z = np.random.default_rng(0).normal(0.0, math.sqrt(1.7), 10**6)
    a = t.ACTIVATIONS["gelu"]
    e_phi2, e_dphi2 = t.moments("gelu", 1.7)
    assert np.mean(a.phi(z) ** 2) == pytest.approx(e_phi2, rel=5e-3)
    assert np.mean(a.dphi(z) ** 2) == pytest.approx(e_dphi2, rel=5e-3)


def test_critical_sigma2():
    assert t.critical_sigma2("leaky_relu", slope=0.2) == pytest.approx(2 / 1.04)
    assert t.critical_sigma2("tanh") == 1.0 and t.critical_sigma2("gelu") == pytest.approx(4.0)
    # chi at q* > 0 exceeds 1 for smooth activations: the sigma2 that holds q fixed gives chi > 1
    for name in ["tanh", "gelu", "silu", "elu", "selu"]:
        for q in [0.1, 1.0, 5.0]:
            e_phi2, e_dphi2 = t.moments(name, q)
            assert (q / e_phi2) * e_dphi2 > 1.0
    s = t.flat_sigma2("gelu", 30)
    assert t.predicted_decay_per_layer("gelu", s, 30) == pytest.approx(0.0, abs=1e-9)


def test_slope_is_rejected_for_activations_without_one():
    with pytest.raises(TypeError):
        t.backprop_gains("tanh", 1.0, 5, slope=0.2)
    with pytest.raises(KeyError):
        t.init_sigma2("kaiming", "relu6")


# --- the kernel: correlation maps and TAT's slope ------------------------------------------
KERNEL_SLOPES = [0.0, 0.01, 0.2, 0.4259, 0.5, 0.9]


@pytest.mark.parametrize("slope", KERNEL_SLOPES)
def test_leaky_c_map_closed_form_agrees_with_quadrature(slope):
    e_phi2 = t.moments("leaky_relu", 1.7, slope=slope)[0]
    for c in [-0.9, -0.3, 0.0, 0.3, 0.45, 0.8, 0.99]:
        quad = t.pair_moment("leaky_relu", c, 1.7, slope=slope) / e_phi2  # the general path, at q = 1.7
        assert t.c_map("leaky_relu", c, slope=slope) == pytest.approx(quad, abs=1e-6)


@pytest.mark.parametrize("slope", KERNEL_SLOPES)
def test_c_map_fixes_1_with_unit_derivative_and_starts_at_k(slope):
    assert t.c_map("leaky_relu", 1.0, slope=slope) == pytest.approx(1.0, abs=1e-15)
    h = 1e-6  # C'(1) = 1 under He scaling: the same fact as chi = 1
    assert (1 - t.c_map("leaky_relu", 1 - h, slope=slope)) / h == pytest.approx(1.0, abs=1e-3)
    assert t.c_map("leaky_relu", 0.0, slope=slope) == pytest.approx(
        (1 - slope) ** 2 / (math.pi * (1 + slope**2))
    )


def test_pair_moment_of_a_smooth_activation_matches_scipy_dblquad():
    c, q = 0.4, 1.3
    s = math.sqrt(1 - c * c)
    phi = lambda z: z * special.ndtr(z)  # noqa: E731 (GELU)
    f = lambda z2, z1: (phi(math.sqrt(q) * z1) * phi(math.sqrt(q) * (c * z1 + s * z2))  # noqa: E731
                        * np.exp(-(z1 * z1 + z2 * z2) / 2) / (2 * math.pi))  # fmt: skip
    ref = integrate.dblquad(f, -12, 12, -12, 12, epsabs=1e-12, epsrel=1e-12)[0]
    assert t.pair_moment("gelu", c, q) == pytest.approx(ref, rel=1e-9)
    # tanh is odd: C(-c) = -C(c), and C(0) = 0
    assert t.c_map("tanh", -0.3) == pytest.approx(-t.c_map("tanh", 0.3), abs=1e-12)
    assert t.c_map("tanh", 0.0) == pytest.approx(0.0, abs=1e-12)


def test_relu_composed_map_reaches_the_published_correlations():
    # SCIENCE.md: 0.855 after 9 activations, 0.987 after 49, 0.996 after 99, 0.999 after 199
    for depth, value in [(10, 0.855), (50, 0.987), (100, 0.996), (200, 0.999)]:
        assert t.composed_c0(0.0, depth) == pytest.approx(value, abs=5e-4)
        assert t.correlation_profile("leaky_relu", 0.0, depth, slope=0.0)[-1] == pytest.approx(
            t.composed_c0(0.0, depth), abs=1e-12
        )


def test_tat_slope_at_depth_50_100_200():
    for depth, slope in [(50, 0.425907), (100, 0.568646), (200, 0.678906)]:
        assert t.tat_slope(depth, 0.9) == pytest.approx(slope, abs=1e-6)
        assert t.composed_c0(t.tat_slope(depth), depth) == pytest.approx(0.9, abs=1e-12)


def test_tat_slope_says_where_no_slope_reaches_eta():
    with pytest.raises(t.UnreachableEta, match="even ReLU"):
        t.tat_slope(10, 0.9)
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        t.tat_slope(50, 1.0)


def test_tat_slope_agrees_with_deepminds_dks():
    from dks.base.activation_transform import _get_activations_params

    for depth in (30, 50, 100, 200):
        for eta in (0.5, 0.9):

            def subnet(x, r, n=depth - 1):  # a plain MLP applies r once per activation
                for _ in range(n):
                    x = r(x)
                return x

            got = _get_activations_params(["leaky_relu"], method="TAT", tat_params={"c_val_0_target": eta},
                                          subnet_max_func=subnet)["leaky_relu"]  # fmt: skip
            assert t.tat_slope(depth, eta) == pytest.approx(got["negative_slope"], abs=1e-6)
            # its output scale is our He gain: the same net at init
            assert got["output_scale"] == pytest.approx(
                math.sqrt(2 / (1 + got["negative_slope"] ** 2)), rel=1e-6
            )


def test_residual_c_map_moves_correlations_slower_than_the_plain_map():
    c = np.array([0.0, 0.3, 0.6])
    res = t.residual_c_map("leaky_relu", c, blocks=98, slope=0.0)
    plain = t.c_map("leaky_relu", c, slope=0.0)
    assert np.all(res > c) and np.all(res < plain)
    np.testing.assert_allclose(res, (c + plain / 98) / (1 + 1 / 98))
    profile = t.correlation_profile("leaky_relu", c, 100, residual=True, slope=0.0)
    assert profile.shape == (100, 3) and np.all(np.diff(profile, axis=0) >= -1e-12)
    assert profile[-1, 0] < t.correlation_profile("leaky_relu", c, 100, slope=0.0)[-1, 0]
