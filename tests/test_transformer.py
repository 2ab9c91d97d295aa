"""The small causal transformer, its training and the N-D helpers (assocmem.transformer)."""

import numpy as np
import pytest
import torch

from assocmem import transformer as tf
from assocmem.corpora import Corpus, grammar_corpus, question_formation_grammar
from assocmem.sweep import get_experiment

TINY = {"DET": ("the",), "N": ("newt", "yak"), "AUX": ("can",), "V_I": ("swim",), "V_T": ("see",),
        "REL": ("who",), "P": ("near",)}


@pytest.fixture(scope="module")
def tiny_corpus():
    return grammar_corpus(question_formation_grammar(words=TINY), n_train=5_000, n_validation=1_000)


def test_no_future_leakage():
    model = tf.CausalTransformer(11, d_emb=16, n_layers=2, n_heads=2, context=12, seed=0)
    tokens = torch.randint(0, 11, (3, 12), generator=torch.Generator().manual_seed(0))
    changed = tokens.clone()
    t = 6
    changed[:, t + 1:] = (changed[:, t + 1:] + 1) % 11
    with torch.no_grad():
        before, after = model(tokens), model(changed)
    torch.testing.assert_close(before[:, :t + 1], after[:, :t + 1], rtol=0, atol=1e-6)
    assert not torch.allclose(before[:, t + 1:], after[:, t + 1:])


@pytest.mark.parametrize("d, layers, vocab, context", [(16, 1, 7, 8), (32, 3, 50, 20)])
def test_parameter_counts_against_a_hand_count(d, layers, vocab, context):
    model = tf.CausalTransformer(vocab, d_emb=d, n_layers=layers, n_heads=4, context=context)
    counts = tf.parameter_counts(model)
    attention = layers * (3 * d * d + 3 * d + d * d + d)           # qkv and output projections
    feedforward = layers * (d * 4 * d + 4 * d + 4 * d * d + d)     # up and down projections
    assert counts["attention"] == attention and counts["feedforward"] == feedforward
    assert counts["paper"] == layers * (12 * d * d + 9 * d)
    assert counts["embedding"] == (vocab + context) * d
    assert counts["norm"] == (2 * layers + 1) * 2 * d
    assert counts["head"] == d * vocab + vocab
    assert counts["total"] == sum(counts[k] for k in ("paper", "embedding", "norm", "head"))


def test_same_seed_same_model_and_global_rng_untouched():
    state = torch.random.get_rng_state()
    a = tf.CausalTransformer(9, 16, 1, 2, 8, seed=3)
    b = tf.CausalTransformer(9, 16, 1, 2, 8, seed=3)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, pa), (_, pb) in zip(a.named_parameters(), b.named_parameters(), strict=True):
        assert torch.equal(pa, pb), name


def test_training_lowers_the_loss_and_resumes_from_a_checkpoint(tiny_corpus, tmp_path):
    settings = dict(steps=60, batch_size=16, lr=1e-2, eval_every=20, eval_windows=32, seed=1, progress=False)
    model = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    run = tf.train_language_model(model, tiny_corpus, **settings)
    assert run.steps == [0, 20, 40, 60]
    assert run.val_loss[-1] < 0.6 * run.val_loss[0] and run.train_loss[-1] < 0.6 * run.train_loss[0]

    path = tmp_path / "run.pt"
    first = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    tf.train_language_model(first, tiny_corpus, checkpoint=path, **{**settings, "steps": 40})
    state = torch.load(path, weights_only=False)
    state["settings"]["steps"] = 60  # pretend the run was interrupted at step 40 of 60
    torch.save(state, path)
    resumed = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=5)
    again = tf.train_language_model(resumed, tiny_corpus, checkpoint=path, **settings)
    assert again.steps == run.steps
    np.testing.assert_allclose(again.val_loss, run.val_loss, rtol=1e-4)


def test_checkpoint_from_other_settings_is_refused(tiny_corpus, tmp_path):
    path = tmp_path / "run.pt"
    model = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    tf.train_language_model(model, tiny_corpus, steps=2, eval_every=1, eval_windows=4, checkpoint=path,
                            progress=False)
    with pytest.raises(ValueError, match="checkpoint"):
        tf.train_language_model(model, tiny_corpus, steps=2, lr=0.1, eval_every=1, eval_windows=4,
                                checkpoint=path, progress=False)


