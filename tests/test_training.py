"""Tests of assocmem.training: exact identities between implementations, hand-written gradients
against autograd, the decoupled prediction against real SGD, and input validation."""

import numpy as np
import pytest
import torch

from assocmem import memory, sweep, training, zipf
from assocmem.theory import dynamics

N, M, ALPHA = 20, 5, 2.0
PROBS, LABELS = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Small tensor programs run faster on one thread (and the CI machine is shared)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_problem(R=3, d=12, T=64, dtype=torch.float64):
    E, U = training.run_embeddings(range(R), N, M, d, dtype=dtype)
    tokens = np.stack([zipf.sample_tokens(N, ALPHA, T, seed) for seed in range(R)])
    return E, U, tokens


@pytest.mark.parametrize("optimizer", ["sgd", "nsgd"])
@pytest.mark.parametrize("layer_norm", [False, True])
@pytest.mark.parametrize("init", ["zero", "random"])
@pytest.mark.parametrize("batch_size", [8, 32])
def test_factorised_sgd_equals_dense_sgd(optimizer, layer_norm, init, batch_size):
    E, U, tokens = small_problem()
    W0 = training.initial_memory(range(3), 12, init=init, dtype=torch.float64)
    kwargs = dict(lr=[0.3, 3.0, 30.0], tokens=tokens, batch_size=batch_size, optimizer=optimizer,
                  layer_norm=layer_norm, W0=W0, eval_every=1)
    dense = training.train(E, U, LABELS, PROBS, method="dense", **kwargs)
    fact = training.train(E, U, LABELS, PROBS, method="factorised", **kwargs)
    assert fact.method == "factorised" and dense.method == "dense"
    scale = dense.W.abs().max().item()
    assert (dense.W - fact.W).abs().max().item() <= 1e-9 * max(scale, 1.0)
    np.testing.assert_allclose(fact.losses, dense.losses, rtol=1e-9, atol=1e-12)
    np.testing.assert_array_equal(fact.errors, dense.errors)
    lean = training.train(E, U, LABELS, PROBS, method="factorised", keep_weights=False, **kwargs)
    assert lean.W is None
    np.testing.assert_array_equal(lean.losses, fact.losses)  # W not kept: the same program on C


@pytest.mark.parametrize("optimizer,learn", [("adam", True), ("sign", False), ("sgd", True), ("sgd", False)])
def test_batched_runs_equal_runs_one_at_a_time(optimizer, learn):
    E, U, tokens = small_problem(R=4)
    lrs, ln = [0.01, 0.1, 1.0, 3.0], [False, True, False, True]
    W0 = training.initial_memory(range(4), 12, init="random", dtype=torch.float64)
    kwargs = dict(batch_size=16, optimizer=optimizer, learn_embeddings=learn, schedule="cosine", eval_every=2)
    batched = training.train(E, U, LABELS, PROBS, lr=lrs, tokens=tokens, layer_norm=ln, W0=W0, **kwargs)
    for r in range(4):
        one = training.train(E[r:r + 1], U[r:r + 1], LABELS, PROBS, lr=lrs[r], tokens=tokens[r:r + 1],
                             layer_norm=ln[r], W0=W0[r:r + 1], **kwargs)
        torch.testing.assert_close(batched.W[r], one.W[0], rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(batched.E[r], one.E[0], rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(batched.losses[r], one.losses[0], rtol=1e-10)


@pytest.mark.parametrize("optimizer", ["adam", "sign"])
def test_fused_adam_path_equals_vectorised_adam(optimizer, monkeypatch):
    E, U, tokens = small_problem(R=3, d=12)
    kwargs = dict(lr=[0.01, 0.1, 1.0], tokens=tokens, batch_size=16, optimizer=optimizer, learn_embeddings=True,
                  layer_norm=[False, True, False], schedule="linear")
    monkeypatch.setattr(training, "FUSED_ADAM_MIN_SIZE", 10 ** 9)
    vectorised = training.train(E, U, LABELS, PROBS, **kwargs)
    monkeypatch.setattr(training, "FUSED_ADAM_MIN_SIZE", 1)
    fused = training.train(E, U, LABELS, PROBS, **kwargs)
    torch.testing.assert_close(fused.W, vectorised.W, rtol=1e-7, atol=1e-7)
    torch.testing.assert_close(fused.U, vectorised.U, rtol=1e-7, atol=1e-7)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_hand_written_gradients_match_autograd(layer_norm):
    R, d, P = 2, 7, 9
    gen = torch.Generator().manual_seed(0)
    W, E, U = (torch.randn(R, *shape, generator=gen, dtype=torch.float64) for shape in ((d, d), (N, d), (M, d)))
    idx = torch.randint(0, N, (R, P), generator=gen)
    idx[:, 1] = idx[:, 0]  # a repeated token: its embedding gradient must accumulate
    weights = torch.rand(R, P, generator=gen, dtype=torch.float64)
    labels = torch.as_tensor(LABELS)
    loss, grads = training.gradients(W, E, U, labels, idx, weights, layer_norm)

    params = [t.clone().requires_grad_() for t in (W, E, U)]
    h = torch.einsum("rij,rpj->rpi", params[0], params[1][torch.arange(R)[:, None], idx])
    if layer_norm:
        h = h / torch.sqrt((h ** 2).sum(-1, keepdim=True) + 1e-6)
    logits = torch.einsum("rmi,rpi->rpm", params[2], h)
    ref = (torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[idx], reduction="none") * weights).sum(-1)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach())
    for name, param in zip("WEU", params, strict=True):
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-10, atol=1e-12)


def test_sign_descent_first_step_is_lr_times_sign_of_gradient():
    E, U, tokens = small_problem(R=2, T=16)
    out = training.train(E, U, LABELS, PROBS, lr=0.5, tokens=tokens, batch_size=16, optimizer="sign", eps=0.0)
    idx, weights = torch.as_tensor(tokens), torch.full((2, 16), 1 / 16, dtype=torch.float64)
    _, grads = training.gradients(torch.zeros(2, 12, 12, dtype=torch.float64), E, U, torch.as_tensor(LABELS),
                                  idx, weights, wrt=("W",))
    torch.testing.assert_close(out.W, -0.5 * torch.sign(grads["W"]))


