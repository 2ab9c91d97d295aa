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
    np.testing.assert_array_equal(memory.top_seen_weights(counts, 2, count_ties="index"),
                                  [[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]])
    assert memory.top_seen_weights(counts, [1, 2, 9]).shape == (2, 3, 5)
    np.testing.assert_array_equal(memory.seen_weights(counts[1]), [1, 0, 0, 0, 0])
    p = zipf.zipf_probs(5, 1.0)
    np.testing.assert_allclose(memory.power_weights(p, 2.0), p**2)
    assert memory.scheme_weights("threshold", p, [8, 16, 40]).shape == (1, 3, 5)


def test_threshold_scheme_rounds_d_over_8_down():
    """P = floor(d/8) on dimensions that are not multiples of 8 (ceil or round would store more)."""
    p = zipf.zipf_probs(40, 2.0)
    d_grid = [7, 9, 15, 17, 23, 31]
    stored = memory.scheme_weights("threshold", p, d_grid)[0].sum(-1)
    np.testing.assert_array_equal(stored, [0, 1, 1, 2, 2, 3])
    stored = memory.scheme_weights("threshold", p, [10, 29], fraction=1 / 3)[0].sum(-1)
    np.testing.assert_array_equal(stored, [3, 9])


def test_top_seen_weights_keeps_a_top_set_whatever_the_tie_rule():
    counts = np.random.default_rng(0).integers(0, 4, size=(50, 12))       # many ties, some unseen
    for rule in memory.COUNT_TIES:
        kept = memory.top_seen_weights(counts, [0, 3, 6, 12], count_ties=rule, seed=1).astype(bool)
        assert np.array_equal(kept.sum(-1), np.minimum([0, 3, 6, 12], (counts > 0).sum(-1, keepdims=True)))
        assert np.all(kept[:, 1:] >= kept[:, :-1])                       # nested in P
        for row, keep in zip(counts, kept[:, 2], strict=True):           # every kept count >= every dropped seen one
            dropped = row[~keep & (row > 0)]
            assert dropped.size == 0 or row[keep].min() >= dropped.max()


def test_random_count_ties_are_seeded_and_ignore_the_token_index():
    """Equal counts carry no information on which token is more frequent: with the default rule each
    tied token is kept equally often (binomial), never preferentially the smaller index."""
    counts = np.ones((4000, 10), dtype=np.int64)
    kept = memory.top_seen_weights(counts, 3, seed=0)
    assert np.array_equal(kept, memory.top_seen_weights(counts, 3, seed=0))
    assert not np.array_equal(kept, memory.top_seen_weights(counts, 3, seed=1))
    rate, se = kept.mean(0), np.sqrt(0.3 * 0.7 / 4000)
    assert np.all(np.abs(rate - 0.3) < 5 * se), rate
    by_index = memory.top_seen_weights(counts, 3, count_ties="index")
    assert np.array_equal(by_index.sum(0), [4000, 4000, 4000] + [0] * 7)


def test_recall_is_the_argmax_of_the_scores_and_its_error_is_the_first_class_rule(setup):
    p, labels, E, U = setup
    for q in (memory.power_weights(p, 1.0), np.zeros(N), memory.threshold_weights(N, 3)):
        predicted = memory.recall(q, labels, E, U)
        s = memory.scores(q, labels, E, U)
        assert torch.equal(s.gather(1, predicted[:, None])[:, 0], s.amax(1))
        first_max = (s == s.amax(1, keepdim=True)).to(torch.int8).argmax(1)   # the first maximal class
        assert torch.equal(predicted, first_max)
        from_recall = (predicted.numpy() != labels) @ p
        np.testing.assert_allclose(memory.population_error(q, p, labels, E, U, ties="first")[:, 0].numpy(),
                                   from_recall, atol=1e-12)
    at_large_d = memory.recall(memory.uniform_weights(N), labels, *memory.memory_embeddings(
        N, M, 4000, seed=0, dtype=torch.float64))
    assert (at_large_d.numpy() == labels).mean() > 0.95                        # argmin would be 0 % right


def test_score_ties_as_errors_or_as_argmax_decides():
    """Nothing stored: every score is 0. Ties as errors: error 1; the papers' argmax: class 0 is
    predicted everywhere, so the error is the mass of the tokens of the other classes."""
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    E, U = memory.memory_embeddings(N, M, 16, seed=0, trials=2, dtype=torch.float64)
    torch.testing.assert_close(memory.population_error(np.zeros(N), p, labels, E, U),
                               torch.full((2, 1), p.sum(), dtype=torch.float64))
    first = memory.population_error(np.zeros(N), p, labels, E, U, [4, 16], ties="first")
    torch.testing.assert_close(first, torch.full((2, 2), 1 - p[labels == 0].sum(), dtype=torch.float64))
    scan = memory.error_scan(np.zeros(N), p, labels, M, [4, 16], seed=0, trials=2, ties="first")
    torch.testing.assert_close(scan, first.float().double(), atol=1e-6, rtol=0)
    # a tie between the true class and a larger class index is right under argmax, wrong as an error
    q = memory.power_weights(p, 1.0)
    assert torch.allclose(memory.population_error(q, p, labels, E, U, ties="first"),
                          memory.population_error(q, p, labels, E, U))    # random scores: no ties