def test_evaluate_loss_of_an_untrained_model_is_near_log_vocab(tiny_corpus):
    model = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    loss = tf.evaluate_loss(model, tiny_corpus.validation, n_windows=16, min_position=8)
    assert loss == pytest.approx(np.log(tiny_corpus.vocab_size), rel=0.05)


def test_activations_and_nearest_neighbours():
    model = tf.CausalTransformer(9, 16, 1, 2, 8, seed=0)
    tokens = np.random.default_rng(0).integers(0, 9, 500)
    acts = tf.last_layer_activations(model, tokens, n_sequences=30, seed=2)
    assert acts.shape == (30, 8 * 16) and acts.dtype == np.float64
    np.testing.assert_array_equal(acts, tf.last_layer_activations(model, tokens, 30, seed=2))
    points = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(tf.nearest_neighbour_distances(points), [1.0, np.sqrt(18.0), 1.0])


def test_balanced_data_size_picks_the_smallest_size_within_sigma2():
    run = tf.TrainingRun(steps=[0, 1, 2, 3], train_loss=[3.0, 2.0, 1.5, 1.3], val_loss=[3.0, 2.1, 1.8, 1.9])
    assert tf.mean_squared_gap(run) == pytest.approx(((1.5 - 1.8) ** 2 + (1.3 - 1.8) ** 2) / 2)
    assert tf.balanced_data_size([100, 200, 400, 800], [0.5, 0.05, 0.01, 0.02]) == 400
    assert np.isnan(tf.balanced_data_size([100, 200], [0.5, 0.3]))
    # on the log-log line through (100, 0.16) and (400, 0.01) the gap is 0.04 at D = 200
    assert tf.balanced_data_size([400, 100], [0.01, 0.16], interpolate=True) == pytest.approx(200.0)
    assert tf.balanced_data_size([100, 400], [0.01, 0.001], interpolate=True) == 100.0
    with pytest.raises(ValueError, match="gaps"):
        tf.balanced_data_size([100, 200], [0.5])


def test_nd_balance_is_a_registered_experiment():
    exp = get_experiment("nd_balance")
    row = exp(corpus="grammar", d_emb=8, n_heads=2, context=8, train_tokens=500, steps=6, eval_every=3,
              eval_windows=4, patience=100)
    assert row["N"] == 2 * (12 * 64 + 9 * 8) and row["D"] == 500
    assert row["steps_run"] == 6 and row["converged"] == 0 and row["step_min"] in (0, 3, 6)
    assert row["gap_paper"] >= 0 and row["gap_book"] >= 0
    assert set(get_experiment("loss_floor").defaults) >= {"corpus", "steps", "min_position", "patience"}


@pytest.mark.parametrize("kwargs, error", [
    ({"d_emb": 30, "n_heads": 4}, ValueError), ({"n_layers": 0}, ValueError), ({"vocab_size": 1}, ValueError),
    ({"context": 2.5}, TypeError)])
def test_invalid_model_parameters(kwargs, error):
    with pytest.raises(error):
        tf.CausalTransformer(**{"vocab_size": 10, **kwargs})


def test_invalid_inputs_name_the_problem(tiny_corpus):
    model = tf.CausalTransformer(12, 16, 1, 2, 8)
    with pytest.raises(ValueError, match="context"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must lie"):
        model(torch.full((1, 4), 12))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="vocab_size"):
        tf.train_language_model(model, tiny_corpus, steps=1)
    small = Corpus("x", np.zeros(5, dtype=np.int64), np.zeros(50, dtype=np.int64), tuple("abcdefghijkl"))
    with pytest.raises(ValueError, match="stream"):
        tf.train_language_model(model, small, steps=1, progress=False)
    with pytest.raises(ValueError, match="min_position"):
        tf.evaluate_loss(model, np.zeros(50, dtype=np.int64), min_position=8)
    with pytest.raises(ValueError, match="points"):
        tf.nearest_neighbour_distances(np.zeros((1, 3)))