@pytest.mark.parametrize("schedule,factors", [
    ("linear", [1.0, 0.75, 0.5, 0.25]),
    # (1 + cos(pi t / steps)) / 2 at t = 0..3 of 4 steps: a period of 2 * steps, not steps
    ("cosine", [1.0, (1 + 0.5 ** 0.5) / 2, 0.5, (1 - 0.5 ** 0.5) / 2]),
])
def test_schedules_equal_manual_steps(schedule, factors):
    E, U, tokens = small_problem(R=2, T=64)
    out = training.train(E, U, LABELS, PROBS, lr=[1.0, 4.0], tokens=tokens, batch_size=16, schedule=schedule,
                         method="dense")
    W = torch.zeros(2, 12, 12, dtype=torch.float64)
    lr = torch.tensor([1.0, 4.0], dtype=torch.float64)[:, None, None]
    for t, factor in enumerate(factors):
        idx = torch.as_tensor(tokens[:, 16 * t:16 * (t + 1)])
        _, grads = training.gradients(W, E, U, torch.as_tensor(LABELS), idx,
                                      torch.full((2, 16), 1 / 16, dtype=torch.float64), wrt=("W",))
        W = W - factor * lr * grads["W"]
    torch.testing.assert_close(out.W, W)


def test_error_of_scores_counts_ties_as_errors_and_matches_memory_module():
    E, U, _ = small_problem(R=2)
    zero = training.train(E, U, LABELS, PROBS, lr=1.0, steps=1, method="dense")
    assert zero.errors[0, 0] == pytest.approx(1.0)  # W = 0: every class ties
    q = torch.as_tensor(PROBS) ** 0.5
    W = torch.einsum("x,rxi,rxj->rij", q, U[:, LABELS], E)  # the outer-product memory of q
    scores = torch.einsum("rmi,rij,rxj->rmx", U, W, E)
    expected = memory.population_error(q, PROBS, LABELS, E, U)[:, 0]
    torch.testing.assert_close(training.scores_error(scores, LABELS, PROBS), expected)


def test_diverged_runs_report_nan_error_not_a_number():
    E, U, tokens = small_problem(R=2, T=256, dtype=torch.float32)
    out = training.train(E, U, LABELS, PROBS, lr=[0.1, 1e4], tokens=tokens, batch_size=16, learn_embeddings=True)
    assert np.isfinite(out.errors[0, -1]) and np.isnan(out.errors[1, -1])


def test_decoupled_prediction_matches_sgd_at_large_d():
    """With d = 4000 >> N = 100 the learned q(x) follows the symmetric decoupled map within 5% of
    max q, the paper's map within 25%, and the predicted error is within 20% of the measured one."""
    N_, B, steps, lr, seeds = 100, 1000, 30, 1.0, range(3)
    runs, out = training.simulate(N=N_, M=M, d=4000, T=B * steps, batch_size=B, lrs=(lr,), seeds=seeds,
                                  dtype=torch.float64)
    tokens = np.stack([zipf.sample_tokens(N_, ALPHA, B * steps, s) for s in seeds])
    counts = zipf.token_counts(tokens.reshape(3, steps, B), N_)
    learned = out.stored_weights(zipf.mod_labels(N_, M)).numpy()
    for form, tol in (("symmetric", 0.05), ("paper", 0.25)):
        q = dynamics.minibatch_q(counts, lr, M, B, form=form)[:, -1]
        assert np.all(np.abs(learned - q).max(1) <= tol * q.max(1)), form
    q = dynamics.minibatch_q(counts, lr, M, B, form="symmetric")[:, -1]
    E, U = training.run_embeddings(seeds, N_, M, 4000, dtype=torch.float64)
    predicted = memory.population_error(torch.as_tensor(q), zipf.zipf_probs(N_, ALPHA), zipf.mod_labels(N_, M), E, U)
    assert abs(predicted.mean().item() - out.errors[:, -1].mean()) <= 0.2 * out.errors[:, -1].mean()


def test_full_batch_two_token_spike_only_with_large_step():
    """The two-token example of chapter 4: gamma = 1 decreases the loss monotonically, gamma = 10 spikes."""
    losses = training.two_token_run(lrs=(1.0, 10.0), steps=35).losses
    assert np.all(np.diff(losses[0]) < 0)
    assert np.any(np.diff(losses[1]) > 0.1)
    assert losses[1, -1] < 0.1 < losses[0, -1]


def test_optimization_grid_experiment_returns_one_row_per_run():
    exp = sweep.get_experiment("optimization_grid")
    rows = exp.rows({"d": 10, "T": 64, "batch_size": 16, "trials": 2, "lrs": [1.0, 10.0], "model": "learned",
                     "optimizer": "adam"})
    assert len(rows) == 2 * 2 * 2
    assert {"seed", "lr", "layer_norm", "error"} <= set(rows[0])
    assert all(0.0 <= row["error"] <= 1.0 for row in rows)


@pytest.mark.parametrize("kwargs,error", [
    (dict(optimizer="rmsprop"), ValueError),
    (dict(lr=-1.0), ValueError),
    (dict(lr=[1.0, 2.0]), ValueError),
    (dict(batch_size=10), ValueError),
    (dict(layer_norm=1), TypeError),
    (dict(method="factorised", optimizer="adam"), ValueError),
    (dict(schedule="step"), ValueError),
    (dict(betas=(1.0, 0.9)), ValueError),
    (dict(tokens=np.full((3, 64), N)), ValueError),
    (dict(W0=torch.zeros(3, 5, 5)), ValueError),
])
def test_validation_errors_name_the_parameter(kwargs, error):
    E, U, tokens = small_problem()
    args = dict(lr=1.0, tokens=tokens, batch_size=16)
    args.update(kwargs)
    with pytest.raises(error):
        training.train(E, U, LABELS, PROBS, **args)


