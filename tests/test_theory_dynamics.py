"""Tests of assocmem.theory.dynamics: the one-visit map, F(n), the mini-batch forms and their exactness
for orthogonal embeddings."""

import numpy as np
import pytest
import torch

from assocmem import training, zipf
from assocmem.theory import dynamics


def test_first_visit_stores_the_wrong_class_mass():
    for M in (2, 5, 10):
        assert dynamics.one_visit(0.0, 3.0, M) == pytest.approx(3.0 * (M - 1) / M)
        for form in dynamics.FORMS:
            assert dynamics.visits_map(np.array([1]), 3.0, M, form=form)[0] == pytest.approx(3.0 * (M - 1) / M)


def test_visits_map_iterates_f_and_grows_like_log_n():
    lr, M = 1.0, 5
    values = dynamics.visits_map(np.arange(6), lr, M)
    q = 0.0
    for n in range(6):
        assert values[n] == pytest.approx(q)
        q = dynamics.one_visit(q, lr, M)
    assert np.all(np.diff(dynamics.visits_map(np.arange(50), lr, M)) > 0)
    n = 10_000  # dq/dn ~ lr (M - 1) e^{-q}  =>  q ~ log(lr (M - 1) n)
    assert dynamics.visits_map(np.array([n]), lr, M)[0] == pytest.approx(np.log(lr * (M - 1) * n), abs=0.01)


def test_batch_of_one_is_the_visits_map():
    N, M, lr = 6, 3, 2.0
    tokens = zipf.sample_tokens(N, 1.0, 40, seed=1)
    counts = zipf.token_counts(tokens.reshape(40, 1), N)
    for form in dynamics.FORMS:
        q = dynamics.minibatch_q(counts, lr, M, 1, form=form)[-1]
        np.testing.assert_allclose(q, dynamics.visits_map(np.bincount(tokens, minlength=N), lr, M, form=form))


def test_small_steps_give_q_proportional_to_p():
    p = zipf.zipf_probs(50, 2.0)
    q = dynamics.population_q(p, 1e-3, 5, steps=10)[-1]
    np.testing.assert_allclose(q, 1e-3 * 10 * 0.8 * p, rtol=1e-3)


def test_symmetric_form_is_exact_for_orthogonal_embeddings():
    """With orthonormal e_x and u_y the real mini-batch SGD is exactly the symmetric decoupled map."""
    N, M, B, steps, lr = 12, 4, 8, 25, 3.0
    E = torch.eye(N, dtype=torch.float64)[None]
    U = torch.eye(N, dtype=torch.float64)[None, :M]
    labels, probs = np.arange(N) % M, zipf.zipf_probs(N, 1.0)
    tokens = zipf.sample_tokens(N, 1.0, B * steps, seed=3)[None]
    out = training.train(E, U, labels, probs, lr=lr, tokens=tokens, batch_size=B, method="dense")
    counts = zipf.token_counts(tokens.reshape(1, steps, B), N)
    predicted = dynamics.minibatch_q(counts, lr, M, B, form="symmetric")[:, -1]
    np.testing.assert_allclose(out.stored_weights(labels).numpy(), predicted, rtol=1e-10, atol=1e-12)
    paper = dynamics.minibatch_q(counts, lr, M, B, form="paper")[:, -1]
    assert np.abs(paper - predicted).max() > 0.1  # the paper's map ignores the wrong classes' descent


def test_stored_weights_divide_out_the_embedding_norms():
    """W = sum_x q(x) u_f*(x) e_x^T with orthogonal embeddings of unequal norms: the coefficient of each
    outer product is recovered only after dividing the score by |u|^2 |e|^2."""
    N, M, d = 6, 3, 8
    labels = np.arange(N) % M
    q = torch.tensor([[0.5, 2.0, 1.0, 3.0, 0.25, 4.0]], dtype=torch.float64)
    basis = torch.eye(d, dtype=torch.float64)
    E = (basis[:N] * torch.linspace(0.5, 2.0, N, dtype=torch.float64)[:, None])[None]
    U = (basis[:M] * torch.tensor([[0.3], [1.5], [2.5]], dtype=torch.float64))[None]
    W = sum(q[0, x] * torch.outer(U[0, labels[x]], E[0, x]) for x in range(N))[None]
    scores = U @ W @ E.transpose(1, 2)                                  # (1, M, N)
    trained = training.Trained(steps=np.zeros(1), errors=np.zeros((1, 1)), losses=np.zeros((1, 1)),
                               scores=scores, W=W, E=E, U=U, method="dense")
    np.testing.assert_allclose(trained.stored_weights(labels).numpy(), q.numpy(), rtol=1e-12)


def test_schedule_per_step_learning_rates():
    counts = np.ones((3, 2))
    constant = dynamics.minibatch_q(counts, 1.0, 5, 1)
    scheduled = dynamics.minibatch_q(counts, np.array([1.0, 1.0, 1.0]), 5, 1)
    np.testing.assert_allclose(constant, scheduled)


@pytest.mark.parametrize("call,error", [
    (lambda: dynamics.one_visit(0.0, 0.0, 5), ValueError),
    (lambda: dynamics.one_visit(0.0, 1.0, 1), ValueError),
    (lambda: dynamics.visits_map(np.array([-1]), 1.0, 5), ValueError),
    (lambda: dynamics.visits_map(np.array([1]), 1.0, 5, form="exact"), ValueError),
    (lambda: dynamics.minibatch_q(np.ones(3), 1.0, 5, 1), ValueError),
    (lambda: dynamics.minibatch_q(np.ones((2, 3)), -1.0, 5, 1), ValueError),
    (lambda: dynamics.minibatch_q(np.ones((2, 3)), 1.0, 5, 0), ValueError),
    (lambda: dynamics.population_q(np.ones((2, 2)), 1.0, 5, 3), ValueError),
])
def test_validation(call, error):
    with pytest.raises(error):
        call()


# --- issue 13: bad lr/M named before the loop; a huge n or steps refused before allocating

@pytest.mark.parametrize(("kwargs", "error", "message"), [
    ({"lr": "x"}, TypeError, "lr must be a real number"),
    ({"lr": None}, TypeError, "lr must be a real number"),
    ({"M": 1}, ValueError, "M must be an integer >= 2"),
    ({"n": 10**12}, ValueError, "n: this call needs about"),
])
def test_visits_map_refuses_by_name(kwargs, error, message):
    with pytest.raises(error, match=message):
        dynamics.visits_map(**{"n": 10, "lr": 0.5, "M": 3, **kwargs})


def test_population_q_refuses_a_huge_number_of_steps_by_name():
    with pytest.raises(ValueError, match="steps, probs: this call needs about .* ASSOCMEM_MAX_BYTES"):
        dynamics.population_q(zipf.zipf_probs(12, 1.5), 0.1, 3, 10**12)
