"""Ball volumes, the exact ball integral and the N = O(D^2) argument (assocmem.theory.volume)."""

import numpy as np
import pytest
from scipy import special

from assocmem.theory import volume


def test_ball_volume_matches_low_dimensional_formulas():
    r = 1.7
    np.testing.assert_allclose(np.exp(volume.log_ball_volume([1, 2, 3], r)),
                               [2 * r, np.pi * r**2, 4 / 3 * np.pi * r**3], rtol=1e-12)


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_ball_integral_matches_monte_carlo(n):
    r = 1.2
    rng = np.random.default_rng(n)
    samples = rng.uniform(-r, r, size=(400_000, n))
    inside = np.sum(samples**2, axis=1) <= r**2
    estimate = (2 * r) ** n * np.mean(np.where(inside, np.exp(-np.sum(samples**2, axis=1)), 0.0))
    exact = np.exp(volume.log_ball_gaussian_integral(n, r))
    assert exact == pytest.approx(estimate, rel=0.01)


def test_ball_integral_closed_form_in_two_dimensions_and_the_bound():
    r = np.array([0.3, 1.0, 2.5])
    np.testing.assert_allclose(np.exp(volume.log_ball_gaussian_integral(2, r)),
                               np.pi * (1 - np.exp(-r**2)), rtol=1e-12)
    n = np.array([1, 10, 100, 10_000])
    assert np.all(volume.log_ball_gaussian_integral(n, 2.0) < volume.log_ball_volume(n, 2.0))


def test_log_incomplete_gamma_agrees_with_scipy_and_stays_finite():
    a = np.array([0.5, 2.0, 10.0, 300.0, 300.0])
    x = np.array([0.1, 2.5, 4.0, 100.0, 400.0])
    np.testing.assert_allclose(volume.log_lower_gamma_regularized(a, x),
                               np.log(special.gammainc(a, x)), rtol=1e-10)
    deep = volume.log_lower_gamma_regularized(5e5, 5e5 / (np.pi * np.e))
    assert np.isfinite(deep) and deep < -1e4  # scipy underflows to 0 here


def test_volume_bound_gives_sqrt_pi_n_patterns_and_exact_integral_exponentially_more():
    n = np.array([100, 1000, 100_000])
    bound = volume.patterns_at_unit_partition(n, exact=False)
    np.testing.assert_allclose(bound, 0.5 * np.log(np.pi * n), atol=0.01)
    gap = volume.patterns_at_unit_partition(n) - bound
    # the exact integral is smaller than the volume by about exp(-r^2) = exp(-n / 2 pi e)
    np.testing.assert_allclose(gap / (n / (2 * np.pi * np.e)), 1.0, rtol=0.05)


def test_loss_from_partition_is_minimal_at_one():
    Z = np.array([0.5, 1.0, 2.0])
    loss = volume.loss_from_partition(Z)
    assert loss[1] == 1.0 and np.all(loss[[0, 2]] > 1.0)


@pytest.mark.parametrize("call", [lambda: volume.log_ball_volume(0, 1.0),
                                  lambda: volume.log_ball_volume(2.5, 1.0),
                                  lambda: volume.log_ball_volume(3, -1.0),
                                  lambda: volume.loss_from_partition(0.0),
                                  lambda: volume.log_lower_gamma_regularized(1.0, np.nan)])
def test_invalid_inputs_raise_value_error(call):
    with pytest.raises(ValueError):
        call()


def test_non_numeric_input_raises_type_error():
    with pytest.raises(TypeError):
        volume.theory_radius("ten")


@pytest.mark.parametrize("n", [1, 2, 10, 1_000, 100_000])
def test_exact_ball_integral_lies_inside_proposition_5_bracket(n):
    radii = volume.theory_radius(n) * np.array([0.3, 1.0, 3.0])
    lower, upper = volume.log_partition_bracket(n, radii)
    exact = volume.log_ball_gaussian_integral(n, radii)
    assert np.all(lower <= exact) and np.all(exact <= upper)
    np.testing.assert_allclose(upper - lower, radii**2, rtol=1e-12)
    default_lower, default_upper = volume.log_partition_bracket(n)
    assert default_upper == pytest.approx(volume.log_ball_volume(n, volume.theory_radius(n)), rel=1e-12)


def test_exact_integral_in_one_dimension_against_the_bracket():
    # n = 1: the integral over [-r, r] of exp(-x^2) is sqrt(pi) erf(r)
    from scipy.special import erf

    r = 0.7
    assert np.exp(volume.log_ball_gaussian_integral(1, r)) == pytest.approx(np.sqrt(np.pi) * erf(r), rel=1e-12)
    lower, upper = volume.log_partition_bracket(1, r)
    assert np.exp(upper) == pytest.approx(2 * r) and np.exp(lower) == pytest.approx(2 * r * np.exp(-r**2))