def test_validation_of_shapes_labels_and_probs():
    E, U, tokens = small_problem()
    with pytest.raises(ValueError, match="labels"):
        training.train(E, U, LABELS + 5, PROBS, lr=1.0, tokens=tokens, batch_size=16)
    with pytest.raises(ValueError, match="probs"):
        training.train(E, U, LABELS, PROBS * 2, lr=1.0, tokens=tokens, batch_size=16)
    with pytest.raises(ValueError, match="shapes"):
        training.train(E, U[:, :, :5], LABELS, PROBS, lr=1.0, tokens=tokens, batch_size=16)
    with pytest.raises(ValueError, match="steps"):
        training.train(E, U, LABELS, PROBS, lr=1.0)


@pytest.mark.parametrize("method", ["dense", "factorised"])
@pytest.mark.parametrize("layer_norm", [False, True])
def test_one_class_is_trivially_exact(method, layer_norm):
    """M = 1: the softmax is 1, the loss and every gradient 0, W stays W0 and the error is 0."""
    E, _ = training.run_embeddings(range(2), N, 1, 12, dtype=torch.float64)
    _, U = training.run_embeddings(range(2), N, 1, 12, dtype=torch.float64)
    tokens = np.stack([zipf.sample_tokens(N, ALPHA, 32, seed) for seed in range(2)])
    W0 = training.initial_memory(range(2), 12, init="random", dtype=torch.float64)
    out = training.train(E, U, np.zeros(N, dtype=int), PROBS, lr=10.0, tokens=tokens, batch_size=16,
                         layer_norm=layer_norm, W0=W0, method=method)
    np.testing.assert_array_equal(out.errors, 0.0)
    np.testing.assert_array_equal(out.losses, 0.0)
    torch.testing.assert_close(out.W, W0, rtol=0, atol=1e-12)


def test_output_embedding_laws():
    """``sphere`` output embeddings are the Gaussian ones normalised; input embeddings do not change."""
    E_g, U_g = training.run_embeddings(range(3), N, M, 16, dtype=torch.float64)
    E_s, U_s = training.run_embeddings(range(3), N, M, 16, output_embeddings="sphere", dtype=torch.float64)
    torch.testing.assert_close(E_s, E_g, rtol=0, atol=0)
    torch.testing.assert_close(U_s, U_g / U_g.norm(dim=-1, keepdim=True), rtol=1e-12, atol=1e-15)
    assert (U_g.norm(dim=-1) - 1).abs().max() > 0.05  # chi^2_16 / 16 norms are not all 1
    with pytest.raises(ValueError, match="output_embeddings"):
        training.run_embeddings(range(3), N, M, 16, output_embeddings="uniform")


@pytest.mark.parametrize("law", ["sphere", "gaussian"])
def test_decoupled_comparison_columns_are_the_state_after_t_batches(law):
    """Recompute every curve of decoupled_comparison independently: column t of the SGD error is the
    memory after t batches (column 0 is W = 0, where every class ties), and the predicted curves are the
    exact errors of the outer-product memories of minibatch_q's q_t, on the same embeddings."""
    N_, B, steps, lr, trials, d = 20, 40, 4, 3.0, 2, 30
    out = training.decoupled_comparison(N=N_, M=M, d=d, batch_size=B, steps=steps, lr=lr, trials=trials,
                                        output_embeddings=law)
    probs, labels = zipf.zipf_probs(N_, ALPHA), zipf.mod_labels(N_, M)
    E, U = training.run_embeddings(range(trials), N_, M, d, output_embeddings=law, dtype=torch.float64)
    if law == "sphere":
        torch.testing.assert_close(U.norm(dim=-1), torch.ones(trials, M, dtype=torch.float64))
    tokens = np.stack([zipf.sample_tokens(N_, ALPHA, B * steps, s) for s in range(trials)])
    np.testing.assert_array_equal(out["steps"], np.arange(steps + 1))
    np.testing.assert_allclose(out["error"][:, 0], 1.0, rtol=1e-12)  # a sum of the N probabilities
    for t in range(1, steps + 1):
        sgd = training.train(E, U, labels, probs, lr=lr, tokens=tokens[:, :B * t], batch_size=B)
        np.testing.assert_allclose(out["error"][:, t], sgd.errors[:, -1], rtol=0, atol=1e-12)
    counts = zipf.token_counts(tokens.reshape(trials, steps, B), N_)
    for form in dynamics.FORMS:
        q = dynamics.minibatch_q(counts, lr, M, B, form=form)
        np.testing.assert_allclose(out["predicted_q"][form], q[:, -1], rtol=1e-12)
        np.testing.assert_allclose(out["predicted_error"][form][:, 0], 1.0, rtol=1e-12)
        for t in range(1, steps + 1):
            expected = memory.population_error(torch.as_tensor(q[:, t]), probs, labels, E, U)[:, 0].numpy()
            np.testing.assert_allclose(out["predicted_error"][form][:, t], expected, rtol=0, atol=1e-12)


def test_decoupled_comparison_follows_sgd_step_by_step_with_unit_output_embeddings():
    """d >> N: the paper's check. With unit-norm u the learned q of real SGD matches the symmetric map
    within 5 % of max q at the end, and the predicted error curve tracks the measured one step by step
    (a prediction shifted by one step would miss the first steps' drop)."""
    out = training.decoupled_comparison(N=50, M=M, d=2000, batch_size=200, steps=8, lr=1.0, trials=2)
    q = out["predicted_q"]["symmetric"]
    assert np.abs(out["q"] - q).max() <= 0.05 * q.max()
    measured, predicted = out["error"].mean(0), out["predicted_error"]["symmetric"].mean(0)
    np.testing.assert_allclose(predicted, measured, atol=0.03)


