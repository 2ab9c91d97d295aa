"""Closed forms of chapter 7: Theorem 1's bounds against simulation, the minimax bound, counting."""

import numpy as np
import pytest
from scipy import optimize

from assocmem import memory, zipf
from assocmem.theory import capacity as th


def test_class_interference_is_the_largest_class_sum_of_squares():
    q = np.array([3.0, 1.0, 2.0, 2.0, 0.5])
    labels = np.array([0, 1, 0, 1, 2])
    # classes: 0 -> 9 + 4 = 13, 1 -> 1 + 4 = 5, 2 -> 0.25
    assert th.class_interference(q, labels) == 13.0
    assert th.class_interference(q, labels, M=4) == 13.0
    with pytest.raises(ValueError, match="labels"):
        th.class_interference(q, labels, M=2)


def test_bounds_count_exactly_the_tokens_their_conditions_name():
    p = np.array([0.5, 0.3, 0.2])
    q = np.array([1.0, 0.1, 0.0])
    labels = np.array([0, 0, 1])
    Q = 1.01                                   # class 0: 1 + 0.01
    # lower: 3(d+1) q^2 <= Q  -> at d = 1: token 1 (0.06 <= 1.01) and token 2 (0): (0.3 + 0.2) / 20
    assert th.theorem1_lower(q, p, labels, [1])[0] == pytest.approx(0.5 / 20)
    # at d = 1000 the same two tokens (3003 * 0.01 > 1.01 fails for token 1): only token 2
    assert th.theorem1_lower(q, p, labels, [1000])[0] == pytest.approx(0.2 / 20)
    # upper with gamma = 1: c = log 2 + log 3; threshold 16 c (Q + 8 c ||q||^2 / d)
    c = np.log(2) + np.log(3)
    d = 10**6
    threshold = 16 * c * (Q + 8 * c * 1.01 / d)
    expected = p[d * q**2 <= threshold].sum() + 1.0
    assert th.theorem1_upper(q, p, labels, [d], gamma=1.0)[0] == pytest.approx(expected)
    assert th.theorem1_shape(q, p, labels, [d], c=1.0)[0] == pytest.approx(p[d * q**2 <= Q + 1.01 / d].sum())


@pytest.fixture(scope="module")
def measured():
    """Errors of q = p and of a small threshold over 400 draws at N = 200, M = 5, alpha = 2."""
    N, M, alpha = 200, 5, 2.0
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    d_grid = np.array([8, 32, 128, 512])
    schemes = {"p": p, "threshold": memory.threshold_weights(N, 4)}
    out = {}
    for kind in ("gaussian", "sphere"):
        errors = memory.error_scans(list(schemes.values()), p, labels, M, d_grid, seed=3, trials=400, kind=kind)
        out[kind] = {name: e.numpy() for name, e in zip(schemes, errors, strict=True)}
    return p, labels, d_grid, schemes, out


@pytest.mark.parametrize("scheme", ["p", "threshold"])
def test_theorem1_brackets_the_measured_error(measured, scheme):
    """The quoted constants must hold: measured mean (400 draws) above the Gaussian lower bound and below
    the sphere upper bound at its best gamma, allowing three standard errors of the mean."""
    p, labels, d_grid, schemes, out = measured
    q = schemes[scheme]
    for kind, check in (("gaussian", "lower"), ("sphere", "upper")):
        errors = out[kind][scheme]
        mean, se = errors.mean(0), errors.std(0, ddof=1) / np.sqrt(errors.shape[0])
        if check == "lower":
            bound = th.theorem1_lower(q, p, labels, d_grid)
            assert np.all(mean + 3 * se >= bound), (mean, bound)
            assert np.all(bound > 0)               # not a vacuous check: every d has lost tokens
        else:
            bound = np.min([th.theorem1_upper(q, p, labels, d_grid, gamma=g) for g in np.linspace(0.05, 1, 20)], 0)
            assert np.all(mean - 3 * se <= bound), (mean, bound)


def test_fano_phi_endpoints_and_convexity():
    M = 5
    assert th.fano_phi(0.0, M) == pytest.approx(np.log(M))
    assert th.fano_phi(1 - 1 / M, M) == pytest.approx(0.0, abs=1e-12)
    P = np.linspace(0, 1 - 1 / M, 101)
    phi = th.fano_phi(P, M)
    assert np.all(np.diff(phi) < 0) and np.all(np.diff(phi, 2) > 0)
    with pytest.raises(ValueError, match="P must"):
        th.fano_phi(0.9, M)