def test_volume_bound_chain_gives_N_proportional_to_D_to_the_fourth():
    d = np.array([64, 256, 1024, 4096, 16384])
    N, D = volume.volume_bound_balance(d, context=32, n_layers=2)
    np.testing.assert_allclose(N, 24.0 * d**2)
    # D = T sqrt(pi T d) up to Stirling's correction, so N ~ A l D^4 / (pi^2 T^6)
    np.testing.assert_allclose(D, 32 * np.sqrt(np.pi * 32 * d), rtol=0.02)
    slope = np.polyfit(np.log(D), np.log(N), 1)[0]
    assert slope == pytest.approx(4.0, abs=0.01)
    with pytest.raises(ValueError, match="context"):
        volume.volume_bound_balance(d, context=0)


def test_loss_from_log_partition_matches_the_direct_form_and_stays_finite():
    Z = np.array([0.2, 1.0, 3.0, 50.0])
    np.testing.assert_allclose(volume.loss_from_log_partition(np.log(Z)), volume.loss_from_partition(Z), rtol=1e-14)
    assert volume.loss_from_log_partition(2000.0) == 2000.0  # Z = e^2000 overflows a float, L does not
    assert volume.loss_from_log_partition(-30.0) == pytest.approx(np.exp(30.0) - 30.0, rel=1e-14)
    with pytest.raises(ValueError, match="log_Z"):
        volume.loss_from_log_partition(np.nan)


@pytest.mark.parametrize("n, n_p", [(1, 3.0), (10, 5.0), (2048, 256.0), (100_000, 1e6)])
def test_radius_at_unit_partition_solves_Z_equal_one(n, n_p):
    r = volume.radius_at_unit_partition(n, n_p)
    # bisection to a relative 1e-13 in r, and d log I / d log r <= n: the residual is below n * 1e-12
    assert np.log(n_p) + volume.log_ball_gaussian_integral(n, r) == pytest.approx(0.0, abs=n * 1e-12)
    r_bound = volume.radius_at_unit_partition(n, n_p, exact=False)
    assert np.log(n_p) + volume.log_ball_volume(n, r_bound) == pytest.approx(0.0, abs=1e-9)
    assert r_bound < r  # the volume bound reaches Z = 1 at a smaller radius


def test_radius_at_unit_partition_is_nan_when_no_radius_suffices():
    # n = 1: the whole line integrates to sqrt(pi) < 1 / 0.5, so half a pattern never reaches Z = 1
    assert np.isnan(volume.radius_at_unit_partition(1, 0.5))
    np.testing.assert_allclose(volume.radius_at_unit_partition([2, 2], [1.0, 4.0]),
                               [np.sqrt(-np.log(1 - 1 / np.pi)), np.sqrt(-np.log(1 - 1 / (4 * np.pi)))], rtol=1e-10)


# --- issue 13: a huge radius or dimension is computed, not refused or hung on

def test_ball_gaussian_integral_of_a_huge_radius_is_the_whole_gaussian_mass():
    # r**2 overflows for r > 1.3e154; the integral is then pi^(n/2) to float64 (P(n/2, r^2) = 1)
    n = np.array([1, 6, 100])
    np.testing.assert_array_equal(volume.log_ball_gaussian_integral(n, 1e300), 0.5 * n * np.log(np.pi))
    big = volume.log_ball_gaussian_integral(n, 1e150)  # r**2 = 1e300 is finite: the ordinary path
    np.testing.assert_array_equal(big, 0.5 * n * np.log(np.pi))


def test_series_term_count_is_the_fewer_of_two_valid_bounds():
    # the geometric bound applies at the theory radius, x / (a + 1) ~ 1 / (pi e); the result must
    # agree with scipy's gammainc where that does not underflow (relative 1e-13: a sum of terms
    # each correct to a few ulp)
    n = np.array([10.0, 100.0, 1000.0])
    x = (n / (2 * np.pi * np.e))
    got = volume.log_lower_gamma_regularized(n / 2, x)
    np.testing.assert_allclose(got, np.log(special.gammainc(n / 2, x)), rtol=1e-13)


def test_radius_at_unit_partition_in_a_huge_dimension_solves_its_equation():
    r = volume.radius_at_unit_partition(10**12, 8)   # a few hundred series terms per step, not millions
    # the root solves n_p I_n(r) = 1 to the bisection's relative width 1e-13 in r; d log I / d log r <= n
    # (the volume's slope), so |log(n_p I_n(r))| <= 1e-13 n, plus rounding of terms of size n
    assert volume.log_ball_gaussian_integral(10**12, r) + np.log(8) == pytest.approx(0.0, abs=2e-13 * 10**12)
    # ... and lies above the volume bound's root (I_n <= V_n)
    assert r >= volume.radius_at_unit_partition(10**12, 8, exact=False)