def test_spread_subset_takes_evenly_spaced_chunks():
    tokens = np.arange(1000)
    subset = tf.spread_subset(tokens, 100, chunk=25)
    np.testing.assert_array_equal(subset[:25], np.arange(25))
    np.testing.assert_array_equal(subset[-25:], np.arange(975, 1000))
    assert len(subset) == 100 and len(np.unique(subset)) == 100
    assert len(tf.spread_subset(tokens, 5000, chunk=25)) == 1000


def test_residual_stream_ends_in_the_hidden_state():
    model = tf.CausalTransformer(9, 16, 3, 2, 8, seed=0)
    tokens = torch.randint(0, 9, (2, 8), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        states = model.residual_stream(tokens)
        assert len(states) == 4 and all(h.shape == (2, 8, 16) for h in states)
        torch.testing.assert_close(model.final_norm(states[-1]), model.hidden(tokens), rtol=0, atol=0)
        torch.testing.assert_close(states[1], model.blocks[0](states[0]), rtol=0, atol=0)


def test_early_stopping_stops_at_the_first_evaluation_past_patience(tiny_corpus):
    model = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    run = tf.train_language_model(model, tiny_corpus, steps=400, batch_size=8, lr=0.05, eval_every=10,
                                  eval_windows=4, patience=30, seed=0, progress=False)
    best = [run.steps[int(np.argmin(run.val_loss[:k + 1]))] for k in range(len(run.steps))]
    age = np.asarray(run.steps) - np.asarray(best)
    if run.steps[-1] < 400:  # stopped early: at the first evaluation whose best is 30 steps old
        assert age[-1] >= 30 and np.all(age[:-1] < 30)
    else:
        assert np.all(age < 30)
    assert tf._patience_spent(run, 30) == (age[-1] >= 30)
    assert not tf._patience_spent(run, None)


def test_training_loss_convention_is_selectable(tiny_corpus):
    settings = dict(steps=20, batch_size=8, eval_every=20, eval_windows=8, seed=0, progress=False)
    model = tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0)
    run = tf.train_language_model(model, tiny_corpus, min_position=10, train_min_position=0, **settings)
    stream = tiny_corpus.train
    assert run.train_loss[-1] == pytest.approx(tf.evaluate_loss(model, stream, n_windows=8, min_position=0),
                                               rel=1e-6)
    assert run.val_loss[-1] == pytest.approx(
        tf.evaluate_loss(model, tiny_corpus.validation, n_windows=8, min_position=10), rel=1e-6)
    seen = []
    tf.train_language_model(tf.CausalTransformer(tiny_corpus.vocab_size, 16, 1, 2, 16, seed=0), tiny_corpus,
                            on_evaluate=lambda step, m: seen.append(step), **{**settings, "eval_every": 5})
    assert seen == [0, 5, 10, 15, 20]


def test_paper_gap_averages_the_window_after_the_minimum():
    run = tf.TrainingRun(steps=[0, 500, 1000, 1500, 2000, 2500],
                         train_loss=[3.0, 2.0, 1.6, 1.4, 1.2, 1.0], val_loss=[3.0, 2.2, 1.9, 2.0, 2.1, 2.3])
    # minimum 1.9 at step 1000: the window (1000, 2000] holds steps 1500 and 2000
    assert tf.paper_gap(run) == pytest.approx(((1.4 - 1.9) ** 2 + (1.2 - 1.9) ** 2) / 2)
    assert tf.paper_gap(run, window=500) == pytest.approx((1.4 - 1.9) ** 2)
    capped = tf.TrainingRun(steps=[0, 500, 1000, 1500], train_loss=[3.0, 2.0, 1.8, 1.7],
                            val_loss=[3.0, 2.2, 2.0, 1.9])
    # the minimum is the last evaluation: the last 1000 steps, [500, 1500], are used
    assert tf.paper_gap(capped) == pytest.approx(((2.0 - 1.9) ** 2 + (1.8 - 1.9) ** 2 + (1.7 - 1.9) ** 2) / 3)
    with pytest.raises(ValueError, match="window"):
        tf.paper_gap(run, window=0)


