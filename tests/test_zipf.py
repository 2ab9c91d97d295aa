"""The Zipf data model: exact sums against brute force, sampling against the law, validation."""

import itertools
from collections import Counter

import numpy as np
import pytest

from assocmem import zipf


@pytest.mark.parametrize("N, alpha", [(1, 2.0), (7, 0.0), (1000, 0.5), (1000, 2.0), (50, 3.7)])
def test_probs_normalised_and_non_increasing(N, alpha):
    p = zipf.zipf_probs(N, alpha)
    assert p.shape == (N,)
    assert p.sum() == pytest.approx(1.0, abs=1e-12)
    assert np.all(np.diff(p) <= 0)
    ratio = p[0] / p[-1]
    assert ratio == pytest.approx(N**alpha)


def test_uniform_when_alpha_is_zero():
    np.testing.assert_allclose(zipf.zipf_probs(8, 0.0), np.full(8, 1 / 8))


def test_sampling_frequencies_match_the_law():
    N, alpha, T = 50, 1.5, 400_000
    freq = zipf.token_counts(zipf.sample_tokens(N, alpha, T, seed=11), N) / T
    p = zipf.zipf_probs(N, alpha)
    # Each frequency is within 5 binomial standard deviations of p(x).
    assert np.all(np.abs(freq - p) <= 5 * np.sqrt(p * (1 - p) / T))


