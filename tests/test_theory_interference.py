"""Tests of assocmem.theory.interference: exponents, the threshold rule, the score moments against
Monte Carlo, and the Gaussian predictor against simulation of the memory."""

import numpy as np
import pytest
import torch

from assocmem import memory, zipf
from assocmem.theory import interference as th


def test_scheme_exponents():
    assert th.scheme_exponent("uniform", 2.0) == 0.0
    assert th.scheme_exponent("power", 2.0) == pytest.approx(-0.25)
    assert th.scheme_exponent("power", 3.0, rho=0.5) == pytest.approx(-2 / 3)
    assert th.scheme_exponent("power", 2.0, rho=0.25) == 0.0            # 2 rho alpha = 1: the law fails
    assert th.scheme_exponent("threshold", 2.5) == pytest.approx(-1.5)
    with pytest.raises(ValueError, match="alpha"):
        th.scheme_exponent("power", 1.0)
    with pytest.raises(ValueError, match="scheme"):
        th.scheme_exponent("top", 2.0)


def test_threshold_rule_by_brute_force():
    p = zipf.zipf_probs(30, 2.0)
    q = p.copy()
    d_grid = [3, 50, 400]
    rule = th.threshold_rule_error(q, p, d_grid, c=2.0)
    brute = [sum(p[x] for x in range(30) if d * q[x] ** 2 < 2.0 * np.sum(q**2)) for d in d_grid]
    np.testing.assert_allclose(rule, brute)
    assert rule[0] >= rule[1] >= rule[2]


@pytest.mark.parametrize("kind", ["gaussian", "sphere"])
def test_score_moments_match_monte_carlo(kind):
    n, m, d, trials = 30, 3, 16, 4000
    p, labels = zipf.zipf_probs(n, 1.5), zipf.mod_labels(n, m)
    q = memory.power_weights(p, 0.5)
    E, U = memory.memory_embeddings(n, m, d, seed=0, trials=trials, kind=kind, dtype=torch.float64)
    s = memory.scores(q, labels, E, U).numpy()                       # (trials, M, N)
    mean, var_true, var_wrong = th.score_moments(q, labels, d, m, kind=kind, output_norm=1.0)
    true_scores = s[:, labels, np.arange(n)]
    np.testing.assert_allclose(true_scores.mean(0), mean, atol=4 * np.sqrt(var_true.max() / trials) + 0.02)
    wrong = np.ones((m, n), bool)
    wrong[labels, np.arange(n)] = False
    # at n_u = 1 (and |e_r|^2 = 1) the true-score variance misses the spread of the signal factor
    # n_u |e_r|^2, whose variance is (1 + 2/d)^2 - 1 for Gaussian embeddings (0 on the sphere)
    spread = 0.0 if kind == "sphere" else ((1 + 2 / d) ** 2 - 1) * q**2
    np.testing.assert_allclose(true_scores.var(0), var_true + spread, rtol=0.15)
    np.testing.assert_allclose(s.var(0)[wrong], var_wrong.T[wrong], rtol=0.15)


@pytest.mark.parametrize("scheme", ["power", "threshold"])
@pytest.mark.parametrize("alpha", [1.5, 2.0])
def test_predicted_error_lands_on_simulation(scheme, alpha):
    n, m = 500, 5
    p, labels = zipf.zipf_probs(n, alpha), zipf.mod_labels(n, m)
    d_grid = np.array([20, 60, 200])
    q = memory.scheme_weights(scheme, p, d_grid)
    simulated = memory.error_scan(q, p, labels, m, d_grid, seed=1, trials=60).numpy().mean(0)
    predicted = th.predicted_error(q, p, labels, d_grid, m)
    np.testing.assert_allclose(predicted, simulated, rtol=0.25)


def test_predicted_error_edge_cases():
    p, labels = zipf.zipf_probs(20, 2.0), zipf.mod_labels(20, 4)
    assert th.predicted_error(np.zeros(20), p, labels, [5, 50]) == pytest.approx([1.0, 1.0])
    # with enormous d the memory is noiseless and every stored token is recalled
    assert th.predicted_error(np.ones(20), p, labels, [10**9])[0] == pytest.approx(0.0, abs=1e-6)
    sphere = th.predicted_error(p, p, labels, [8], kind="sphere")
    assert 0.0 < sphere[0] < 1.0
    with pytest.raises(ValueError, match="q must"):
        th.predicted_error(np.ones(3), p, labels, [5])


# --- issue 13: d and kind checked before the quadrature; cost and overflow refused by name

def _small_model():
    p = zipf.zipf_probs(12, 1.5)
    return p, p, np.arange(12) % 3


@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"d": -1}, ValueError, "d must be an integer >= 1"),
    ({"d": np.nan}, TypeError, "d must be an integer"),
    ({"d": "x"}, TypeError, "d must be an integer"),
    ({"d": None}, TypeError, "d must be an integer"),
    ({"kind": np.array(["a", "b"])}, ValueError, "kind must be one of"),
    ({"norm_nodes": 10**12}, ValueError, "norm_nodes: this call needs about"),
])
def test_token_error_probability_refuses_by_name(kwargs, error, message):
    q, _, labels = _small_model()
    with pytest.raises(error, match=message):
        th.token_error_probability(**{"q": q, "labels": labels, "d": 6, **kwargs})


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"kind": np.array(["a", "b"])}, "kind must be one of"),
    ({"norm_nodes": 10**12}, "norm_nodes: this call needs about"),
])
def test_predicted_error_refuses_by_name(kwargs, message):
    q, p, labels = _small_model()
    with pytest.raises(ValueError, match=message):
        th.predicted_error(q, p, labels, [4, 8], **kwargs)


def test_score_moments_overflow_is_refused_by_name():
    q, _, labels = _small_model()
    with pytest.raises(ValueError, match="q, output_norm: the score variances exceed"):
        th.score_moments(q, labels, 6, output_norm=1e300)
    with pytest.raises(ValueError, match="q, output_norm: the score variances exceed"):
        th.score_moments(q * 1e200, labels, 6)
