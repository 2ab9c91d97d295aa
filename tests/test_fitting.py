"""Power-law fits on log-log axes."""

import numpy as np
import pytest

from assocmem.fitting import fit_power_law


def test_exact_power_law_is_recovered():
    x = np.logspace(0, 3, 12)
    fit = fit_power_law(x, 3.0 * x**-0.75)
    assert fit.slope == pytest.approx(-0.75)
    assert fit.prefactor == pytest.approx(3.0)
    assert fit.spread == 0.0
    np.testing.assert_allclose(fit(x), 3.0 * x**-0.75)


def test_spread_is_the_std_of_the_trial_slopes():
    x = np.logspace(0, 2, 10)
    slopes = np.array([-1.0, -1.2, -0.8])
    fit = fit_power_law(x, x[None, :] ** slopes[:, None])
    assert fit.spread == pytest.approx(slopes.std())
    assert str(fit).startswith("-")


def test_non_positive_points_are_dropped():
    x = np.array([1.0, 2.0, 4.0, 8.0])
    y = np.array([1.0, 0.5, 0.0, 0.125])
    assert fit_power_law(x, y).slope == pytest.approx(-1.0)


def test_validation():
    with pytest.raises(ValueError, match="last dimension"):
        fit_power_law([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="x must be positive"):
        fit_power_law([0, 1, 2], [1, 2, 3])
