"""Closed forms of chapter 3: the unseen-mass identity, its exponential and asymptotic forms, the laws."""

import itertools

import numpy as np
import pytest

from assocmem import zipf
from assocmem.theory import finite_sample as th


def brute_force_unseen_mass(N, alpha, T):
    """Average of sum_x p(x) 1[n_x = 0] over all N**T sample sequences, weighted by their probability."""
    p = zipf.zipf_probs(N, alpha)
    total = 0.0
    for sequence in itertools.product(range(N), repeat=T):
        unseen = np.ones(N, dtype=bool)
        unseen[list(sequence)] = False
        total += np.prod(p[list(sequence)]) * p[unseen].sum()
    return total


@pytest.mark.parametrize(("N", "alpha", "T"), [(3, 1.0, 4), (4, 2.0, 3), (5, 0.5, 2), (2, 3.0, 6)])
def test_excess_error_is_the_exact_expected_unseen_mass(N, alpha, T):
    assert th.excess_error(N, alpha, [T])[0] == pytest.approx(brute_force_unseen_mass(N, alpha, T), rel=1e-12)


def test_exponential_form_bounds_the_exact_sum_and_meets_it_for_large_T():
    T = [1, 10, 100, 1000, 10000]
    exact = th.excess_error(10_000, 2.0, T)
    poisson = th.excess_error_exponential(10_000, 2.0, T)
    assert np.all(poisson >= exact)
    relative_gap = poisson / exact - 1
    assert relative_gap[-1] < 1e-3
    assert np.all(np.diff(relative_gap[1:]) < 0)


@pytest.mark.parametrize(("alpha", "tolerance"), [(1.5, 3e-2), (2.0, 1e-2), (3.0, 1e-2)])
def test_asymptotic_law_matches_the_exact_sum_for_large_N(alpha, tolerance):
    T = [1000, 10000]
    ratio = th.excess_error(1_000_000, alpha, T) / th.excess_error_law(alpha, T)
    assert np.allclose(ratio, 1.0, atol=tolerance)


def test_exponents():
    assert th.sample_exponent(2.0) == -0.5
    assert th.sample_exponent(4.0) == -0.75
    assert th.threshold_exponent(2.0) == -1.0
    assert th.threshold_exponent(1.5) == -0.5


def brute_force_lost_mass(N, alpha, d, T, ratio):
    p = zipf.zipf_probs(N, alpha)
    P = min(int(d // ratio), N)
    return p[P:].sum() + sum(p[x] * (1 - p[x]) ** T for x in range(P))


def test_threshold_lost_mass_is_the_tail_plus_the_unseen_head():
    d, T = [10, 125, 1199, 24000], [0, 10, 100]  # not multiples of 12: P = floor(d / 12)
    lost = th.threshold_lost_mass(1000, 2.0, d, T, ratio=12)
    assert lost.shape == (3, 4)
    expected = [[brute_force_lost_mass(1000, 2.0, dd, t, 12) for dd in d] for t in T]
    assert np.allclose(lost, expected, rtol=1e-12)
    assert np.allclose(lost[0], 1.0)  # nothing seen: everything lost
    assert np.allclose(lost[:, 0], 1.0)  # P = 0: nothing stored
    assert np.allclose(lost[:, -1], th.excess_error(1000, 2.0, T))  # P = N: only the unseen mass


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_threshold_law_is_the_sum_of_a_d_law_and_a_T_law(alpha):
    d, T = np.array([12, 120, 1200]), np.array([10, 100])
    law = th.threshold_error_law(alpha, d, T, ratio=12)
    assert law.shape == (2, 3)
    d_term = law - th.excess_error_law(alpha, T)[:, None]
    assert np.allclose(d_term, d_term[:, :1] * (d / 12) ** th.threshold_exponent(alpha))
    assert np.allclose(d_term[:, 0], zipf.tail_mass_law(alpha, [1]))
    T_term = law - d_term
    assert np.allclose(T_term, T_term[:1] * (T[:, None] / 10) ** th.sample_exponent(alpha))


def test_overflow_dimension_grows_with_the_number_of_distinct_tokens():
    T = [10, 100, 1000]
    dims = th.overflow_dimension(100, 0.5, T, capacity=0.5)
    assert np.allclose(dims, 2 * zipf.expected_distinct(100, 0.5, T))
    assert np.all(np.diff(dims) > 0)


@pytest.mark.parametrize(("call", "error"), [
    (lambda: th.sample_exponent(1.0), ValueError),
    (lambda: th.threshold_exponent("2"), TypeError),
    (lambda: th.excess_error(10, 2.0, [-1]), ValueError),
    (lambda: th.excess_error_exponential(10, 2.0, [1.5]), TypeError),
    (lambda: th.threshold_lost_mass(10, 2.0, [10], [10], ratio=0), ValueError),
    (lambda: th.threshold_error_law(0.5, [10], [10]), ValueError),
    (lambda: th.overflow_dimension(10, 2.0, [10], capacity=-1), ValueError),
])
def test_invalid_inputs_raise_named_errors(call, error):
    with pytest.raises(error):
        call()


# --- issue 13: N validated before use; a law beyond float64 refused by name

@pytest.mark.parametrize(("N", "error"), [("x", TypeError), (None, TypeError), (0, ValueError)])
def test_threshold_lost_mass_names_N(N, error):
    with pytest.raises(error, match="N must be an integer"):
        th.threshold_lost_mass(N, 1.5, [24], [10])


def test_threshold_error_law_beyond_float64_is_refused_by_name():
    with pytest.raises(ValueError, match="alpha, d, ratio: the tail law"):
        th.threshold_error_law(1e300, [6], [10], ratio=12.0)   # P = 1/2: 2^(1e300)
    # above P = 1 the same alpha is legal and the tail is 0: only the data term is left
    law = th.threshold_error_law(1e300, [24], [10], ratio=12.0)
    np.testing.assert_array_equal(law, zipf.expected_unseen_mass_law(1e300, [10])[:, None])
