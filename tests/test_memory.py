"""Tests of assocmem.memory: exact identities, brute force on small cases, validation, and the
thresholded exponent of chapter 2 on a moderate grid."""

import numpy as np
import pytest
import torch

from assocmem import fitting, memory, zipf
from assocmem.theory import interference

N, M, ALPHA = 40, 5, 2.0


@pytest.fixture(scope="module")
def setup():
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    E, U = memory.memory_embeddings(N, M, 30, seed=3, trials=3, dtype=torch.float64)
    return p, labels, E, U


def assert_same_errors(a, b):
    """Two population errors computed in different batch shapes: each is a sum of at most N
    probability masses (total 1), so summation order moves it by at most about N ulps of 1; a single
    flipped miss would move it by at least min p(x) = p(N), far above that."""
    assert a.dtype == b.dtype and a.shape == b.shape
    torch.testing.assert_close(a, b, rtol=0, atol=N * torch.finfo(a.dtype).eps)
    assert N * torch.finfo(a.dtype).eps < zipf.zipf_probs(N, ALPHA)[-1] / 10


def brute_force_error(q, p, labels, E, U, d_grid, kind):
    """Textbook: explicit d x d matrix W for each trial and d, argmax with ties counted as errors."""
    errors = np.zeros((E.shape[0], len(d_grid)))
    for t in range(E.shape[0]):
        for j, d in enumerate(d_grid):
            e, u = E[t, :, :d].numpy(), U[t, :, :d].numpy()
            if kind == "sphere":
                e = e / np.linalg.norm(e, axis=1, keepdims=True)
                u = u / np.linalg.norm(u, axis=1, keepdims=True)
            else:
                e, u = e * np.sqrt(E.shape[2] / d), u * np.sqrt(E.shape[2] / d)
            weights = q if q.ndim == 1 else q[min(t, q.shape[0] - 1)]
            if weights.ndim == 2:
                weights = weights[j if weights.shape[0] > 1 else 0]
            W = sum(weights[x] * np.outer(u[labels[x]], e[x]) for x in range(len(p)))
            s = u @ W @ e.T
            for r in range(len(p)):
                if not s[labels[r], r] > np.delete(s[:, r], labels[r]).max():
                    errors[t, j] += p[r]
    return errors


def test_score_splits_into_signal_and_interference(setup):
    p, labels, E, U = setup
    q = memory.power_weights(p, 0.5)
    signal, interference_term = memory.signal_and_interference(q, labels, E, U)
    s = memory.scores(q, labels, E, U)
    assert torch.allclose(signal + interference_term, s, atol=1e-12, rtol=0)
    # the signal is q(r) |e_r|^2 u_y^T u_f*(r) for token r
    r, t = 7, 1
    expected = q[r] * (E[t, r] @ E[t, r]) * (U[t] @ U[t, labels[r]])
    assert torch.allclose(signal[t, :, r], expected, atol=1e-12, rtol=0)


@pytest.mark.parametrize("kind", memory.KINDS)
@pytest.mark.parametrize("scheme", ["uniform", "power", "threshold", "per_trial", "per_trial_and_d"])
def test_fast_error_equals_brute_force(setup, kind, scheme):
    p, labels, E, U = setup
    d_grid = [2, 5, 11, 30]
    rng = np.random.default_rng(0)
    q = {"uniform": memory.uniform_weights(N), "power": memory.power_weights(p, 1.0),
         "threshold": memory.scheme_weights("threshold", p, d_grid, fraction=0.5),
         "per_trial": rng.random((3, N)), "per_trial_and_d": rng.random((3, 4, N))}[scheme]
    fast = memory.population_error(q, p, labels, E, U, d_grid, kind=kind).numpy()
    np.testing.assert_allclose(fast, brute_force_error(q, p, labels, E, U, d_grid, kind), atol=1e-12)