def test_sampling_is_reproducible_and_seeded():
    a = zipf.sample_tokens(100, 2.0, 500, seed=3, trials=4)
    b = zipf.sample_tokens(100, 2.0, 500, seed=3, trials=4)
    c = zipf.sample_tokens(100, 2.0, 500, seed=4, trials=4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.shape == (4, 500) and a.min() >= 0 and a.max() < 100


def test_single_sequence_is_a_prefix_of_a_longer_one():
    short = zipf.sample_tokens(30, 1.2, 40, seed=9)
    long = zipf.sample_tokens(30, 1.2, 400, seed=9)
    np.testing.assert_array_equal(short, long[:40])


def test_token_counts_match_counter():
    tokens = zipf.sample_tokens(20, 1.0, 300, seed=1, trials=3)
    counts = zipf.token_counts(tokens, 20)
    for row, tok in zip(counts, tokens, strict=True):
        expected = Counter(tok.tolist())
        assert row.tolist() == [expected.get(i, 0) for i in range(20)]


def test_tail_mass_against_brute_force():
    N, alpha = 40, 1.3
    p = zipf.zipf_probs(N, alpha)
    k = np.arange(N + 1)
    np.testing.assert_allclose(zipf.tail_mass(N, alpha, k), [p[kk:].sum() for kk in k], atol=1e-15)


@pytest.mark.parametrize("N, T, alpha", [(3, 4, 1.0), (4, 3, 2.0), (2, 6, 0.0)])
def test_distinct_and_unseen_expectations_by_enumeration(N, T, alpha):
    """Enumerate all N**T sequences and average the statistics with their probabilities."""
    p = zipf.zipf_probs(N, alpha)
    distinct = unseen = 0.0
    for seq in itertools.product(range(N), repeat=T):
        weight = np.prod(p[list(seq)])
        seen = set(seq)
        distinct += weight * len(seen)
        unseen += weight * sum(p[x] for x in range(N) if x not in seen)
    assert zipf.expected_distinct(N, alpha, [T])[0] == pytest.approx(distinct, rel=1e-12)
    assert zipf.expected_unseen_mass(N, alpha, [T])[0] == pytest.approx(unseen, rel=1e-12)


@pytest.mark.parametrize("alpha", [1.5, 2.0, 3.0])
def test_asymptotic_laws_agree_with_exact_sums_at_large_T(alpha):
    """Laws are for N = inf: the finite-N gap is of relative order (k/N)**(alpha-1) (3% at alpha=1.5)."""
    N, T = 10**6, [10**4]
    k = [1000]
    assert zipf.tail_mass_law(alpha, k)[0] == pytest.approx(zipf.tail_mass(N, alpha, k)[0], rel=0.05)
    assert zipf.expected_distinct_law(alpha, T)[0] == pytest.approx(zipf.expected_distinct(N, alpha, T)[0],
                                                                    rel=0.03)
    assert zipf.expected_unseen_mass_law(alpha, T)[0] == pytest.approx(
        zipf.expected_unseen_mass(N, alpha, T)[0], rel=0.03)


def test_first_occurrence_and_seen_curves_against_prefix_counts():
    N, T = 60, 500
    tokens = zipf.sample_tokens(N, 1.1, T, seed=5, trials=3)
    first = zipf.first_occurrence(tokens, N)
    for trial in range(3):
        for x in range(N):
            hits = np.flatnonzero(tokens[trial] == x)
            assert first[trial, x] == (hits[0] if hits.size else T)
    p = zipf.zipf_probs(N, 1.1)
    grid = [1, 7, 50, 500]
    distinct, unseen = zipf.seen_curves(tokens, p, grid)
    for j, t in enumerate(grid):
        seen = zipf.token_counts(tokens[:, :t], N) > 0
        np.testing.assert_array_equal(distinct[:, j], seen.sum(axis=1))
        np.testing.assert_allclose(unseen[:, j], (p * ~seen).sum(axis=1))


def test_rank_frequency_is_sorted_and_normalised():
    rf = zipf.rank_frequency(zipf.sample_tokens(30, 2.0, 1000, seed=0, trials=2), 30)
    assert np.all(np.diff(rf, axis=-1) <= 0)
    np.testing.assert_allclose(rf.sum(axis=-1), 1.0)


def test_labels():
    np.testing.assert_array_equal(zipf.mod_labels(7, 5), [1, 2, 3, 4, 0, 1, 2])
    labels = zipf.random_labels(1000, 3, seed=2)
    assert set(labels.tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(labels, zipf.random_labels(1000, 3, seed=2))


@pytest.mark.parametrize("call, match", [
    (lambda: zipf.zipf_probs(0, 2.0), "N must be an integer >= 1"),
    (lambda: zipf.zipf_probs(2.5, 2.0), "N must be an integer"),
    (lambda: zipf.zipf_probs(True, 2.0), "N must be an integer"),
    (lambda: zipf.zipf_probs(10, -1.0), r"alpha must lie in \[0.0, inf\]"),
    (lambda: zipf.zipf_probs(10, float("nan")), "alpha must be finite"),
    (lambda: zipf.zipf_probs(10, float("inf")), "alpha must be finite"),
    (lambda: zipf.zipf_probs(10, "2"), "alpha must be a real number"),
    (lambda: zipf.sample_tokens(10, 2.0, 0, seed=0), "T must be an integer >= 1"),
    (lambda: zipf.sample_tokens(10, 2.0, 5, seed=-1), "seed must be an integer >= 0"),
    (lambda: zipf.sample_tokens(10, 2.0, 5, seed=0, trials=0), "trials must be an integer >= 1"),
    (lambda: zipf.token_counts(np.array([0, 10]), 10), r"tokens must be 0-based indices in \[0, 9\]"),
    (lambda: zipf.token_counts(np.array([], dtype=int), 10), "tokens must be a non-empty integer array"),
    (lambda: zipf.tail_mass(10, 2.0, [11]), r"k must lie in \[0, N=10\]"),
    (lambda: zipf.tail_mass_law(1.0, [3]), r"alpha must lie in \(1.0, inf\]"),
    (lambda: zipf.expected_unseen_mass_law(0.5, [3]), r"alpha must lie in \(1.0"),
    (lambda: zipf.expected_distinct(10, 2.0, [-1]), "T must contain integers >= 0"),
    (lambda: zipf.expected_distinct_law(2.0, [1.5]), "T must contain integers"),
    (lambda: zipf.mod_labels(10, 0), "M must be an integer >= 1"),
    (lambda: zipf.seen_curves(np.zeros((2, 5), int), zipf.zipf_probs(3, 1.0), [6]), "T_grid must not exceed"),
])
def test_validation_errors_name_the_parameter(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


# --- issue 13: seen_curves checks its tokens (by name) before comparing T_grid with their length

@pytest.mark.parametrize("tokens", [None, "x", np.array([], dtype=np.int64), [0.5, 1.5]])
def test_seen_curves_names_bad_tokens(tokens):
    with pytest.raises(ValueError, match="tokens must be a non-empty integer array"):
        zipf.seen_curves(tokens, zipf.zipf_probs(5, 1.0), [1])


def test_seen_curves_refuses_a_huge_result_by_name(monkeypatch):
    monkeypatch.setenv("ASSOCMEM_MAX_BYTES", "1000")
    with pytest.raises(ValueError, match="tokens, T_grid: this call needs about"):
        zipf.seen_curves(np.zeros((4, 50), dtype=np.int64), zipf.zipf_probs(10, 1.0), np.arange(1, 51))


@pytest.mark.parametrize("N", ["12", None, 2.5, 0])
def test_tail_mass_refuses_a_bad_vocabulary_size_by_name(N):
    """Fuzz findings: a string N gave numpy's UFuncTypeError, None a comparison TypeError."""
    with pytest.raises((ValueError, TypeError), match=r"\bN\b"):
        zipf.tail_mass(N, 1.5, [0, 1])
