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
    row = exp(corpus="grammar", d_emb=8, n_heads=2, context=8, train_tokens=500, steps=3, eval_every=3,
              eval_windows=4)
    assert row["N"] == 2 * (12 * 64 + 9 * 8) and row["gap"] >= 0
    assert set(get_experiment("loss_floor").defaults) >= {"corpus", "steps", "min_position"}


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