def test_error_scan_uses_each_chunk_s_own_per_trial_weights():
    """Per-trial weights (trials, N) must follow their trials into every chunk: one trial per chunk
    against all trials at once (a stale chunk, e.g. always the first rows, changes the errors)."""
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    q = np.random.default_rng(3).random((5, N)) ** 6                      # very different per trial
    d_grid = [4, 9, 20]
    chunked = memory.error_scan(q, p, labels, M, d_grid, seed=5, trials=5, max_bytes=1, dtype=torch.float64)
    E, U = memory.memory_embeddings(N, M, 20, seed=5, trials=5, dtype=torch.float64)
    assert_same_errors(chunked, memory.population_error(q, p, labels, E, U, d_grid))
    stale = torch.cat([memory.population_error(q[:1], p, labels, E[t:t + 1], U[t:t + 1], d_grid)
                       for t in range(5)])
    assert (stale - chunked).abs().max() > 10 * N * torch.finfo(torch.float64).eps   # the test can tell


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


# --- issue 13: every error names the caller's parameter (q, qs[i], p), before any draw

def _scans(qs, p, labels):
    return memory.error_scans(qs, p, labels, M, [4], seed=0, trials=2)


def _scan(q, p, labels):
    return memory.error_scan(q, p, labels, M, [4], seed=0, trials=2)


@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda p, l, E, U: _scans(None, p, l), TypeError, "qs must be a non-empty list"),
    (lambda p, l, E, U: _scans("x", p, l), TypeError, "qs must be a non-empty list"),
    (lambda p, l, E, U: _scans([p, ["a"] * N], p, l), TypeError, r"qs\[1\] must be a real"),
    (lambda p, l, E, U: _scans([np.where(p > 0.1, np.nan, p)], p, l), ValueError, r"qs\[0\] must be finite"),
    (lambda p, l, E, U: _scans([p.reshape(1, 1, 1, N)], p, l), ValueError, r"qs\[0\] must have shape"),
    (lambda p, l, E, U: _scan(p[None, None, None], p, l), ValueError, "q must have shape"),
    (lambda p, l, E, U: _scan("x", p, l), TypeError, "q must be a real"),
    (lambda p, l, E, U: _scan(p, ["a"] * N, l), TypeError, "p must be a real"),
    (lambda p, l, E, U: memory.power_weights("x", 1.0), TypeError, "p must be a real"),
    (lambda p, l, E, U: memory.population_error(p[:-1], p, l, E, U), ValueError, "q must have shape"),
    (lambda p, l, E, U: memory.population_errors([p, p[:-1]], p, l, E, U), ValueError, r"qs\[1\] must have shape"),
])
def test_errors_name_the_callers_parameter(setup, call, error, message):
    p, labels, E, U = setup
    with pytest.raises(error, match=message):
        call(p, labels, E, U)


def test_population_errors_takes_any_collection_of_weightings(setup):
    p, labels, E, U = setup
    weights = {"power": p, "seen": p > 0.01}  # dict values, and a boolean mask read as 0/1
    from_values = memory.population_errors(weights.values(), p, labels, E, U)
    from_list = memory.population_errors([p, (p > 0.01).astype(np.float64)], p, labels, E, U)
    for a, b in zip(from_values, from_list, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)  # the same kernels on the same shapes


def test_signal_and_interference_refuses_non_finite_embeddings(setup):
    p, labels, E, U = setup
    bad = E.clone()
    bad[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="E, U and q must be finite"):
        memory.signal_and_interference(p, labels, bad, U)


def test_threshold_scheme_with_a_huge_fraction_stores_every_token():
    p = zipf.zipf_probs(N, ALPHA)
    np.testing.assert_array_equal(memory.scheme_weights("threshold", p, [4, 8], fraction=1e300), np.ones((1, 2, N)))
    # and the cap at N changes nothing where floor(fraction d) <= N
    np.testing.assert_array_equal(memory.scheme_weights("threshold", p, [4, 8], fraction=2.0),
                                  memory.threshold_weights(N, [8, 16])[None])
    np.testing.assert_array_equal(memory.scheme_weights("threshold", p, [40, 80], fraction=1.0),
                                  np.ones((1, 2, N)))


def test_counts_with_an_empty_axis_are_refused_by_name():
    with pytest.raises(ValueError, match="counts must have a last axis of N tokens"):
        memory.seen_weights(np.zeros((0, 5), dtype=np.int64))
