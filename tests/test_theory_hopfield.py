"""Closed forms of chapter 5: capacities, the replica overlap, [R20] constants and [NBDH24] bounds."""

import math

import numpy as np
import pytest
from scipy.stats import norm

from assocmem.theory import hopfield as th


def test_all_names_exist():
    assert all(hasattr(th, name) for name in th.__all__)


@pytest.mark.parametrize(("args", "c"), list(th.R20_CAPACITY_EXAMPLES.items()))
def test_r20_theorem3_constants(args, c):
    assert th.modern_capacity_constant(*args) == pytest.approx(c, abs=1e-4)  # the paper truncates


def test_r20_lower_bound_is_exponential_and_checks_its_condition():
    assert th.modern_capacity_lower_bound(1.0, 3.0, 20, 0.001) == pytest.approx(
        math.sqrt(0.001) * 3.1546107 ** (19 / 4), rel=1e-6)
    with pytest.raises(ValueError, match="needs c >="):
        th.modern_capacity_lower_bound(1.0, 1.0, 10, 0.001)


def test_classical_capacities():
    assert th.classical_capacity(1000) == pytest.approx(138.0)
    assert th.error_free_capacity(100) == pytest.approx(100 / (2 * math.log(100)))
    np.testing.assert_allclose(th.dense_error_free_capacity([50, 100], 2), th.error_free_capacity([50, 100]))


def test_double_factorial():
    assert [th.double_factorial(n) for n in (-1, 0, 1, 2, 3, 5, 6)] == [1, 1, 1, 2, 3, 15, 48]


def test_dense_capacity_at_error_inverts_bit_error():
    d = np.array([20.0, 40.0])
    for a in (2, 3, 4):
        K = th.dense_capacity_at_error(d, a, 0.01)
        np.testing.assert_allclose(th.dense_bit_error(K, d, a), 0.01, rtol=1e-10)
        np.testing.assert_allclose(K / th.dense_capacity_scale(d, a), K[0] / d[0] ** (a - 1))


def test_dense_capacity_at_the_classical_error_level_is_0138_d():
    error = norm.cdf(-1 / math.sqrt(th.CLASSICAL_CAPACITY_RATIO))
    assert th.dense_capacity_at_error(500, 2, error) == pytest.approx(0.138 * 500, rel=1e-9)


def test_replica_overlap_collapses_at_0138():
    m = th.replica_overlap([0.05, 0.1, 0.137, 0.139, 0.2])
    assert m[0] > 0.9999 and m[1] == pytest.approx(0.998, abs=1e-3)
    assert 0.97 < m[2] < 0.98            # about 1.2% wrong bits just below the transition
    assert m[3] < 1e-6 and m[4] < 1e-6   # no retrieval state above it


def test_cap_probability_exact_in_three_dimensions_and_by_monte_carlo():
    eta = np.array([0.0, 0.3, 0.7])
    np.testing.assert_allclose(th.cap_probability(eta, 3), (1 - eta) / 2)  # Archimedes
    rng = np.random.default_rng(0)
    g = rng.standard_normal((2, 200_000, 8))
    g /= np.linalg.norm(g, axis=-1, keepdims=True)
    cosine = (g[0] * g[1]).sum(-1)
    assert th.cap_probability(0.4, 8) == pytest.approx((cosine > 0.4).mean(), abs=3e-3)


def test_modern_capacity_scale_matches_monte_carlo_normaliser():
    rng = np.random.default_rng(1)
    d, tolerance = 6, 0.1
    g = rng.standard_normal((400_000, d))
    cosine = g[:, 0] / np.linalg.norm(g, axis=-1)
    kappa = d - 1
    expected = tolerance * np.exp(kappa) / np.exp(kappa * cosine).mean()
    assert th.modern_capacity_scale(d, tolerance=tolerance) == pytest.approx(expected, rel=0.02)
    scales = th.modern_capacity_scale(np.array([10, 20, 30]))
    assert np.all(np.diff(np.log(scales)) > 0)


def test_energy_constants_and_bounds():
    assert th.modern_energy_offset(8, 2.0, 0.5) == pytest.approx(math.log(8) / 0.5 + 2.0)
    assert th.modern_energy_bounds(3.0) == (0.0, 18.0)
    lower, upper = th.nearest_neighbour_bounds([1.0, 2.0], 4)
    np.testing.assert_allclose(lower, [1 - math.log(4), 2 - math.log(4)])
    np.testing.assert_allclose(upper, [1.0, 2.0])
    assert th.mchn_link_gap([1.0, 2.0, 3.0]) == pytest.approx(8.0)
    lower, upper = th.global_energy_bounds(2.0, 3)
    assert (lower, upper) == (pytest.approx(2 - math.log(3)), 2.0)


def test_retrieval_error_bound_formula():
    bound = th.retrieval_error_bound(5, 2.0, 1.5, separation=[3.0], distance=[0.1])
    assert bound[0] == pytest.approx(2 * 4 * 2.0 * math.exp(-1.5 * (3.0 - 2 * 2.0 * 0.1)))