@pytest.mark.parametrize("kind", memory.KINDS)
def test_several_weightings_at_once_equal_one_at_a_time(setup, kind):
    p, labels, E, U = setup
    d_grid = [3, 8, 30]
    qs = [memory.uniform_weights(N), memory.scheme_weights("threshold", p, d_grid, fraction=0.5),
          memory.power_weights(p, 2.0), np.random.default_rng(2).random((3, 3, N))]
    together = memory.population_errors(qs, p, labels, E, U, d_grid, kind=kind)
    for q, err in zip(qs, together, strict=True):
        assert_same_errors(err, memory.population_error(q, p, labels, E, U, d_grid, kind=kind))


def test_orthonormal_inputs_with_d_at_least_N_recall_everything():
    d = 48
    gaussian = torch.randn(2, d, d, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    E = torch.linalg.qr(gaussian).Q[:, :N]                       # N orthonormal rows per trial
    _, U = memory.memory_embeddings(N, M, d, seed=1, trials=2, kind="sphere", dtype=torch.float64)
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    q = np.random.default_rng(1).random(N) + 0.1
    assert memory.population_error(q, p, labels, E, U).abs().max().item() == 0.0


def test_ties_count_as_errors(setup):
    p, labels, E, U = setup
    errors = memory.population_error(np.zeros(N), p, labels, E, U, [4, 30])
    assert torch.allclose(errors, torch.ones_like(errors))


def test_float32_matches_float64(setup):
    p, labels, E, U = setup
    q = memory.power_weights(p, 1.0)
    e64 = memory.population_error(q, p, labels, E, U, [5, 30])
    e32 = memory.population_error(q, p, labels, E.float(), U.float(), [5, 30])
    assert torch.allclose(e32, e64, atol=1e-6)


def test_error_scan_does_not_depend_on_chunking():
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    d_grid = [4, 9, 20]
    q = memory.scheme_weights("threshold", p, d_grid, fraction=0.5)
    whole = memory.error_scan(q, p, labels, M, d_grid, seed=5, trials=5)
    one_by_one = memory.error_scan(q, p, labels, M, d_grid, seed=5, trials=5, max_bytes=1)
    assert_same_errors(whole, one_by_one)
    E, U = memory.memory_embeddings(N, M, 20, seed=5, trials=5)
    assert_same_errors(whole, memory.population_error(q, p, labels, E, U, d_grid))
    both = memory.error_scans([q, p], p, labels, M, d_grid, seed=5, trials=5, max_bytes=1)
    assert_same_errors(both[0], whole)
    assert_same_errors(both[1], memory.population_error(p, p, labels, E, U, d_grid))


def test_embeddings_laws_and_reproducibility():
    g = memory.embeddings(2000, 50, seed=0, trials=2)
    assert g.shape == (2, 2000, 50)
    assert abs(g.var().item() * 50 - 1) < 0.02
    s = memory.embeddings(10, 7, seed=0, kind="sphere", dtype=torch.float64)
    assert torch.allclose(s.norm(dim=-1), torch.ones(1, 10, dtype=torch.float64))
    chunk = memory.embeddings(10, 7, seed=4, trials=2, first_trial=3)
    assert torch.equal(chunk, memory.embeddings(10, 7, seed=4, trials=5)[3:])
    E, U = memory.memory_embeddings(10, 10, 7, seed=4)
    assert not torch.equal(E, U)


def test_concurrent_draw_equals_one_trial_at_a_time():
    """Trials are drawn on several threads at once; each must still be its own generator's draw."""
    together = memory.embeddings(300, 40, seed=9, trials=6, dtype=torch.float64)
    one_by_one = torch.cat([memory.embeddings(300, 40, seed=9, trials=1, first_trial=t, dtype=torch.float64)
                            for t in range(6)])
    assert torch.equal(together, one_by_one)
    previous = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert torch.equal(memory.embeddings(300, 40, seed=9, trials=6, dtype=torch.float64), together)
    finally:
        torch.set_num_threads(previous)


def test_weighting_schemes():
    np.testing.assert_array_equal(memory.threshold_weights(5, 2), [1, 1, 0, 0, 0])
    assert memory.threshold_weights(5, [0, 3]).sum(1).tolist() == [0, 3]
    counts = np.array([[0, 3, 3, 1, 5], [2, 0, 0, 0, 0]])
    np.testing.assert_array_equal(memory.top_seen_weights(counts, 2), [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]])
    assert memory.top_seen_weights(counts, [1, 2, 9]).shape == (2, 3, 5)
    np.testing.assert_array_equal(memory.seen_weights(counts[1]), [1, 0, 0, 0, 0])
    p = zipf.zipf_probs(5, 1.0)
    np.testing.assert_allclose(memory.power_weights(p, 2.0), p**2)
    assert memory.scheme_weights("threshold", p, [8, 16, 40]).shape == (1, 3, 5)


