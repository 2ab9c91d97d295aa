"""Memories built from T samples: nested data, count-based weights, the (d, T) scan, the experiments."""

import itertools

import numpy as np
import pytest
import torch

from assocmem import finite_sample as fs
from assocmem import fitting, memory, sweep, zipf
from assocmem.theory import finite_sample as th

# --------------------------------------------------------------------------- nested data

def test_nested_counts_are_the_counts_of_prefixes_of_one_draw():
    T_grid = [3, 10, 50]
    counts = fs.nested_counts(20, 1.5, T_grid, trials=4, seed=7)
    tokens = zipf.sample_tokens(20, 1.5, 50, 7, trials=4)
    assert counts.shape == (4, 3, 20)
    for i, T in enumerate(T_grid):
        assert np.array_equal(counts[:, i], zipf.token_counts(tokens[:, :T], 20))
    assert np.array_equal(counts.sum(-1), np.broadcast_to(T_grid, (4, 3)))
    assert np.all(np.diff(counts, axis=1) >= 0)


def test_one_nested_trial_equals_independent_draws_of_each_size():
    counts = fs.nested_counts(30, 1.0, [5, 40, 200], trials=1, seed=3)[0]
    for i, T in enumerate([5, 40, 200]):
        assert np.array_equal(counts[i], zipf.token_counts(zipf.sample_tokens(30, 1.0, T, 3), 30))


def test_nested_prefixes_have_the_law_of_independent_draws():
    T_grid = [10, 100]
    counts = fs.nested_counts(50, 1.0, T_grid, trials=4000, seed=0)
    unseen = ((counts == 0) * zipf.zipf_probs(50, 1.0)).sum(-1)
    standard_error = unseen.std(0) / np.sqrt(4000)
    assert np.all(np.abs(unseen.mean(0) - th.excess_error(50, 1.0, T_grid)) < 4 * standard_error)


# --------------------------------------------------------------------------- weights

def test_count_weights_of_each_scheme():
    counts = np.array([[5, 0, 2, 2, 1, 0]])
    assert np.array_equal(fs.count_weights(counts, "seen"), [[1, 0, 1, 1, 1, 0]])
    top = fs.count_weights(counts, "top", [12, 24, 36, 120], ratio=12, count_ties="index")
    assert top.shape == (1, 4, 6)
    assert np.array_equal(top[0], [[1, 0, 0, 0, 0, 0], [1, 0, 1, 0, 0, 0],
                                   [1, 0, 1, 1, 0, 0], [1, 0, 1, 1, 1, 0]])
    assert np.allclose(fs.count_weights(counts, "empirical", rho=1.0), counts / 10)
    assert np.allclose(fs.count_weights(counts, "empirical", rho=0.0), fs.count_weights(counts, "seen"))
    assert np.allclose(fs.empirical_power_weights(counts, 0.5), np.sqrt(counts / 10))


def test_top_scheme_stores_floor_of_d_over_ratio():
    """Dimensions that are not multiples of the ratio: P = floor(d / ratio) (ceil would store one more)."""
    counts = np.arange(40, 0, -1)[None]                           # every token seen, no ties
    stored = fs.count_weights(counts, "top", [11, 13, 25, 35, 47], ratio=12)[0].sum(-1)
    np.testing.assert_array_equal(stored, [0, 1, 2, 2, 3])
    stored = fs.count_weights(counts, "top", [7, 10], ratio=2.5)[0].sum(-1)
    np.testing.assert_array_equal(stored, [2, 4])


def test_random_count_ties_do_not_use_the_frequency_rank():
    """With a few samples many counts tie at 1; breaking them by token index picks the truly frequent
    tokens (the index is the Zipf rank) and lowers the error: information the counts do not contain.
    The seeded random rule is the default and the two differ beyond the noise."""
    args = dict(N=200, alpha=1.5, d_grid=[120], T_grid=[20], M=5, ratio=12, trials=200, seed=0)
    fair = fs.joint_error(**args)[:, 0, 0]
    by_rank = fs.joint_error(**args, count_ties="index")[:, 0, 0]
    assert np.array_equal(fair, fs.joint_error(**args, count_ties="random")[:, 0, 0])
    gap = fair - by_rank
    assert gap.mean() > 4 * gap.std(ddof=1) / np.sqrt(gap.size), (gap.mean(), gap.std())


# --------------------------------------------------------------------------- exact identity