def test_slice_directions_by_brute_force():
    """D_x = (u_{f(x)} - mean of the other u_y) e_x^T entry by entry, and the exact identity
    grad L(W = 0) = -(M - 1) / M * sum_x p(x) D_x (every softmax is uniform at W = 0)."""
    E, U = training.run_embeddings([3], N, M, 6, dtype=torch.float64)
    E, U = E[0], U[0]
    D = training.slice_directions(E, U, LABELS)
    assert D.shape == (N, 6, 6)
    for x in range(N):
        y = LABELS[x]
        others = sum(U[k] for k in range(M) if k != y) / (M - 1)
        for i in range(6):
            for j in range(6):
                assert D[x, i, j].item() == pytest.approx(((U[y, i] - others[i]) * E[x, j]).item(), abs=1e-14)
    _, grads = training.gradients(torch.zeros(1, 6, 6, dtype=torch.float64), E[None], U[None],
                                  torch.as_tensor(LABELS), torch.arange(N)[None], torch.as_tensor(PROBS)[None],
                                  wrt=("W",))
    expected = -(M - 1) / M * torch.einsum("x,xij->ij", torch.as_tensor(PROBS), D)
    torch.testing.assert_close(grads["W"][0], expected, rtol=1e-12, atol=1e-14)


def test_slice_losses_and_coordinates_on_the_two_token_plane():
    """slice_losses[j, i] is the loss at W = a_i D_1 + b_j D_2; slice_coordinates inverts it; and for
    M = 2 the gradient-descent path from 0 stays on the plane (zero residual)."""
    E, U, labels, probs = training.two_token_setup(cosine=0.5, p1=0.75)
    a, b = np.array([-1.0, 0.5, 2.0]), np.array([0.0, 3.0])
    grid = training.slice_losses(E[0], U[0], labels, probs, a, b)
    D = training.slice_directions(E[0], U[0], labels)
    assert grid.shape == (2, 3)
    for j, bj in enumerate(b):
        for i, ai in enumerate(a):
            W = ai * D[0] + bj * D[1]
            logp = torch.log_softmax(U[0] @ W @ E[0].T, dim=0)
            loss = -(logp[torch.as_tensor(labels), torch.arange(2)] * torch.as_tensor(probs)).sum()
            assert grid[j, i] == pytest.approx(loss.item(), rel=1e-12)
    W = torch.stack([2.0 * D[0] - 1.5 * D[1], 0.25 * D[1]])
    np.testing.assert_allclose(training.slice_coordinates(W, E[0], U[0], labels), [[2.0, -1.5], [0.0, 0.25]],
                               atol=1e-12)
    run = training.two_token_run(lrs=(10.0,), steps=10, cosine=0.5)
    coords = torch.as_tensor(training.slice_coordinates(run.history[0], E[0], U[0], labels))
    rebuilt = coords[:, 0, None, None] * D[0] + coords[:, 1, None, None] * D[1]
    torch.testing.assert_close(rebuilt, run.history[0], rtol=0, atol=1e-10)


def reference_run(E, U, W0, tokens, lr, batch_size, optimizer, layer_norm, model):
    """One run the way the paper's code trains it: parameters as leaf tensors, autograd, torch.optim
    (SGD at lr for every parameter; Adam with betas (0, 0) at lr/d for W and lr/sqrt(d) for E, U),
    the mean cross-entropy of each batch of the single pass. (Scores E[x] W^T U^T: the paper's code
    multiplies by W itself, the same law for W0 = randn / sqrt(d).)"""
    d = E.shape[1]
    E, U = E.clone(), U.clone()
    W = None if model == "relu" else W0.clone()
    params = {"W": [W], "learned": [W, E, U], "relu": [E, U]}[model]
    for p in params:
        p.requires_grad_()
    if optimizer == "sgd":
        opt = torch.optim.SGD(params, lr=lr)
    else:
        groups = [{"params": [p], "lr": lr / d if p is W else lr / d ** 0.5} for p in params]
        opt = torch.optim.Adam(groups, betas=(0.0, 0.0))
    labels = torch.as_tensor(zipf.mod_labels(E.shape[0], U.shape[0]))

    def scores(x):
        h = torch.relu(E[x]) if model == "relu" else E[x] @ W.T
        if layer_norm:
            h = h / torch.sqrt((h ** 2).sum(-1, keepdim=True) + 1e-6)
        return h @ U.T

    for x in torch.as_tensor(tokens).split(batch_size):
        loss = torch.nn.functional.cross_entropy(scores(x), labels[x])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        out = scores(torch.arange(E.shape[0]))
    return out, (None if W is None else W.detach()), E.detach(), U.detach()


@pytest.mark.parametrize("model", training.MODELS)
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [4, 32])
def test_paper_grid_runs_equal_the_reference_training_loop(model, optimizer, batch_size):
    """Batched runs of simulate (float64: four step sizes x layer norm, compressed batches, the one-pass
    update of W) reproduce the reference loop run by run, parameters and scores to 1e-9 relative.
    B = 4 < N has repeated tokens in a batch; B = 32 > N = 20 too."""
    check_against_reference_loop(model, optimizer, batch_size)


@pytest.mark.parametrize("model", ["W", "learned"])
@pytest.mark.parametrize("batch_size", [4, 32])
def test_held_sgd_updates_equal_the_reference_training_loop(model, batch_size, monkeypatch):
    """The same with plain SGD's updates held as low-rank factors (forced at d = 12, a buffer of 16 columns)."""
    monkeypatch.setattr(training, "LOW_RANK_MIN_FLOATS", 0)
    monkeypatch.setattr(training, "LOW_RANK_COLUMNS", 16)
    check_against_reference_loop(model, "sgd", batch_size, method="dense")