def test_minimax_bound_limits():
    p = zipf.zipf_probs(50, 1.5)
    M = 4
    chance = 1 - 1 / M
    assert th.minimax_lower_bound(p, M, np.inf, 0.0) == pytest.approx(chance)       # no memory
    assert th.minimax_lower_bound(p, M, 0, 1e6) == pytest.approx(chance)            # no data
    assert th.minimax_lower_bound(p, M, np.inf, 1e6) == pytest.approx(0.0, abs=1e-9)
    unseen = chance * zipf.expected_unseen_mass(50, 1.5, [300])[0]
    assert th.minimax_lower_bound(p, M, 300, 1e6) == pytest.approx(unseen, rel=1e-9)  # data term alone


def test_minimax_bound_decreases_with_bits_and_samples():
    p = zipf.zipf_probs(200, 2.0)
    grid = th.minimax_lower_bound_grid(p, 5, [10, 100, 1000, np.inf], [1, 10, 100, 1000])
    assert np.all(np.diff(grid, axis=0) <= 1e-12) and np.all(np.diff(grid, axis=1) <= 1e-12)


def test_minimax_dual_equals_the_primal_program():
    """With infinite data the bound is min sum p P s.t. sum phi(P) <= B log 2 (strong duality): solve the
    primal directly for a small law and compare."""
    p, M, bits = zipf.zipf_probs(6, 1.0), 3, 3.0
    budget = bits * np.log(2)
    result = optimize.minimize(lambda P: p @ P, x0=np.full(6, 0.5), method="SLSQP",
                               bounds=[(0, 1 - 1 / M)] * 6,
                               constraints=[{"type": "ineq", "fun": lambda P: budget - th.fano_phi(
                                   np.clip(P, 0, 1 - 1 / M), M).sum()}], options={"ftol": 1e-12})
    assert result.success
    assert th.minimax_lower_bound(p, M, np.inf, bits) == pytest.approx(result.fun, rel=1e-5)


def test_minimax_bound_is_below_an_achievable_one_bit_algorithm():
    """N = 3, M = 2, one bit, infinite data: storing the label of token 1 errs on half of the rest."""
    p = np.array([0.5, 0.3, 0.2])
    achievable = 0.5 * (0.3 + 0.2)
    bound = th.minimax_lower_bound(p, 2, np.inf, 1.0)
    assert 0 < bound <= achievable


def test_counting_capacity_is_covers_count_for_two_classes():
    d = np.array([1, 4, 10])
    assert np.array_equal(th.free_parameters(d, 2), d)
    assert np.array_equal(th.counting_capacity(d, 2), 2 * d)               # Cover: 2d points in R^d
    assert np.array_equal(th.free_parameters([3, 10], 5), [9, 40])         # min(M - 1, d) d
    assert np.allclose(th.counting_capacity([64], 64), 2 * 63 * 64 / 6)
    with pytest.raises(ValueError, match="M"):
        th.counting_capacity(d, 1)


# --- issue 13: the grid's errors name T_grid and bits_grid

@pytest.mark.parametrize(("T_grid", "bits_grid", "error", "message"), [
    (None, [1.0], TypeError, "T_grid must be a number"),
    ("x", [1.0], TypeError, "T_grid must be a number"),
    (["a"], [1.0], TypeError, "T_grid must be a number"),
    ([10, np.nan], [1.0], ValueError, "T_grid must be a non-negative integer or inf, got nan"),
    ([[[10, 20]]], [1.0], ValueError, "T_grid must be a number or a non-empty 1-D"),
    ([10], None, TypeError, "bits_grid must be a number"),
    ([10], ["a"], TypeError, "bits_grid must be a number"),
    ([10], [1.0, np.nan], ValueError, "bits_grid must be finite"),
    ([10], [[[1.0]]], ValueError, "bits_grid must be a number or a non-empty 1-D"),
])
def test_minimax_lower_bound_grid_names_its_grids(T_grid, bits_grid, error, message):
    with pytest.raises(error, match=message):
        th.minimax_lower_bound_grid(zipf.zipf_probs(12, 1.5), 3, T_grid, bits_grid)


def test_minimax_lower_bound_grid_is_the_pointwise_bound():
    p = zipf.zipf_probs(12, 1.5)
    grid = th.minimax_lower_bound_grid(p, 3, [10, np.inf], 4.0)   # a scalar bits_grid is one column
    assert grid.shape == (2, 1)
    assert grid[0, 0] == th.minimax_lower_bound(p, 3, 10, 4.0)    # the very same computation
    assert grid[1, 0] == th.minimax_lower_bound(p, 3, np.inf, 4.0)