def test_normalised_states_have_unit_variance_tokens():
    model = tf.CausalTransformer(9, 16, 2, 2, 8, seed=0)
    windows = tf.spread_windows(np.arange(200) % 9, 8, 5)
    assert windows.shape == (5, 8) and windows[0, 0] == 0 and windows[-1, -1] == (200 - 2) % 9
    states = tf.normalised_states(model, windows)
    assert len(states) == 3 and states[0].dtype == torch.float64 and states[0].shape == (5, 8 * 16)
    tokens = states[2].reshape(5, 8, 16)
    torch.testing.assert_close(tokens.mean(-1), torch.zeros(5, 8, dtype=torch.float64), rtol=0, atol=1e-6)
    # layer norm's eps (1e-12) against the initial variance (about 4e-4) leaves a relative 3e-9
    torch.testing.assert_close((tokens ** 2).mean(-1), torch.ones(5, 8, dtype=torch.float64), rtol=0, atol=1e-7)


def test_energy_profile_against_a_direct_computation():
    from scipy import special

    from assocmem.theory import volume

    model = tf.CausalTransformer(9, 8, 2, 2, 4, seed=0)
    rng = np.random.default_rng(0)
    train, probe = rng.integers(0, 9, 300), rng.integers(0, 9, 300)
    prof = tf.energy_profile(model, train, probe, n_patterns=12, n_points=5)
    patterns = [h.numpy() for h in tf.normalised_states(model, tf.spread_windows(train, 4, 12))]
    points = [h.numpy() for h in tf.normalised_states(model, tf.spread_windows(probe, 4, 5))]
    assert prof["n"] == 32
    outs = []
    for t in (1, 2):
        def energy(x, t=t):
            sq = ((x[:, None, :] - patterns[t][None, :, :]) ** 2).sum(-1)
            return -special.logsumexp(-sq, axis=1)
        e_in, e_out = energy(points[t - 1]), energy(points[t])
        outs.append(e_out)
        np.testing.assert_allclose(prof["energy_in"][t - 1], e_in.mean(), rtol=1e-9)
        np.testing.assert_allclose(prof["energy_out"][t - 1], e_out.mean(), rtol=1e-9)
        assert prof["lowered"][t - 1] == pytest.approx(np.mean(e_out < e_in))
        pairwise = np.sqrt(((patterns[t][:, None] - patterns[t][None]) ** 2).sum(-1))
        radius = 0.5 * pairwise[~np.eye(12, dtype=bool)].min()
        assert prof["pattern_radius"][t - 1] == pytest.approx(radius, rel=1e-9)
        assert prof["log_Z"][t - 1] == pytest.approx(
            np.log(12) + volume.log_ball_gaussian_integral(32, radius), rel=1e-9)
    outs = np.stack(outs)
    np.testing.assert_allclose(prof["global_energy"], (-special.logsumexp(-outs, axis=0)).mean(), rtol=1e-9)
    assert np.all(prof["global_energy"] <= outs.min(0).mean())


def test_loss_floor_and_activation_geometry_rows():
    rows = get_experiment("loss_floor")(corpus="grammar-small", d_emb=8, n_heads=2, context=8, steps=4,
                                        eval_every=2, eval_windows=4, min_position=4, energy_patterns=6,
                                        energy_points=3)
    assert [(r["step"], r["layer"]) for r in rows] == [(s, t) for s in (0, 2, 4) for t in (1, 2)]
    assert rows[0]["entropy_rate"] == pytest.approx(0.4464, abs=1e-4) and rows[0]["n"] == 64
    assert rows[0]["train_loss_all"] == rows[1]["train_loss_all"]  # one evaluation, two layers
    geo = get_experiment("activation_geometry")(d_emb=8, n_heads=2, context=8, steps=4, eval_every=2,
                                                eval_windows=4, sample_sizes=(5, 10))
    assert [(r["stage"], r["m"]) for r in geo] == [("init", 5), ("init", 10), ("trained", 5), ("trained", 10)]
    assert geo[0]["theory_radius"] == pytest.approx(np.sqrt(64 / (2 * np.pi * np.e)))
    assert geo[1]["nn_mean"] <= geo[0]["nn_mean"] * 1.5 and geo[0]["norm_mean"] > 0