def check_against_reference_loop(model, optimizer, batch_size, method="auto"):
    d, T, lrs = 12, 64, (0.1, 1.0, 10.0)
    runs, out = training.simulate(N=N, M=M, d=d, T=T, batch_size=batch_size, lrs=lrs, seeds=(0, 1),
                                  layer_norms=(False, True), optimizer=optimizer, model=model, init="random",
                                  dtype=torch.float64, keep_weights=True, method=method)
    E, U = training.run_embeddings([r["seed"] for r in runs], N, M, d, dtype=torch.float64)
    W0 = training.initial_memory([r["seed"] for r in runs], d, init="random", dtype=torch.float64)
    for i, run in enumerate(runs):
        tokens = zipf.sample_tokens(N, ALPHA, T, run["seed"])
        scores, W, E_ref, U_ref = reference_run(E[i], U[i], W0[i], tokens, run["lr"], batch_size, optimizer,
                                                run["layer_norm"], model)
        if not torch.isfinite(scores).all():  # diverged (SGD at large steps): so must ours be
            assert not torch.isfinite(out.scores[i]).all() and np.isnan(out.errors[i, -1]), run
            continue
        close = dict(rtol=1e-9, atol=1e-9)
        torch.testing.assert_close(out.scores[i].T, scores, **close, msg=str(run))
        if W is not None:
            torch.testing.assert_close(out.W[i], W, **close)
        torch.testing.assert_close(out.E[i], E_ref, **close)
        torch.testing.assert_close(out.U[i], U_ref, **close)