def all_samples(N, alpha, T):
    """Every sequence of T tokens as counts, with its probability."""
    p = zipf.zipf_probs(N, alpha)
    sequences = np.array(list(itertools.product(range(N), repeat=T)))
    return zipf.token_counts(sequences, N), p[sequences].prod(axis=1)


@pytest.mark.parametrize(("scheme", "rho"), [("seen", 1.0), ("empirical", 1.0), ("empirical", 0.3)])
@pytest.mark.parametrize(("N", "alpha", "T"), [(4, 1.0, 3), (3, 2.0, 5)])
def test_excess_error_is_exact_for_an_orthogonal_memory(scheme, rho, N, alpha, T):
    counts, probability = all_samples(N, alpha, T)
    weights = fs.count_weights(counts, scheme, rho=rho)[None]  # one trial, one memory per sample
    labels = zipf.mod_labels(N, 2)
    errors = fs.error_grid(weights, zipf.zipf_probs(N, alpha), labels, 2, [N], 0, kind="orthonormal",
                           dtype=torch.float64)[0, :, 0]
    infinite = fs.error_grid(np.ones((1, 1, N)), zipf.zipf_probs(N, alpha), labels, 2, [N], 0,
                             kind="orthonormal", dtype=torch.float64)[0, 0, 0]
    assert infinite == 0.0
    assert probability @ errors - infinite == pytest.approx(th.excess_error(N, alpha, [T])[0], rel=1e-12)


def test_simulated_excess_error_matches_the_identity_on_an_orthogonal_memory():
    T_grid = [10, 100, 1000]
    errors = fs.joint_error(100, 1.0, [100], T_grid, scheme="seen", trials=300, seed=1, kind="orthonormal")
    mean, standard_error = errors[:, :, 0].mean(0), errors[:, :, 0].std(0) / np.sqrt(300)
    assert np.all(np.abs(mean - th.excess_error(100, 1.0, T_grid)) < 4 * standard_error + 1e-12)


# --------------------------------------------------------------------------- the scan