@pytest.mark.parametrize(("call", "message"), [
    (lambda: th.dense_capacity_scale(10, 1), "a must be"),
    (lambda: th.dense_capacity_at_error(10, 2, 0.7), "error must lie"),
    (lambda: th.dense_bit_error(0, 10, 2), "K must be positive"),
    (lambda: th.error_free_capacity(1), "d must be"),
    (lambda: th.modern_capacity_constant(0.0, 1.0, 10, 0.01), "beta must lie"),
    (lambda: th.cap_probability(1.0, 10), "eta must lie"),
    (lambda: th.replica_overlap(0.0), "load must be finite and > 0"),
    (lambda: th.retrieval_error_bound(3, 1.0, 1.0, 1.0, -1.0), "distance must be"),
    (lambda: th.mchn_link_gap([]), "norms must be"),
])
def test_validation(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_type_validation():
    with pytest.raises(TypeError, match="a must be an integer"):
        th.dense_capacity_scale(10, 2.5)


# --- issue 13: huge legal values give finite, correct answers or a clear error naming the parameters

def _naive_modern_capacity_scale(d, beta, K, tolerance):
    from scipy.special import gammaln, ive
    kappa = beta * K**2 * (d - 1)
    nu = d / 2.0 - 1.0
    log_mean = gammaln(d / 2.0) + nu * np.log(2.0 / kappa) + np.log(ive(nu, kappa)) + kappa
    return tolerance * np.exp(kappa - log_mean)


def test_modern_capacity_scale_log_form_equals_the_naive_form_where_it_is_finite():
    # the two differ by the rounding of kappa added and subtracted: |error| <= kappa * 2^-52 in the
    # exponent, kappa <= 3 * 2^2 * 39 < 500 here, so 1e-12 relative is a safe bound
    d = np.arange(2, 41)
    for beta in (0.5, 1.0, 3.0):
        for K in (0.5, 1.0, 2.0):
            np.testing.assert_allclose(th.modern_capacity_scale(d, beta=beta, K=K, tolerance=0.1),
                                       _naive_modern_capacity_scale(d, beta, K, 0.1), rtol=1e-12)


def test_log_ive_expansion_matches_scipy_where_scipy_is_finite():
    from scipy.special import ive
    nu = np.array([100.0, 300.0, 1000.0, 100.0, 300.0, 1000.0])
    kappa = np.array([50.0, 500.0, 5000.0, 400.0, 100.0, 2000.0])
    direct = np.log(ive(nu, kappa))
    assert np.all(np.isfinite(direct))
    # the omitted term u_4(t)/nu^4 is below 1e-9 relative at nu = 100; a log of a few hundred
    np.testing.assert_allclose(th._log_ive_debye(nu, np.log(kappa)), direct, rtol=1e-10, atol=1e-10)


def test_modern_capacity_scale_is_finite_where_ive_underflows():
    # d = 2000, K = 0.1: I_999(19.99) underflows float64, the result does not. E e^{kappa cos} is the
    # confluent limit 0F1(; d/2; kappa^2/4), finite here
    from scipy.special import hyp0f1
    d, K = 2000, 0.1
    kappa = K**2 * (d - 1)
    expected = 0.1 * np.exp(kappa) / hyp0f1(d / 2, kappa**2 / 4)
    assert th.modern_capacity_scale(d, K=K) == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("kwargs", [{"d": 10**12}, {"d": 6, "beta": 1e300}, {"d": 6, "K": 1e300}])
def test_modern_capacity_scale_beyond_float64_is_refused_by_name(kwargs):
    with pytest.raises(ValueError, match="d, beta, K, tolerance: the result exceeds the float64 range"):
        th.modern_capacity_scale(**kwargs)


def test_modern_capacity_scale_huge_radius_in_two_dimensions_is_finite():
    # d = 2: E e^{kappa cos} = I_0(kappa) ~ e^kappa / sqrt(2 pi kappa), so N = tol sqrt(2 pi kappa)
    assert th.modern_capacity_scale(2, K=1e100, tolerance=0.1) == pytest.approx(
        0.1 * math.sqrt(2 * math.pi) * 1e100, rel=1e-12)


def test_modern_capacity_constant_for_huge_and_tiny_beta_solves_its_definition():
    beta, K, d, p = 1e300, 4.0, 6, 0.5
    c = th.modern_capacity_constant(beta, K, d, p)
    a = 2 / (d - 1) * (1 + math.log(2 * p * (d - 1)) + math.log(beta) + 2 * math.log(K))
    log_b = math.log(2 / 5) + math.log(beta) + 2 * math.log(K)
    w = math.exp(log_b - math.log(c))        # W_0(e^{a + log b}) = b / c solves w + log w = a + log b
    # c = exp(log c) with log c ~ 690: ~690 ulp of relative rounding in c, hence in w
    assert w + math.log(w) == pytest.approx(a + log_b, rel=1e-12)
    tiny = th.modern_capacity_constant(1e-300, K, d, p)   # W_0(x) = x to float64 for x < 1e-300: c = e^-a
    a_tiny = 2 / (d - 1) * (1 + math.log(2 * p * (d - 1)) + math.log(1e-300) + 2 * math.log(K))
    assert tiny == pytest.approx(math.exp(-a_tiny), rel=1e-12)
    with pytest.raises(ValueError, match="beta, K: c = exp"):
        th.modern_capacity_constant(1.0, 1e300, d, p)


def test_modern_capacity_lower_bound_beyond_float64_is_refused_by_name():
    with pytest.raises(ValueError, match="beta, K, d: the bound .* exceeds the float64 range"):
        th.modern_capacity_lower_bound(1.0, 3.0, 4000, 0.001)


def test_retrieval_error_bound_overflow_is_refused_and_one_pattern_is_exact():
    with pytest.raises(ValueError, match="N, M, beta, separation, distance: the bound exceeds"):
        th.retrieval_error_bound(5, 1e12, 1.0, 1.0, 0.1)
    with pytest.raises(ValueError, match="the bound exceeds"):
        th.retrieval_error_bound(5, 2.0, 1.0, 1.0, 1e300)
    # N = 1: the update returns the only pattern; 0 * exp(huge) must not become NaN
    np.testing.assert_array_equal(th.retrieval_error_bound(1, 1e12, 1.0, [1.0, 2.0], 0.1), [0.0, 0.0])