@pytest.mark.parametrize("call, message", [
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"], a["E"], a["U"], kind="ball"), "kind"),
    (lambda a: memory.population_error(a["q"][:5], a["p"], a["labels"], a["E"], a["U"]), "q must have shape"),
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"], a["E"], a["U"], [5, 3]), "increasing"),
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"], a["E"], a["U"], [31]), "exceed"),
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"] + 5, a["E"], a["U"]), "labels"),
    (lambda a: memory.population_error(a["q"], -a["p"], a["labels"], a["E"], a["U"]), "p must"),
    (lambda a: memory.population_error(a["q"] * np.nan, a["p"], a["labels"], a["E"], a["U"]), "q must be finite"),
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"], a["E"] * np.inf, a["U"]), "not finite"),
    (lambda a: memory.population_error(a["q"], a["p"], a["labels"], a["E"], a["U"][:1]), "share"),
    (lambda a: memory.embeddings(3, 0, seed=0), "d must"),
    (lambda a: memory.scheme_weights("power", a["p"], rho=-1), "rho"),
    (lambda a: memory.scheme_weights("threshold", a["p"]), "d_grid"),
])
def test_validation_errors_name_the_parameter(setup, call, message):
    p, labels, E, U = setup
    with pytest.raises(ValueError, match=message):
        call({"q": memory.power_weights(p, 1.0), "p": p, "labels": labels, "E": E, "U": U})
    with pytest.raises(TypeError, match="E must be a torch.Tensor"):
        memory.population_error(p, p, labels, E.numpy(), U)


def test_any_device_keeps_the_numbers(setup):
    p, labels, E, U = setup
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    results = [memory.population_error(p, p, labels, E.to(dev), U.to(dev), [7, 30]).cpu() for dev in devices]
    assert all(torch.allclose(r, results[0], atol=1e-12) for r in results)


def test_thresholded_error_follows_the_predicted_exponent():
    # N = 2000, alpha = 2, P = d/8 on 8 dimensions from 16 to 512, 20 trials: slope -(alpha-1) = -1.
    n, alpha = 2000, 2.0
    p, labels = zipf.zipf_probs(n, alpha), zipf.mod_labels(n, M)
    d_grid = memory.log_grid(16, 512, 8)
    q = memory.scheme_weights("threshold", p, d_grid)
    errors = memory.error_scan(q, p, labels, M, d_grid, seed=0, trials=20).numpy()
    fit = fitting.fit_power_law(d_grid, errors.mean(0))
    assert abs(fit.slope - interference.scheme_exponent("threshold", alpha)) < 0.15, fit


def test_registered_sweep_experiment_returns_rows():
    rows = memory.error_vs_d(N=50, d_min=5, d_max=40, n_d=3, trials=2, scheme="power")
    assert [row["d"] for row in rows] == [5, 14, 40]
    assert all(0 <= row["error_mean"] <= 1 for row in rows)
