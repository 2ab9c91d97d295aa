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