@pytest.mark.parametrize("model", ["W", "learned"])
def test_one_pass_update_in_blocks_equals_whole_W(model, monkeypatch):
    """Sign descent's one pass over W in blocks of rows (with the next forward pass computed in it) equals
    the update of W whole, to rounding: float64, 1e-12 relative."""
    optimizer = "sign"
    E, U, tokens = small_problem(R=3, d=12, T=64)
    W0 = training.initial_memory(range(3), 12, init="random", dtype=torch.float64)
    kwargs = dict(lr=[0.05, 0.5, 5.0], tokens=tokens, batch_size=8, optimizer=optimizer, model=model,
                  layer_norm=[False, True, True], W0=W0, method="dense", eval_every=4)
    whole = training.train(E, U, LABELS, PROBS, **kwargs)
    monkeypatch.setattr(training, "WHOLE_W_FLOATS", 0)
    monkeypatch.setattr(training, "BLOCK_FLOATS", 3 * 12 * 5)  # blocks of 5 rows: 5 + 5 + 2
    assert training._block_rows(3, 12) == 5
    blocks = training.train(E, U, LABELS, PROBS, **kwargs)
    torch.testing.assert_close(blocks.W, whole.W, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(blocks.E, whole.E, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(blocks.losses, whole.losses, rtol=1e-12)


@pytest.mark.parametrize("layer_norm", [False, True])
def test_relu_model_gradients_match_autograd(layer_norm):
    R, d, P = 2, 7, 9
    gen = torch.Generator().manual_seed(1)
    E, U = (torch.randn(R, *shape, generator=gen, dtype=torch.float64) for shape in ((N, d), (M, d)))
    idx = torch.randint(0, N, (R, P), generator=gen)
    idx[:, 1] = idx[:, 0]
    weights = torch.rand(R, P, generator=gen, dtype=torch.float64)
    labels = torch.as_tensor(LABELS)
    loss, grads = training.gradients(None, E, U, labels, idx, weights, layer_norm, wrt=("E", "U"), model="relu")
    params = [t.clone().requires_grad_() for t in (E, U)]
    h = torch.relu(params[0][torch.arange(R)[:, None], idx])
    if layer_norm:
        h = h / torch.sqrt((h ** 2).sum(-1, keepdim=True) + 1e-6)
    logits = torch.einsum("rmi,rpi->rpm", params[1], h)
    ref = (torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels[idx], reduction="none") * weights).sum(-1)
    ref.sum().backward()
    torch.testing.assert_close(loss, ref.detach())
    for name, param in zip("EU", params, strict=True):
        torch.testing.assert_close(grads[name], param.grad, rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match="wrt"):
        training.gradients(None, E, U, labels, idx, weights, model="relu")


def test_grid_learning_rates_are_the_papers():
    assert training.grid_learning_rates("sgd", "learned", 10.0, 100) == ("sgd", {"W": 10.0, "E": 10.0, "U": 10.0})
    rule, lr = training.grid_learning_rates("adam", "learned", 10.0, 100)
    assert rule == "sign" and lr == {"W": pytest.approx(0.1), "E": pytest.approx(1.0), "U": pytest.approx(1.0)}
    assert training.grid_learning_rates("adam", "W", 10.0, 400)[1] == {"W": pytest.approx(0.025)}
    assert training.grid_learning_rates("adam", "relu", 10.0, 400)[1] == {"E": pytest.approx(0.5),
                                                                          "U": pytest.approx(0.5)}
    assert training.grid_learning_rates("torch_adam", "W", 3.0, 10) == ("adam", {"W": 3.0})
    with pytest.raises(ValueError, match="optimizer"):
        training.grid_learning_rates("adamw", "W", 1.0, 10)


def test_sign_descent_has_no_state_and_equals_torch_adam_with_zero_betas():
    """Sign descent is Adam with betas (0, 0) at every step, not only the first (float64, 1e-12)."""
    E, U, tokens = small_problem(R=2, T=64)
    kwargs = dict(lr={"W": 0.01, "E": 0.1, "U": 0.2}, tokens=tokens, batch_size=8, model="learned", eps=1e-8)
    sign = training.train(E, U, LABELS, PROBS, optimizer="sign", **kwargs)
    adam = training.train(E, U, LABELS, PROBS, optimizer="adam", betas=(0.0, 0.0), **kwargs)
    for name in "WEU":
        torch.testing.assert_close(getattr(sign, name), getattr(adam, name), rtol=1e-12, atol=1e-12)


def test_per_parameter_learning_rates():
    """A dict of step sizes: W's step alone moves W; E and U keep theirs (SGD, learned embeddings)."""
    E, U, tokens = small_problem(R=2, T=32)
    W0 = training.initial_memory(range(2), 12, init="random", dtype=torch.float64)
    both = dict(tokens=tokens, batch_size=16, model="learned", W0=W0)
    slow_W = training.train(E, U, LABELS, PROBS, lr={"W": 1e-300, "E": 1.0, "U": 1.0}, **both)
    torch.testing.assert_close(slow_W.W, W0, rtol=0, atol=1e-290)
    assert (slow_W.U - U).abs().max() > 1e-3 and (slow_W.E - E).abs().max() > 1e-3
    slow_EU = training.train(E, U, LABELS, PROBS, lr={"W": 1.0, "E": 1e-300, "U": 1e-300}, **both)
    torch.testing.assert_close(slow_EU.U, U, rtol=0, atol=1e-290)
    assert (slow_EU.W - W0).abs().max() > 1e-3
    with pytest.raises(ValueError, match="exactly the trained parameters"):
        training.train(E, U, LABELS, PROBS, lr={"W": 1.0}, **both)
    with pytest.raises(ValueError, match=r"lr\['E'\]"):
        training.train(E, U, LABELS, PROBS, lr={"W": 1.0, "E": -1.0, "U": 1.0}, **both)


def test_error_tie_rules():
    """Scores all 0 (an empty memory): ties count as errors (error 1), or argmax picks class 0 and the
    error is 1 - p(tokens of class 0)."""
    scores = torch.zeros(1, M, N, dtype=torch.float64)
    assert training.scores_error(scores, LABELS, PROBS).item() == pytest.approx(1.0)
    first = training.scores_error(scores, LABELS, PROBS, ties="first").item()
    assert first == pytest.approx(1.0 - PROBS[LABELS == 0].sum())
    scores[0, 2, 3] = 1.0  # token 3 (label 4) now predicts class 2: wrong under both rules
    scores[0, 4, 4] = 1.0  # token 4 (label 0) predicts class 4: wrong under both rules
    assert training.scores_error(scores, LABELS, PROBS, ties="first").item() == pytest.approx(first + PROBS[4])


def test_relu_model_with_dead_units_ties_like_the_papers_argmax():
    """An input whose embedding is all negative has ReLU(e) = 0, scores 0 for every class and no gradient:
    with ties="first" it is right exactly when its class is 0."""
    E, U, tokens = small_problem(R=1, d=4, T=32)
    E[0, 5] = -1.0  # token 5: class 0, dead
    E[0, 6] = -1.0  # token 6: class 1, dead
    out = training.train(E, U, LABELS, PROBS, lr=1.0, tokens=tokens, batch_size=8, model="relu", ties="first")
    torch.testing.assert_close(out.E[0, 5:7], E[0, 5:7], rtol=0, atol=0)
    assert out.scores[0, 0, 6] == 0 and out.scores[0, :, 6].abs().max() == 0
    pred = out.scores[0].argmax(0)
    assert pred[5] == 0 and pred[6] == 0
    err = ((pred != torch.as_tensor(LABELS)).double() @ torch.as_tensor(PROBS)).item()
    assert out.errors[0, -1] == pytest.approx(err)


def test_grid_file_round_trip(tmp_path):
    """write_grid_file writes the finished points of the grid from a sweep cache (here one point, so 80
    runs) and load_grid reads them back with the documented columns and types; no file is an error."""
    point = {"d": 10, "T": 1024, "batch_size": 1024, "optimizer": "adam", "model": "relu"}
    table = sweep.run_sweep("optimization_grid", [point], cache=tmp_path / "cache", progress=False)
    assert training.write_grid_file(tmp_path / "grid.csv.gz", cache=tmp_path / "cache") == 80
    loaded = training.load_grid(tmp_path / "grid.csv.gz")
    assert list(loaded.columns) == list(training.GRID_COLUMNS) and loaded.attrs == {"runs": 80, "expected": 40_320}
    np.testing.assert_array_equal(loaded["error"], table["error"])
    assert (loaded["model"] == "relu").all() and (loaded["d"] == 10).all() and loaded["layer_norm"].dtype == bool
    with pytest.raises(ValueError, match="path"):
        training.load_grid(tmp_path / "missing.csv.gz")


def test_grid_file_is_never_shrunk(tmp_path):
    """A cache with fewer runs than the file holds (a wrong --cache, a relative path from another
    directory) is refused, and the file is left as it is."""
    point = {"d": 10, "T": 1024, "batch_size": 1024, "optimizer": "sgd", "model": "W"}
    sweep.run_sweep("optimization_grid", [point], cache=tmp_path / "cache", progress=False)
    target = tmp_path / "grid.csv.gz"
    with pytest.raises(ValueError, match="cache"):
        training.write_grid_file(target, cache=tmp_path / "empty")
    assert not target.exists()
    training.write_grid_file(target, cache=tmp_path / "cache")
    before = target.read_bytes()
    with pytest.raises(ValueError, match="cache"):
        training.write_grid_file(target, cache=tmp_path / "empty")
    assert target.read_bytes() == before


def _names(parameter):
    """An error message that names ``parameter`` as a word."""
    return rf"(^|\W){parameter}(\W|$)"


@pytest.mark.parametrize("lr", [None, "x", ["a", "b"], [0.1, np.nan], [], [1.0, -1.0]])
def test_grid_learning_rates_refuse_bad_step_sizes_by_name(lr):
    """Fuzz findings: None and NaN came back as NaN step sizes, strings as numpy's conversion error."""
    with pytest.raises((ValueError, TypeError), match=_names("lr")):
        training.grid_learning_rates("adam", "W", lr, 10)


@pytest.mark.parametrize("lrs", [None, "x", ["a", "b"], [1.0, np.nan], [], np.ones((1, 1, 2))])
def test_two_token_run_refuses_bad_step_sizes_by_name(lrs):
    with pytest.raises((ValueError, TypeError), match=_names("lrs")):
        training.two_token_run(lrs=lrs, steps=3)


def test_two_token_run_bounds_its_cost_before_running(monkeypatch):
    """steps = 1e12 hung; now refused up front with the estimate and the way to raise the bound. The bound
    is real: with the work bound lowered below the estimate of 35 steps, the usual run is refused too, and a
    bound above it lets the run through."""
    with pytest.raises(ValueError, match=r"steps.*ASSOCMEM_MAX_(BYTES|WORK)"):
        training.two_token_run(steps=10**12)
    monkeypatch.setenv("ASSOCMEM_MAX_WORK", "1e6")  # 35 steps cost about 35 x 1e5 operations
    with pytest.raises(ValueError, match=r"steps.*operations"):
        training.two_token_run(steps=35)
    monkeypatch.setenv("ASSOCMEM_MAX_WORK", "1e8")
    assert training.two_token_run(steps=35).losses.shape == (2, 36)


@pytest.mark.parametrize("parameter,value", [
    ("lrs", None), ("lrs", "x"), ("lrs", []), ("lrs", [0.1, np.nan]), ("lrs", ["a"]), ("lrs", np.ones((1, 1, 1))),
    ("seeds", None), ("seeds", "x"), ("seeds", []), ("seeds", [np.nan]), ("seeds", ["a"]),
    ("seeds", np.zeros((1, 1, 1), int)),
    ("layer_norms", None), ("layer_norms", []), ("layer_norms", [1, 0]),
    ("M", 10**12), ("N", 0), ("T", 2.5)])
def test_simulate_refuses_bad_axes_by_name(parameter, value):
    """Fuzz findings: torch.cat's and int()'s messages, or memory's budget naming its own parameters."""
    with pytest.raises((ValueError, TypeError), match=_names(parameter)):
        training.simulate(N=12, M=3, d=6, T=40, batch_size=4, **{parameter: value})


def test_simulate_accepts_single_values_for_its_axes():
    runs, trained = training.simulate(N=12, M=3, d=6, T=40, batch_size=4, lrs=1.0, seeds=3, layer_norms=True)
    assert runs == [{"seed": 3, "lr": 1.0, "layer_norm": True}] and trained.errors.shape == (1, 2)


@pytest.mark.parametrize("lr", [None, "x", 0.0, np.inf])
def test_decoupled_comparison_refuses_bad_step_size_by_name(lr):
    with pytest.raises((ValueError, TypeError), match=_names("lr")):
        training.decoupled_comparison(N=12, d=6, batch_size=4, steps=2, trials=2, lr=lr)


def test_load_grid_refuses_a_bad_path_by_name(tmp_path):
    """Fuzz findings: a float path raised os.fspath's TypeError, a binary file pandas' UnicodeDecodeError."""
    with pytest.raises(TypeError, match=_names("path")):
        training.load_grid(float("nan"))
    binary = tmp_path / "x"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=_names("path")):
        training.load_grid(binary)