def brute_force_joint_error(N, alpha, d_grid, T_grid, scheme, M, ratio, trials, seed):
    """Explicit d x d matrix W for each trial, T and d; float64; a tie is a miss."""
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    counts = fs.nested_counts(N, alpha, T_grid, trials=trials, seed=seed)
    E, U = memory.memory_embeddings(N, M, max(d_grid), seed, trials=trials, dtype=torch.float64)
    errors = np.zeros((trials, len(T_grid), len(d_grid)))
    for k, i, (j, d) in itertools.product(range(trials), range(len(T_grid)), enumerate(d_grid)):
        q = memory.seen_weights(counts[k, i]) if scheme == "seen" else \
            memory.top_seen_weights(counts[k, i], int(d // ratio), count_ties="index")
        e, u = E[k, :, :d].numpy(), U[k, :, :d].numpy()
        W = sum(q[x] * np.outer(u[labels[x]], e[x]) for x in range(N))
        s = u @ W @ e.T  # (M, N)
        for x in range(N):
            others = np.delete(s[:, x], labels[x])
            errors[k, i, j] += p[x] * (s[labels[x], x] <= others.max())
    return errors


@pytest.mark.parametrize("scheme", ["seen", "top"])
def test_joint_error_equals_an_explicit_matrix_loop(scheme):
    args = dict(N=40, alpha=1.5, d_grid=[7, 13, 30], T_grid=[5, 30, 200])   # d odd: P = floor(d / 2)
    fast = fs.joint_error(**args, scheme=scheme, M=3, ratio=2, trials=3, seed=5, dtype=torch.float64,
                          count_ties="index")
    slow = brute_force_joint_error(**args, scheme=scheme, M=3, ratio=2, trials=3, seed=5)
    assert np.allclose(fast, slow, atol=1e-12)


def test_error_grid_does_not_depend_on_the_chunking():
    """One trial per chunk against all at once: per-trial weights must follow their trials (a stale
    chunk moves an error by at least min p = p(50), far above the ulps summation order can)."""
    counts = fs.nested_counts(50, 1.0, [20, 200], trials=5, seed=0)
    weights = fs.count_weights(counts, "top", [10, 40], ratio=4)
    args = (weights, zipf.zipf_probs(50, 1.0), zipf.mod_labels(50, 5), 5, [10, 40], 2)
    whole = fs.error_grid(*args, dtype=torch.float64)
    np.testing.assert_allclose(fs.error_grid(*args, dtype=torch.float64, max_bytes=1), whole, rtol=0,
                               atol=50 * np.finfo(np.float64).eps)
    first_rows = np.stack([fs.error_grid(weights[:1], *args[1:], dtype=torch.float64)[0]] * 5)
    assert np.abs(first_rows - whole).max() > zipf.zipf_probs(50, 1.0)[-1]


def test_thresholding_exponents_on_a_fast_grid():
    T_grid = [10, 30, 100, 300, 1000]  # large d: the unseen mass dominates
    errors = fs.joint_error(1000, 2.0, [1000], T_grid, trials=10, seed=0)[:, :, 0]
    assert fitting.fit_power_law(T_grid, errors).slope == pytest.approx(th.sample_exponent(2.0), abs=0.1)
    d_grid = [24, 48, 96, 192, 384]  # large T: the tail beyond P = d/12 dominates
    errors = fs.joint_error(1000, 2.0, d_grid, [100_000], trials=10, seed=0)[:, 0]
    assert fitting.fit_power_law(d_grid, errors).slope == pytest.approx(th.threshold_exponent(2.0), abs=0.15)
    predicted = (1 - 1 / 5) * th.threshold_lost_mass(1000, 2.0, d_grid, [100_000])[0]
    assert np.allclose(errors.mean(0), predicted, rtol=0.25)


def test_best_threshold_grows_with_d():
    P_grid, d_grid = [1, 2, 4, 8, 16, 32, 64, 128, 256], [16, 64, 256]
    errors = fs.threshold_error(300, 2.0, d_grid, P_grid, 100_000, trials=10, seed=0)
    assert errors.shape == (10, 9, 3)
    best = fs.best_threshold(errors, P_grid)
    assert np.all(np.diff(best) > 0)
    assert np.all((best >= np.array(d_grid) / 32) & (best <= np.array(d_grid)))


def test_paper_grids_decide_tied_scores_as_argmax_does():
    """At d = 10 the paper's rule stores P = int(10/12) = 0 tokens: every score is 0. Ties as errors give
    1; the paper's argmax predicts class 0 everywhere, right on the mass of the tokens x = 0 mod 5."""
    p, labels = zipf.zipf_probs(1000, 2.0), zipf.mod_labels(1000, 5)
    as_errors = fs.joint_error(1000, 2.0, [10, 24], [100], trials=3, seed=0)
    argmax = fs.joint_error(1000, 2.0, [10, 24], [100], trials=3, seed=0, ties="first")
    np.testing.assert_allclose(as_errors[:, 0, 0], 1.0)
    np.testing.assert_allclose(argmax[:, 0, 0], 1 - p[labels == 0].sum())
    np.testing.assert_allclose(argmax[:, :, 1], as_errors[:, :, 1])          # something stored: no ties
    rows = fs.joint_experiment(N=1000, d_values=(10,), T_max=100, n_T=1, trials=1)
    assert rows[0]["error"] == pytest.approx(1 - p[labels == 0].sum())


def test_best_threshold_reads_the_argmin_of_the_mean():
    errors = np.array([[[0.5, 0.1], [0.2, 0.3], [0.2, 0.4]]])
    assert np.array_equal(fs.best_threshold(errors, [1, 5, 9]), [5, 1])


def test_more_data_hurts_marks_significant_rises_over_the_best_smaller_T():
    rng = np.random.default_rng(0)
    curves = np.array([[0.5, 0.5], [0.3, 0.4], [0.2, 0.4], [0.4, 0.4], [0.2005, 0.3995]])  # (T, d)
    errors = curves[None] + 0.01 * rng.standard_normal((50, 5, 2))
    hurts = fs.more_data_hurts(errors)
    assert hurts.shape == (5, 2)
    assert np.array_equal(hurts[:, 0], [False, False, False, True, False])  # 0.4 after 0.2: worse; 0.2005: noise
    assert not hurts[:, 1].any()
    assert not fs.more_data_hurts(errors, z=1000).any()


def test_storing_every_seen_token_gets_worse_with_data_for_a_heavy_tail_in_a_small_memory():
    T_grid = [30, 3000]
    errors = fs.joint_error(100, 1.0, [16, 1000], T_grid, scheme="seen", trials=60, seed=0)
    hurts = fs.more_data_hurts(errors)
    assert hurts[1, 0] and not hurts[1, 1]


# --------------------------------------------------------------------------- experiments

def test_experiments_are_registered_and_return_tidy_rows():
    registered = sweep.experiments()
    for name in ["finite_sample_joint", "finite_sample_overflow", "finite_sample_best_threshold"]:
        assert name in registered
    rows = fs.overflow_experiment(N=20, d_min=5, d_max=40, n_d=3, T_min=5, T_max=50, n_T=2, trials=2)
    assert len(rows) == 2 * 2 * 3 and set(rows[0]) == {"trial", "T", "d", "error"}
    rows = fs.joint_experiment(N=50, d_values=(12, 24), T_max=100, n_T=3, trials=2)
    assert {row["d"] for row in rows} == {12, 24} and len(rows) == 12
    rows = fs.best_threshold_experiment(N=50, T=100, d_max=40, n_d=2, P_max=20, n_P=3, trials=1)
    assert {row["P"] for row in rows} == {1, 4, 20}


def test_sweep_runs_an_experiment_point():
    table = sweep.run_sweep("finite_sample_joint", sweep.grid(seed=[0, 1], N=[50], d_values=[(12, 24)],
                                                              T_max=[100], n_T=[2], trials=[2]),
                            cache=False, progress=False)
    assert len(table) == 2 * 2 * 2 * 2
    assert table["error"].between(0, 1).all()


# --------------------------------------------------------------------------- validation

@pytest.mark.parametrize(("call", "error"), [
    (lambda: fs.nested_counts(10, 1.0, [10, 5], trials=1, seed=0), ValueError),
    (lambda: fs.nested_counts(10, 1.0, [0, 5], trials=1, seed=0), ValueError),
    (lambda: fs.nested_counts(10, 1.0, [5], trials=0, seed=0), ValueError),
    (lambda: fs.empirical_power_weights([[0, 0]], 1.0), ValueError),
    (lambda: fs.empirical_power_weights([[1.5, 0]], 1.0), TypeError),
    (lambda: fs.empirical_power_weights([[1, 0]], -1.0), ValueError),
    (lambda: fs.count_weights([[1, 0]], "all"), ValueError),
    (lambda: fs.count_weights([[1, 0]], "top"), ValueError),
    (lambda: fs.count_weights([[1, 0]], "top", [12], ratio=0), ValueError),
    (lambda: fs.error_grid(np.ones((1, 3)), [0.5, 0.5, 0.0], [0, 1, 0], 2, [3], 0), ValueError),
    (lambda: fs.error_grid(np.ones((1, 1, 3)), [0.5, 0.5, 0.0], [0, 1, 0], 2, [2], 0, kind="orthonormal"),
     ValueError),
    (lambda: fs.error_grid(np.ones((1, 1, 3)), [0.5, 0.5, 0.0], [0, 1, 0], 2, [3], 0, kind="unit"), ValueError),
    (lambda: fs.joint_error(10, 1.0, [5], [10], scheme="top", trials=1, seed=-1), ValueError),
    (lambda: fs.best_threshold(np.zeros((1, 2, 1)), [1, 2, 3]), ValueError),
    (lambda: fs.more_data_hurts(np.zeros((1, 2, 1))), ValueError),
    (lambda: fs.more_data_hurts(np.zeros((2, 2, 1)), z=-1), ValueError),
])
def test_invalid_inputs_raise_named_errors(call, error):
    with pytest.raises(error):
        call()


# --- issue 13: named errors for max_bytes and empty counts; a tiny ratio keeps every seen token

def test_error_grid_names_max_bytes():
    p = zipf.zipf_probs(12, 1.5)
    for bad, error in (("x", TypeError), (None, TypeError), (0, ValueError)):
        with pytest.raises(error, match="max_bytes must be an integer"):
            fs.error_grid(np.ones((2, 1, 12)), p, np.arange(12) % 3, 3, [2, 4], 0, max_bytes=bad)


def test_count_weights_top_with_a_tiny_ratio_keeps_every_seen_token():
    counts = np.array([[9, 6, 4, 3, 0, 0], [1, 0, 2, 0, 0, 5]])
    top = fs.count_weights(counts, "top", [12, 24], ratio=1e-300)
    np.testing.assert_array_equal(top, np.repeat(fs.count_weights(counts, "seen")[:, None], 2, axis=1))
    with pytest.raises(ValueError, match="counts must have a last axis"):
        fs.count_weights(counts[:0], "top", [12])
