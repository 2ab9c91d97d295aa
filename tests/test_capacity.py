"""Optimised memories of chapter 7: exact storage by LP, the largest stored N, the CDB24 figures, the
phase diagram, and spot checks of the committed data."""

import inspect
import itertools
import math
from math import comb
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from assocmem import capacity as cap
from assocmem import memory, zipf

DATA = Path(__file__).resolve().parents[1] / "data" / "capacity"


def cover_count(N: int, d: int) -> int:
    """Cover's number of dichotomies of N points in general position in R^d by hyperplanes through 0."""
    return 2 * sum(comb(N - 1, k) for k in range(d))


def test_score_basis_reconstructs_the_output_embeddings():
    U = torch.randn(5, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    Q, A = cap.score_basis(U)
    assert Q.shape == (3, 3) and A.shape == (5, 3)
    assert np.allclose(Q @ A.T, U.numpy().T) and np.allclose(Q.T @ Q, np.eye(3))


def test_storable_labelings_of_two_classes_are_covers_count():
    """M = 2: the memory is a linear classifier in R^d, so exactly C(N, d) of the 2^N labelings of N
    points in general position can be stored (6 points in R^2: 12 labelings; in R^3: 32)."""
    generator = torch.Generator().manual_seed(1)
    U = torch.tensor([[1.0, 0.3, -0.2], [-0.4, 1.0, 0.5]], dtype=torch.float64)
    for d in (2, 3):
        E = torch.randn(6, d, dtype=torch.float64, generator=generator)
        stored = sum(cap.stores_exactly(E, U[:, :d], np.array(labels))[0]
                     for labels in itertools.product([0, 1], repeat=6))
        assert stored == cover_count(6, d)


def test_a_stored_memory_recalls_every_token_and_an_overfull_one_is_refused():
    E, U = memory.memory_embeddings(12, 3, 6, seed=2, dtype=torch.float64)
    labels = zipf.mod_labels(12, 3)
    stored, W = cap.stores_exactly(E[0], U[0], labels)
    assert stored
    scores = U[0].numpy() @ W @ E[0].numpy().T                   # (M, N)
    assert np.array_equal(scores.argmax(0), labels)
    ranked = np.sort(scores, axis=0)
    assert np.all(ranked[-1] > ranked[-2])                        # strictly ahead: no ties
    E, U = memory.memory_embeddings(80, 3, 4, seed=2, dtype=torch.float64)
    assert not cap.stores_exactly(E[0], U[0], zipf.mod_labels(80, 3))[0]   # 80 tokens, 8 free parameters


def test_largest_stored_is_the_longest_storable_prefix():
    d, M, seed = 4, 3, 5
    found = cap.largest_stored(d, M, seed, N_max=40)
    E, U = memory.memory_embeddings(40, M, d, seed, dtype=torch.float64)
    labels = zipf.mod_labels(40, M)
    scan = [cap.stores_exactly(E[0, :n], U[0], labels[:n])[0] for n in range(1, 41)]
    expected = max(n for n, ok in zip(range(1, 41), scan, strict=True) if ok)
    assert found["N_star"] == expected and not found["censored"]
    assert all(scan[:expected])                                   # prefix monotonicity held on this draw


def test_additive_largest_stored_matches_the_memory_module_and_is_below_the_optimum():
    d, M, seed = 16, 5, 1
    found = cap.additive_largest_stored(d, M, seed)
    n = found["N_star"]
    E, U = memory.memory_embeddings(4 * d + 8, M, d, seed, dtype=torch.float64)
    labels = zipf.mod_labels(4 * d + 8, M)
    for size, recalled in ((n, True), (n + 1, False)):     # the prefix n is recalled, n + 1 is not
        q = np.zeros(4 * d + 8)
        q[:size] = 1.0
        prefix = np.zeros(4 * d + 8)
        prefix[:size] = 1.0 / size                          # the error on the stored prefix only
        error = memory.population_error(q, prefix, labels, E, U)[0, 0].item()
        assert (error == 0.0) == recalled
    assert n <= cap.largest_stored(d, M, seed)["N_star"]     # an additive memory is one of the W's


def test_one_class_is_trivially_stored():
    E, U = memory.memory_embeddings(30, 1, 3, seed=0, dtype=torch.float64)
    assert cap.stores_exactly(E[0], U[0], np.zeros(30, dtype=int))[0]
    assert np.array_equal(cap.learned_embeddings_vs_M(1, epochs=5, trials=3), np.zeros(3))   # train accepts M = 1


def test_cross_entropy_memory_reaches_zero_error_where_the_lp_stores():
    d, M, N = 8, 5, 16
    E, U = memory.memory_embeddings(N, M, d, seed=4, dtype=torch.float64)
    labels = zipf.mod_labels(N, M)
    assert cap.stores_exactly(E[0], U[0], labels)[0]
    trained = cap.optimised_memory(E, U, labels, np.full(N, 1 / N), steps=1500, lr=0.05)
    scores = trained["scores"][0].numpy()
    assert np.array_equal(scores.argmax(0), labels)
    W = trained["W"][0].numpy()                                   # W = Q Z gives the same scores
    assert np.allclose(U[0].numpy() @ W @ E[0].numpy().T, scores)


def test_lp_memory_error_counts_only_the_unstored_tail_it_misses():
    row = cap.lp_memory_error(8, 5, 60, 2.0, seed=0)
    p = zipf.zipf_probs(60, 2.0)
    tail = p[row["N_star"]:].sum()
    assert 0 <= row["error"] <= tail + 1e-12                   # the stored prefix is all right
    assert row["N_star"] == cap.largest_stored(8, 5, 0, N_max=60)["N_star"]


def test_memory_heatmap_is_a_softmax_beside_its_target():
    out = cap.memory_heatmap(rho=0.0)
    assert out["probabilities"].shape == (5, 10) and np.allclose(out["probabilities"].sum(0), 1)
    assert np.array_equal(out["target"].argmax(0), zipf.mod_labels(10, 5)) and out["target"].sum() == 10
    assert set(np.unique(out["q"])) <= {0.0, 1.0}
    assert np.isclose(cap.memory_heatmap(rho=1.0)["q"].sum(), 1.0)      # p_hat sums to 1 over seen tokens


def test_learned_embeddings_store_few_classes_exactly_at_d_2():
    errors = cap.learned_embeddings_vs_M(2, epochs=200, trials=2)
    assert errors.shape == (2,) and np.all(errors < 0.05)


@pytest.fixture(scope="module")
def cell():
    return pd.DataFrame(cap.phase_cell(N=30, d=6, T=160, alpha=1.0, trials=3, batch_size=16, opt_steps=200))


def test_phase_cell_scores_every_scheme_on_every_trial(cell):
    counts = cell.groupby("scheme").trial.count()
    assert set(counts.index) == set(cap.PHASE_SCHEMES)
    assert counts["top P (P/d best)"] == 3 * len(cap.TOP_FRACTIONS) and counts["SGD"] == 3
    assert cell.error.between(0, 1).all()


def test_phase_winners_take_the_smallest_mean_and_report_their_confidence():
    rows = []
    for trial in range(6):
        rows += [{"d": 10, "T": 100, "alpha": 1.0, "trial": trial, "scheme": "a", "error": 0.1},
                 {"d": 10, "T": 100, "alpha": 1.0, "trial": trial, "scheme": "b", "error": 0.5},
                 {"d": 10, "T": 100, "alpha": 1.0, "trial": trial, "scheme": "top P (P/d best)", "fraction": 0.5,
                  "error": 0.3},
                 {"d": 10, "T": 100, "alpha": 1.0, "trial": trial, "scheme": "top P (P/d best)", "fraction": 1.0,
                  "error": 0.05 + 0.2 * (trial % 2)}]        # mean 0.15: worse than a on average
    winners = cap.phase_winners(pd.DataFrame(rows), n_boot=400)
    assert winners.winner.tolist() == ["a"] and winners.runner_up.tolist() == ["top P (P/d best)"]
    assert winners.gap.iloc[0] == pytest.approx(0.05)
    assert 0.5 < winners.confidence.iloc[0] < 1.0               # some resamples favour the noisy scheme
    tie = pd.DataFrame([{"d": 1, "T": 1, "alpha": 1.0, "trial": t, "scheme": s, "error": 0.0}
                        for t in range(3) for s in ("x", "y")] +
                       [{"d": 1, "T": 1, "alpha": 1.0, "trial": t, "scheme": "z", "error": 0.2} for t in range(3)])
    tied = cap.phase_winners(tie, n_boot=50).iloc[0]
    assert tied.winner == "tie" and tied.tied == "x = y" and tied.confidence == 1.0 and tied.runner_up == "z"


def test_committed_phase_and_zipf_rows_recompute():
    """A random cheap cell of each committed table (d = 5, T = 128 for the phase diagram; d = 8, N/d <= 4
    under Zipf), recomputed through the same experiment. Float64 throughout; the one-pass float64 runs and
    LPs are deterministic here, and across CPU code paths an error moves by a whole token's mass or not at
    all, so a flipped token (mass >= p(N) > 1e-4) would show."""
    phase, zipf_rows = DATA / "phase.csv", DATA / "zipf_error.csv"
    if not (phase.exists() and zipf_rows.exists()):
        pytest.skip("phase.csv / zipf_error.csv not committed")
    rng = np.random.default_rng(11)
    table = pd.read_csv(phase)
    alpha = rng.choice(table.alpha.unique())
    cell = table[(table.d == 5) & (table["T"] == 128) & (table.alpha == alpha)]
    again = pd.DataFrame(cap.phase_experiment(N=50, d=5, T=128, alpha=float(alpha)))
    merged = cell.merge(again, on=["trial", "scheme", "fraction"], suffixes=("", "_again"))
    assert len(merged) == len(cell) and np.allclose(merged.error, merged.error_again, atol=1e-9)
    table = pd.read_csv(zipf_rows)
    ratio = int(rng.choice([1, 2, 4]))
    rows = table[(table.d == 8) & (table.N == 8 * ratio)]
    again = pd.DataFrame(cap.zipf_error_experiment(d=8, ratio=ratio))
    merged = rows.merge(again, on=["trial", "scheme"], suffixes=("", "_again"))
    assert len(merged) == len(rows) and np.allclose(merged.error, merged.error_again, atol=1e-9)


def test_overflow_agreement_predicts_seen_above_the_overflow_dimension():
    rows = []
    for d, seen_error, top_error in ((2, 0.5, 0.3), (400, 0.1, 0.1)):
        for trial in range(3):
            rows += [{"d": d, "T": 1000, "alpha": 2.0, "trial": trial, "scheme": "q = 1 (seen)", "error": seen_error},
                     {"d": d, "T": 1000, "alpha": 2.0, "trial": trial, "scheme": "top P (P/d best)",
                      "fraction": 1.0, "error": top_error}]
    out = cap.overflow_agreement(pd.DataFrame(rows), N=100, n_boot=20)
    K = zipf.expected_distinct(100, 2.0, [1000])[0]
    assert np.allclose(out.d_star, K / 1.3)
    assert out.predicted.tolist() == ["top P (P/d best)", "q = 1 (seen)"]      # d = 2 overflows, 400 does not
    assert out.winner.tolist() == ["top P (P/d best)", "tie"] and out.consistent.all()


@pytest.mark.parametrize(("name", "d_max"), [("largest_stored_M5.csv", 16), ("largest_stored_Md.csv", 8)])
def test_committed_largest_stored_rows_recompute(name, d_max):
    """Three random rows of each committed table, recomputed from their configuration (rows with
    d <= d_max, so the test costs seconds; the larger rows come from the same function)."""
    path = DATA / name
    if not path.exists():
        pytest.skip(f"{path} not committed")
    table = pd.read_csv(path)
    table = table[table.d <= d_max]
    rng = np.random.default_rng(len(table))
    for _, row in table.iloc[rng.choice(len(table), size=min(3, len(table)), replace=False)].iterrows():
        again = cap.largest_stored(int(row.d), int(row.classes), int(row.seed) + int(row.trial))
        assert again["N_star"] == row.N_star and again["censored"] == row.censored


def test_committed_learned_rows_recompute():
    """One random row of the learned E, W, U table (M <= 10, a few seconds), recomputed. Float32 Adam over
    1000 steps on another CPU code path may flip a token whose margin is at rounding level; any token of
    rank 10 or more has mass below 0.01 at alpha = 2, N = 100, hence the tolerance."""
    path = DATA / "learned_vs_M.csv"
    if not path.exists():
        pytest.skip(f"{path} not committed")
    table = pd.read_csv(path)
    table = table[table.M <= 10]
    row = table.iloc[np.random.default_rng(7).integers(len(table))]
    again = cap.learned_embeddings_vs_M(int(row.M), N=int(row.N), d=int(row.d), alpha=float(row.alpha),
                                        lr=float(row.lr), batch_size=int(row.batch_size), epochs=int(row.epochs),
                                        trials=int(row.trials), seed=int(row.seed))
    assert again[int(row.trial)] == pytest.approx(row.error, abs=0.01)


def test_theorem1_comparison_rows_hold_the_bounds_they_report():
    table = cap.theorem1_comparison(N=100, d_grid=(10, 40), trials=6, gammas=[0.5, 1.0])
    assert len(table) == 6 and set(table.scheme) == {"q = p", "q = p^0.5", "q = 1[x <= d/8]"}
    assert (table.lower <= table.upper).all() and table["shape"].between(0, 1).all()
    assert (table.upper >= 0.5).all()                  # the smallest gamma offered is 0.5


def test_minimax_comparison_ratio_is_error_over_bound():
    table = cap.minimax_comparison(N=100, d_grid=(10, 20), T_grid=(10, 100), trials=3)
    assert len(table) == 4
    assert np.allclose(table.ratio, table.error / table.bound)
    assert (table.bound > 0).all() and (table.bound <= 1 - 1 / 5).all()


def test_sizes_are_bounded_before_any_work_and_divergence_is_reported():
    for name in ("trials", "N", "batch_size"):
        with pytest.raises(ValueError, match=rf"\b{name}\b.*ASSOCMEM_MAX"):
            cap.learned_embeddings_vs_M(3, **{name: 10**12})
    for name in ("trials", "opt_steps", "M"):
        with pytest.raises(ValueError, match=rf"\b{name}\b.*ASSOCMEM_MAX"):
            cap.phase_cell(T=160, **{name: 10**12})
    E, U = memory.memory_embeddings(6, 3, 4, seed=0, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"\bsteps\b.*ASSOCMEM_MAX"):
        cap.optimised_memory(E, U, zipf.mod_labels(6, 3), np.full(6, 1 / 6), steps=10**12)
    # Adam moves every entry by about lr per step: lr = 1e300 overflows float32 and is said so, by name
    with pytest.raises(ValueError, match=r"lr=1e\+300: training diverged .* 2 of 2"):
        cap.learned_embeddings_vs_M(3, N=10, lr=1e300, batch_size=10, epochs=3, trials=2)


def test_theorem1_comparison_checks_gammas_and_caps_the_threshold_at_N():
    for gammas, error in [([math.nan], ValueError), ("x", TypeError), ([1.5], ValueError), ([], ValueError)]:
        with pytest.raises(error, match="gammas"):
            cap.theorem1_comparison(N=40, d_grid=(10,), trials=2, gammas=gammas)
    table = cap.theorem1_comparison(N=40, d_grid=(10,), trials=2, fraction=1e300, gammas=[1.0])
    every = cap.theorem1_comparison(N=40, d_grid=(10,), trials=2, fraction=4.0, gammas=[1.0])  # P = 40 = N
    threshold = table[table.scheme.str.startswith("q = 1[")].iloc[0]
    assert np.isfinite(table.drop(columns="scheme").to_numpy(dtype=float)).all()
    assert threshold.gaussian_mean == every[every.scheme.str.startswith("q = 1[")].iloc[0].gaussian_mean


@pytest.mark.parametrize("change, name", [
    (dict(E="nan"), "E"), (dict(U="nan"), "U"), (dict(weights=[]), "weights"), (dict(weights=["a"] * 6), "weights"),
    (dict(weights=np.ones((3, 6))), "weights"), (dict(weights=np.full(6, -1.0)), "weights"),
])
def test_optimised_memory_refuses_bad_embeddings_and_weights_by_name(change, name):
    """Fuzz findings: NaN in E or U came back as NaN scores; empty or string weights gave numpy's broadcast
    or conversion errors."""
    E, U = memory.memory_embeddings(6, 3, 4, seed=0, dtype=torch.float64)
    E, U = E.expand(2, -1, -1).clone(), U.expand(2, -1, -1).clone()
    args = dict(E=E, U=U, labels=zipf.mod_labels(6, 3), weights=np.full(6, 1 / 6), steps=3)
    for tensor in ("E", "U"):
        if change.get(tensor) == "nan":
            args[tensor][0, 0, 0] = math.nan
            change = {}
    with pytest.raises((ValueError, TypeError), match=rf"(^|\W){name}(\W|$)"):
        cap.optimised_memory(**(args | change))
    if name == "weights":  # per-run weights (R, N) are accepted
        assert cap.optimised_memory(**(args | dict(weights=np.full((2, 6), 1 / 6))))["loss"].shape == (2,)


def test_phase_cell_defaults_are_a_valid_call_and_the_sweep_point_shares_them():
    """T = 1000 was not a multiple of batch_size = 16, so phase_cell() and a capacity_phase point without T
    failed on their own; now T = 1024. Every committed phase row gives T, so no cache key changes."""
    assert cap.phase_experiment.defaults == {name: parameter.default for name, parameter
                                             in inspect.signature(cap.phase_cell).parameters.items()}
    defaults = cap.phase_experiment.defaults
    assert defaults["T"] % defaults["batch_size"] == 0
    rows = pd.DataFrame(cap.phase_cell(trials=1, opt_steps=1))  # every other default as it is: N, d, T, ...
    assert set(rows.scheme) == set(cap.PHASE_SCHEMES) and len(rows) == len(cap.PHASE_SCHEMES) - 1 + len(
        cap.TOP_FRACTIONS) and rows.error.between(0, 1).all()


def test_phase_tables_refuse_what_is_not_a_table_and_bound_the_bootstrap():
    """Fuzz findings: None or a string for the table gave AttributeError; n_boot = 1e12 a MemoryError after
    numpy tried to allocate 14.6 TiB. Now refused by name before any work."""
    table = pd.DataFrame(cap.phase_cell(N=12, d=6, T=16, trials=2, batch_size=4, opt_steps=3)).assign(
        d=6, T=16, alpha=1.0)
    for call in (cap.phase_winners, lambda t, **kw: cap.overflow_agreement(t, N=12, **kw)):
        for bad in (None, "x", table.drop(columns="scheme")):
            with pytest.raises((ValueError, TypeError), match=r"\btable\b"):
                call(bad)
        with pytest.raises(ValueError, match=r"\bn_boot\b.*ASSOCMEM_MAX"):
            call(table, n_boot=10**12)
        assert len(call(table, n_boot=20)) == 1  # one cell