@pytest.mark.parametrize("model", ["W", "learned"])
@pytest.mark.parametrize("columns", [3, 16, 64])
def test_held_low_rank_sgd_updates_equal_the_step_by_step_update(model, columns, monkeypatch):
    """Plain SGD on a large dense W holds each step's rank-P update as factors and folds them into W every
    few steps (training._PendingUpdates): the same sums in another order, so float64 runs agree to rounding.
    Forced on a small problem, with buffers of 3 columns (every step's update direct: 4 P > 3), 16 (steps of
    P <= 4 held, a fold every few steps, larger ones direct) and 64 (several steps held); recorded every 3 steps
    (the scores fold the buffer)."""
    E, U, tokens = small_problem(R=4, d=12, T=128)
    W0 = training.initial_memory(range(4), 12, init="random", dtype=torch.float64)
    args = dict(lr=[0.1, 1.0, 10.0, 3.0], tokens=tokens, batch_size=16, layer_norm=[False, True, False, True],
                model=model, W0=W0, method="dense", eval_every=3)
    monkeypatch.setattr(training, "LOW_RANK_MIN_FLOATS", 10 ** 12)
    direct = training.train(E, U, LABELS, PROBS, **args)
    monkeypatch.setattr(training, "LOW_RANK_MIN_FLOATS", 0)
    monkeypatch.setattr(training, "LOW_RANK_COLUMNS", columns)
    held = training.train(E, U, LABELS, PROBS, **args)
    torch.testing.assert_close(held.W, direct.W, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(held.E, direct.E, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(held.losses, direct.losses, rtol=1e-10)
    np.testing.assert_array_equal(held.errors, direct.errors)


@pytest.mark.parametrize("change, name", [
    (dict(E="nan"), "E"), (dict(U="nan"), "U"), (dict(probs="x"), "probs"), (dict(probs=["a"] * N), "probs"),
    (dict(lr="x"), "lr"), (dict(lr={"W": "x"}), "lr"), (dict(betas=None), "betas"), (dict(betas=0.9), "betas"),
])
def test_train_refuses_nan_embeddings_and_unreadable_numbers_by_name(change, name):
    """Fuzz findings: NaN in E or U trained silently into NaN results; strings for probs or lr gave numpy's
    "could not convert string to float", betas=None "'NoneType' object is not iterable"."""
    E, U, tokens = small_problem(R=2, T=16)
    args = dict(E=E, U=U, labels=LABELS, probs=PROBS, lr=1.0, tokens=tokens, batch_size=16, optimizer="adam")
    for tensor in ("E", "U"):
        if change.get(tensor) == "nan":
            args[tensor] = args[tensor].clone()
            args[tensor][1, 0, 0] = np.nan
            change = {}
    with pytest.raises((ValueError, TypeError), match=_names(name)):
        training.train(**(args | change))


def _gradient_problem():
    R, d, P = 2, 7, 9
    gen = torch.Generator().manual_seed(0)
    W, E, U = (torch.randn(R, *shape, generator=gen, dtype=torch.float64) for shape in ((d, d), (N, d), (M, d)))
    idx = torch.randint(0, N, (R, P), generator=gen)
    return dict(W=W, E=E, U=U, labels=torch.as_tensor(LABELS), idx=idx,
                weights=torch.rand(R, P, generator=gen, dtype=torch.float64))


@pytest.mark.parametrize("name, bad", [
    ("W", None), ("W", "x"), ("W", torch.full((2, 7, 7), np.nan)), ("W", torch.zeros(2, 6, 6)),
    ("E", []), ("E", None), ("E", torch.zeros(1, N, 7)), ("U", torch.zeros(2, M, 6)), ("U", "x"),
    ("labels", None), ("labels", "x"), ("labels", np.arange(N) % (M + 1)), ("labels", np.full(N, np.nan)),
    ("idx", None), ("idx", torch.zeros(2, 0, dtype=torch.long)), ("idx", torch.full((2, 9), float(N))),
    ("idx", torch.full((2, 9), N)), ("idx", torch.zeros(1, 1, 2, 9, dtype=torch.long)),
    ("weights", None), ("weights", "x"), ("weights", torch.ones(2, 3)), ("weights", torch.full((2, 9), np.nan)),
    ("layer_norm", "yes"), ("layer_norm", 2), ("layer_norm", None), ("wrt", None), ("wrt", "W"), ("wrt", ("V",)),
])
def test_gradients_refuse_bad_input_by_name(name, bad):
    """Fuzz findings: malformed inputs of the hand-written gradients ended in AttributeError, IndexError,
    torch's size-mismatch RuntimeError or silent NaN, each now a clear error naming the parameter."""
    args = _gradient_problem() | {name: bad}
    with pytest.raises((ValueError, TypeError), match=_names(name)):
        training.gradients(**args)


def test_gradients_checked_inputs_give_the_same_numbers():
    """The checks convert without changing anything: arrays and lists give the gradients of the tensors,
    a per-run layer-norm mask those of the runs taken one at a time."""
    args = _gradient_problem()
    loss, grads = training.gradients(**args)
    as_arrays = {k: (v.numpy() if k in ("labels", "idx", "weights") else v) for k, v in args.items()}
    loss2, grads2 = training.gradients(**as_arrays)
    torch.testing.assert_close(loss, loss2, rtol=0, atol=0)
    for name in grads:
        torch.testing.assert_close(grads[name], grads2[name], rtol=0, atol=0)
    mixed, _ = training.gradients(**args, layer_norm=torch.tensor([False, True]))
    assert mixed[0] == loss[0] and mixed[1] == training.gradients(**args, layer_norm=True)[0][1]


@pytest.mark.parametrize("kwargs, name", [
    (dict(path=3), "path"), (dict(path=np.array(["a", "b"])), "path"), (dict(cache=3), "cache"),
    (dict(cache=False), "cache"), (dict(cache=np.array(["a", "b"])), "cache"),
])
def test_grid_file_refuses_paths_of_the_wrong_type_by_name(tmp_path, kwargs, name):
    """Fuzz findings: an int or array path gave pathlib's TypeError, a cache of the wrong type the
    DiskCache's error naming 'directory'; False would have meant the default cache."""
    args = dict(path=tmp_path / "grid.csv.gz", cache=tmp_path / "cache") | kwargs
    with pytest.raises(TypeError, match=_names(name)):
        training.write_grid_file(**args)
    assert not (tmp_path / "grid.csv.gz").exists()


@pytest.mark.parametrize("change, name", [
    (dict(scores=None), "scores"), (dict(scores="x"), "scores"), (dict(scores=[[1.0]]), "scores"),
    (dict(scores=torch.zeros(1, 1, 2, M, N)), "scores"), (dict(labels=[]), "labels"), (dict(labels=None), "labels"),
    (dict(labels=["a"] * N), "labels"), (dict(labels=np.full(N, np.nan)), "labels"), (dict(probs=[]), "probs"),
    (dict(probs=None), "probs"), (dict(probs="x"), "probs"), (dict(probs=np.full(N, np.nan)), "probs"),
])
def test_scores_error_refuses_bad_tables_by_name(change, name):
    """Fuzz findings: None or strings gave AttributeError or torch's conversion errors, empty or NaN labels
    and probs RuntimeErrors or a silent NaN."""
    args = dict(scores=torch.zeros(2, M, N, dtype=torch.float64), labels=LABELS, probs=PROBS) | change
    with pytest.raises((ValueError, TypeError), match=_names(name)):
        training.scores_error(**args)


def test_scores_error_gives_nan_exactly_for_the_diverged_runs():
    """A NaN in a run's scores is that run's divergence, reported as its documented NaN error; the other
    run keeps its number (ties counted as errors: all-zero scores err everywhere)."""
    scores = torch.zeros(2, M, N, dtype=torch.float64)
    scores[1, 0, 3] = np.nan
    error = training.scores_error(scores, LABELS, PROBS)
    assert error[0] == pytest.approx(1.0) and torch.isnan(error[1])


@pytest.mark.parametrize("seeds", [None, "x", [], ["a"], [0.5, np.nan], np.zeros((1, 1, 2), dtype=int), [-1]])
def test_run_embeddings_refuse_bad_seeds_by_name(seeds):
    """Fuzz findings: torch.cat's "expected a non-empty list", int()'s "invalid literal", "cannot convert
    float NaN to integer", none of them naming runs_seeds."""
    with pytest.raises((ValueError, TypeError), match=_names("runs_seeds")):
        training.run_embeddings(seeds, N, M, 4)
    with pytest.raises((ValueError, TypeError), match=_names("runs_seeds")):
        training.initial_memory(seeds, 4, init="random")


def test_run_embeddings_bound_their_memory_by_their_own_parameters():
    """Fuzz finding: N = 1e12 was refused by the embedding draw's budget, naming its n, d, trials."""
    for name in ("N", "M"):
        with pytest.raises(ValueError, match=rf"\b{name}\b.*ASSOCMEM_MAX_BYTES"):
            training.run_embeddings([0, 1], **({"N": N, "M": M, "d": 4} | {name: 10**12}))
    E, U = training.run_embeddings(range(2), N, M, 4)  # a range is an iterable of seeds
    assert E.shape == (2, N, 4) and U.shape == (2, M, 4)