def test_balanced_sizes_applies_the_rule_per_model():
    import pandas as pd

    table = pd.DataFrame({"d_emb": [16] * 3 + [32] * 3, "seed": [0] * 6, "N": [100] * 3 + [400] * 3,
                          "D": [1000, 2000, 4000] * 2,
                          "gap_paper": [0.5, 0.03, 0.01, 0.5, 0.2, 0.05],
                          "gap_book": [0.5, 0.05, 0.01, 0.5, 0.2, 0.01]})
    paper = tf.balanced_sizes(table)
    assert paper.D_star.iloc[0] == 2000 and np.isnan(paper.D_star.iloc[1])
    book = tf.balanced_sizes(table, gap="gap_book")
    assert list(book.D_star) == [4000, 4000] and list(book.N) == [100, 400] and list(book.sizes) == [3, 3]
    with pytest.raises(ValueError, match=r"table lacks the column.*'D'"):
        tf.balanced_sizes(table.drop(columns="D"))
    with pytest.raises(ValueError, match="gap"):
        tf.balanced_sizes(table, gap="gap")


def _power_law_grid(widths, seeds, scale, sizes):
    """An nd_balance-like table whose gap is sigma2 (D*/D)^2 with D* = scale(seed) N^(1/2): a straight
    line on log-log axes, so the interpolated crossing is D* exactly."""
    import pandas as pd

    rows = []
    for d in widths:
        N = 12 * d**2 + 9 * d
        for s in seeds:
            star = scale(s) * np.sqrt(N)
            for D in sizes:
                rows.append({"d_emb": d, "seed": s, "N": N, "D": D, "converged": 1,
                             "gap_paper": 0.04 * (star / D) ** 2, "gap_book": 0.04 * (star / D) ** 2})
    return pd.DataFrame(rows)


def test_balance_exponent_recovers_a_planted_square_root():
    sizes = [2**k for k in range(8, 17)]
    table = _power_law_grid([4, 8, 16, 32], [0, 1, 2], lambda s: 30.0 * (1 + 0.1 * s), sizes)
    fit = tf.balance_exponent(table)
    assert fit.widths == [4, 8, 16, 32] and fit.beyond == [] and fit.seeds == [0, 1, 2]
    # a seed's factor multiplies D* at every width: the slope is 1/2 for every resample
    assert fit.over_seeds.slope == pytest.approx(0.5, abs=1e-9)
    assert fit.over_seeds.ci == pytest.approx((0.5, 0.5), abs=1e-9)
    assert fit.over_widths.slope == pytest.approx(0.5, abs=1e-9) and fit.over_widths.method == "ols"
    expected_ratio = np.mean([1 / (30.0 * (1 + 0.1 * s)) ** 2 for s in range(3)])
    np.testing.assert_allclose(fit.ratio, expected_ratio, rtol=1e-9)
    np.testing.assert_allclose(fit.D_star.loc[1, 16], 33.0 * np.sqrt(12 * 256 + 144), rtol=1e-9)
    assert fit.unbracketed == 0 and fit.capped_at_crossing == 0
    # without interpolation D* is the first grid size at or above the true crossing
    grid = tf.balance_exponent(table, interpolate=False)
    assert grid.D_star.loc[0, 32] == 4096  # 30 sqrt(12576) = 3364


def test_balance_exponent_counts_beyond_unbracketed_and_capped_models():
    sizes = [2**k for k in range(8, 17)]
    table = _power_law_grid([4, 8, 16, 32, 64], [0, 1], lambda s: 30.0 * (1 + 0.1 * s), sizes)
    wide = (table.d_emb == 64) & (table.seed == 1)
    table.loc[wide, "gap_paper"] = 0.5          # never balanced at d = 64 for seed 1
    # the crossing of (16, seed 0) is between 2048 and 4096: cap the smaller run
    table.loc[(table.d_emb == 16) & (table.seed == 0) & (table.D == 2048), "converged"] = 0
    table.loc[(table.d_emb == 16) & (table.seed == 0) & (table.D == 65536), "converged"] = 0  # not at the crossing
    fit = tf.balance_exponent(table.drop(table[(table.d_emb == 4) & (table.seed == 0) & (table.D < 512)].index))
    assert fit.widths == [4, 8, 16, 32] and fit.beyond == [64] and np.isnan(fit.D_star.loc[1, 64])
    assert fit.unbracketed == 1 and fit.capped_at_crossing == 1
    with pytest.raises(ValueError, match="two widths"):
        tf.balance_exponent(table[table.d_emb >= 32])
    with pytest.raises(ValueError, match="converged"):
        tf.balance_exponent(table.drop(columns="converged"))


def test_a_diverging_run_stops_and_is_flagged_in_the_sweep_table_not_the_cache(tmp_path):

    from assocmem.sweep import DiskCache, config_key, get_experiment, run_sweep

    # AdamW at lr = 1e6 drives a width-4 model to NaN within 25 steps; lr = 2e-3 trains normally
    settings = dict(d_emb=4, n_layers=1, steps=200, patience=100, window=100, train_tokens=2048, eval_every=25,
                    eval_windows=8)
    configs = [{**settings, "lr": 1e6}, {**settings, "lr": 2e-3}]
    cache = DiskCache(tmp_path)
    table = run_sweep("nd_balance", configs, cache=cache, progress=False)
    # the sweep's table (and so the CLI's --out file) carries the flag; the cache entries do not, so the
    # runs finished before the flag existed stay valid, and a table loaded from the cache gets it again
    assert list(table.diverged) == [True, False]
    experiment = get_experiment("nd_balance")
    stored = cache.load(config_key(experiment, experiment.config(configs[0])))
    assert stored is not None and all("diverged" not in row for row in stored)
    again = run_sweep("nd_balance", configs, cache=cache, progress=False)
    assert again.attrs["sweep"]["cached"] == 2 and list(again.diverged) == [True, False]
    flagged = tf.flag_diverged(table.drop(columns="diverged"))
    assert list(flagged.diverged) == [True, False]
    bad, good = flagged.iloc[0], flagged.iloc[1]
    assert np.isnan(bad.final_train_loss) and np.isnan(bad.gap_paper)
    # it stopped at the evaluation that found the NaN, not converged; the minimum is the finite one at step 0
    assert bad.steps_run == 25 and bad.converged == 0 and bad.step_min == 0 and np.isfinite(bad.min_val_loss)
    assert good.steps_run == 200 and np.isfinite([good.final_train_loss, good.gap_paper]).all()
    # read as two data sizes of one model, the rule leaves the diverged one out and counts it
    stars = tf.balanced_sizes(flagged.assign(D=[1000, 2000], seed=0), sigma2=1.0)
    assert stars.sizes.iloc[0] == 1 and stars.diverged.iloc[0] == 1 and stars.D_star.iloc[0] == 2000


def test_a_diverging_loss_floor_run_ends_with_flagged_rows():
    import pandas as pd

    rows = pd.DataFrame(tf.loss_floor(corpus="grammar-small", d_emb=8, n_heads=2, context=8, steps=100,
                                      eval_every=10, eval_windows=4, min_position=4, energy_patterns=6,
                                      energy_points=3, lr=1e6))
    flagged = tf.flag_diverged(rows)
    assert list(flagged.step) == [0, 0, 10, 10]  # two layers; stopped at the first NaN evaluation
    assert list(flagged.diverged) == [False, False, True, True]
    assert flagged[flagged.diverged][["energy_out", "global_energy", "log_Z"]].isna().all().all()
    assert np.isfinite(flagged[~flagged.diverged][["energy_out", "global_energy", "log_Z"]]).all().all()


def test_flag_diverged_reads_every_loss_column_and_refuses_other_tables():
    import pandas as pd

    table = pd.DataFrame({"min_val_loss": [1.0, 1.0, 1.0, 1.0], "final_train_loss": [1.0, np.inf, 1.0, 1.0],
                          "gap_paper": [0.1, 0.1, np.nan, 0.1], "gap_book": [0.1, 0.1, 0.1, -np.inf]})
    assert list(tf.flag_diverged(table).diverged) == [False, True, True, True]
    assert list(tf.flag_diverged(table.iloc[[0]].assign(diverged=True)).diverged) == [False]  # recomputed
    with pytest.raises(ValueError, match="table"):
        tf.flag_diverged(pd.DataFrame({"x": [1.0]}))
    with pytest.raises(TypeError, match="table"):
        tf.flag_diverged([{"gap_paper": 1.0}])


def test_training_run_best_ignores_non_finite_losses():
    run = tf.TrainingRun(steps=[0, 10, 20], train_loss=[2.0, 1.5, np.nan], val_loss=[2.0, 1.6, np.nan])
    assert run.best == 1 and run.min_val_loss == 1.6 and run.diverged
    # the window after the best evaluation holds only the NaN one: the gap is NaN, never a number
    assert np.isnan(tf.paper_gap(run, window=10)) and np.isnan(tf.mean_squared_gap(run))
    finite = tf.TrainingRun(steps=[0, 10, 20], train_loss=[2.0, 1.5, 1.4], val_loss=[2.0, 1.6, 1.7])
    assert finite.best == 1 and not finite.diverged


# Regression tests of the fuzz findings (tests/fuzz_known.json): each hostile call ends in a clear error
# naming the caller's parameter, before any work.
def _fuzz_model():
    return tf.CausalTransformer(7, d_emb=8, n_layers=1, n_heads=2, context=8, seed=0)


TOKENS = np.random.default_rng(1).integers(0, 7, 400)


@pytest.mark.parametrize("call, error, name", [
    (lambda m: tf.spread_subset(None, 100, 16), TypeError, "tokens"),
    (lambda m: tf.spread_subset("x", 100, 16), TypeError, "tokens"),
    (lambda m: tf.spread_subset(np.array([1.0, np.nan, 2.0]), 2, 1), TypeError, "tokens"),
    (lambda m: tf.evaluate_loss(m, TOKENS, n_windows=10**12), ValueError, "n_windows"),
    (lambda m: tf.last_layer_activations(m, TOKENS, 10**12), ValueError, "n_sequences"),
    (lambda m: tf.mean_squared_gap(None), TypeError, "run"),
    (lambda m: tf.paper_gap("x"), TypeError, "run"),
    (lambda m: tf.normalised_states(None, torch.zeros(2, 8, dtype=torch.long)), TypeError, "model"),
    (lambda m: tf.normalised_states("x", torch.zeros(2, 8, dtype=torch.long)), TypeError, "model"),
    (lambda m: tf.normalised_states(m, torch.zeros(0, 8, dtype=torch.long)), ValueError, "windows"),
    (lambda m: tf.normalised_states(m, None), TypeError, "windows"),
    (lambda m: tf.normalised_states(m, torch.zeros(2, 8)), TypeError, "windows"),
    (lambda m: tf.normalised_states(m, np.zeros((1, 1, 8), dtype=np.int64)), TypeError, "windows"),
    (lambda m: tf.energy_profile(None, TOKENS, TOKENS), TypeError, "model"),
    (lambda m: tf.energy_profile(m, None, TOKENS), TypeError, "pattern_tokens"),
    (lambda m: tf.energy_profile(m, TOKENS, TOKENS[:0]), ValueError, "probe_tokens"),
    (lambda m: tf.energy_profile(m, TOKENS.reshape(1, 1, -1), TOKENS), ValueError, "pattern_tokens"),
    (lambda m: tf.energy_profile(m, TOKENS, np.where(TOKENS > 3, np.nan, TOKENS)), TypeError, "probe_tokens"),
    (lambda m: tf.energy_profile(m, TOKENS, TOKENS, n_patterns=10**12), ValueError, "n_patterns"),
    (lambda m: tf.energy_profile(m, TOKENS, TOKENS, n_points=10**12), ValueError, "n_points"),
    (lambda m: tf.nearest_neighbour_distances([[0.0, np.nan], [1.0, 2.0]]), ValueError, "points"),
])
def test_hostile_inputs_name_the_parameter(call, error, name):
    with pytest.raises(error, match=rf"\b{name}\b"):
        call(_fuzz_model())


def test_balanced_sizes_refuses_what_is_not_a_table_by_name():
    """Fuzz findings (issue 13): None or a string for the table gave AttributeError."""
    for bad in (None, "x"):
        with pytest.raises(TypeError, match=r"\btable\b"):
            tf.balanced_sizes(bad)
