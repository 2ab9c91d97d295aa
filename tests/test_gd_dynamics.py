"""Tests of assocmem.gd_dynamics: sharpness against the exact Hessian, Cover's count against the
separability LP, stability facts of gradient descent, and the reductions used by chapter 4."""

import math

import numpy as np
import pytest
import torch

from assocmem import gd_dynamics as g
from assocmem import training, zipf


def _random_problem(R, N, M, d, seed):
    gen = torch.Generator().manual_seed(seed)
    E = torch.randn(R, N, d, generator=gen, dtype=torch.float64)
    U = torch.randn(R, M, d, generator=gen, dtype=torch.float64)
    W = 2 * torch.randn(R, d, d, generator=gen, dtype=torch.float64)
    labels = np.arange(N) % M
    return W, E, U, labels, zipf.zipf_probs(N, 1.0)


def _exact_hessian(W, E, U, labels, probs, r):
    d = W.shape[-1]
    fn = lambda V: g.population_loss(V[None], E[r:r + 1], U[r:r + 1], labels, probs)[0]  # noqa: E731
    return torch.autograd.functional.hessian(fn, W[r]).reshape(d * d, d * d)


@pytest.mark.parametrize(("N", "M", "d"), [(2, 2, 2), (5, 3, 3), (6, 4, 2), (4, 2, 5)])
def test_sharpness_is_the_top_eigenvalue_of_the_exact_hessian(N, M, d):
    W, E, U, labels, probs = _random_problem(4, N, M, d, seed=N + 10 * M + 100 * d)
    W[0] = 0  # also at the origin, where every softmax is uniform
    s = g.sharpness(W, E, U, labels, probs)
    for r in range(4):
        exact = torch.linalg.eigvalsh(_exact_hessian(W, E, U, labels, probs, r))[-1]
        assert s[r].item() == pytest.approx(exact.item(), rel=1e-9, abs=1e-12)


def test_hessian_of_the_loss_is_the_kronecker_formula():
    W, E, U, labels, probs = _random_problem(1, 5, 3, 3, seed=7)
    sigma = torch.softmax(U[0] @ W[0] @ E[0].T, dim=0)  # (M, N)
    formula = sum(probs[x] * torch.kron(U[0].T @ (torch.diag(sigma[:, x]) - torch.outer(sigma[:, x], sigma[:, x]))
                                        @ U[0], torch.outer(E[0, x], E[0, x])) for x in range(5))
    # vec(W) row-major: W[i, j] -> i * d + j; the score is u^T W e, so the output side is the row index
    assert torch.allclose(_exact_hessian(W, E, U, labels, probs, 0), formula, rtol=1e-10, atol=1e-13)


def test_lanczos_on_a_quadratic_with_a_repeated_top_eigenvalue():
    spectrum = torch.tensor([3.0, 3.0, 1.0, 0.5, 0.0, 0.0], dtype=torch.float64)
    Q, _ = torch.linalg.qr(torch.randn(6, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64))
    A = Q @ torch.diag(spectrum) @ Q.T
    fn = lambda x: 0.5 * torch.einsum("ri,ij,rj->r", x, A, x)  # noqa: E731
    x = torch.randn(3, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    assert torch.allclose(g.top_hessian_eigenvalue(fn, x), torch.full((3,), 3.0, dtype=torch.float64), rtol=1e-12)
    # a truncated Krylov space gives a lower bound, never more than the top eigenvalue
    assert (g.top_hessian_eigenvalue(fn, x, iters=1) <= 3.0 + 1e-12).all()


def test_lanczos_zero_hessian_and_bad_input():
    x = torch.zeros(2, 3, dtype=torch.float64)
    assert torch.equal(g.top_hessian_eigenvalue(lambda v: v.sum(1), x), torch.zeros(2, dtype=torch.float64))
    with pytest.raises(TypeError, match="params"):
        g.top_hessian_eigenvalue(lambda v: v.sum(1), torch.zeros(3, dtype=torch.int64))
    with pytest.raises(ValueError, match="iters"):
        g.top_hessian_eigenvalue(lambda v: v.sum(1), x, iters=0)


def test_population_loss_is_trainings_loss():
    W, E, U, labels, probs = _random_problem(3, 6, 3, 4, seed=3)
    out = training.train(E, U, labels, probs, lr=1.0, steps=1, W0=W, method="dense")
    assert np.allclose(out.losses[:, 0], g.population_loss(W, E, U, labels, probs).numpy(), rtol=1e-12)


def test_trajectory_split_does_not_change_the_run_and_sharpness_obeys_the_smoothness_bound():
    E, U = g.sphere_memory(12, 2, 3, seed=4, trials=2)
    labels, probs = zipf.mod_labels(12, 2), zipf.zipf_probs(12, 1.0)
    whole = g.gd_trajectory(E, U, labels, probs, [1.0, 10.0], 60)
    split = g.gd_trajectory(E, U, labels, probs, [1.0, 10.0], 60, window=20, every=5)
    assert whole.losses.shape == (2, 61) and split.losses.shape == (2, 61)
    assert np.allclose(whole.losses, split.losses, rtol=1e-10, atol=1e-14)
    assert np.array_equal(split.sharpness_steps, np.arange(40, 61, 5))
    assert np.allclose(whole.sharpness[:, 40::5], split.sharpness, rtol=1e-8)
    # M = 2: the Hessian is (delta delta^T) kron sum_x p s(1-s) e e^T,
    # so lambda <= |delta|^2 / 4 * lambda_max(sum p e e^T)
    delta2 = ((U[:, 0] - U[:, 1]) ** 2).sum(1)
    cov = torch.einsum("x,rxi,rxj->rij", torch.as_tensor(probs), E, E)
    bound = (delta2 / 4 * torch.linalg.eigvalsh(cov)[:, -1]).numpy()
    assert (whole.sharpness <= bound[:, None] * (1 + 1e-10)).all()
    # at W = 0 every s(1-s) is 1/4: the bound is attained
    assert np.allclose(whole.sharpness[:, 0], bound, rtol=1e-9)


def test_below_two_over_the_global_smoothness_descent_never_rises():
    # unit embeddings, M = 2: the loss is L-smooth with L <= 1, so eta = 1 < 2 / L decreases it at every step
    rows = g.load_scan(N=10, ds=(2, 8), lrs=(1.0, 30.0), trials=4, steps=150, window=50, every=10)
    for row in rows:
        assert row["load"] == pytest.approx(10 / row["d"])
        if row["lr"] == 1.0:
            assert row["rise_fraction"] == 0.0 and row["amplitude"] == 0.0
            assert not row["predicted_oscillation"]
        if row["separable"]:
            assert row["min_sharpness"] == 0.0 and not row["predicted_oscillation"]
        else:
            assert row["min_sharpness"] > 0
    assert any(not r["separable"] for r in rows) and any(r["separable"] for r in rows)


def _separable_by_angle_scan(E, labels):
    """d = 2, M = 2: brute force over classifier directions."""
    y = np.where(labels == 0, 1.0, -1.0)
    theta = np.linspace(0, 2 * np.pi, 200_001)
    c = np.stack([np.cos(theta), np.sin(theta)], 1)
    return bool(((c @ E.T) * y > 0).all(1).any())


def test_separability_lp_against_a_brute_force_scan_and_cover():
    labels = zipf.mod_labels(6, 2)
    E, U = g.sphere_memory(6, 2, 2, seed=0, trials=400)
    sep = g.separable(E, U, labels)
    for r in range(40):
        assert sep[r] == _separable_by_angle_scan(E[r].numpy(), labels)
    p = g.cover_separable_probability(6, 2)
    assert p == pytest.approx(6 / 32)
    assert abs(sep.mean() - p) < 4 * math.sqrt(p * (1 - p) / 400)


def test_separability_with_more_classes():
    # N <= d: independent embeddings can be mapped anywhere, so every labelling is storable
    E, U = g.sphere_memory(4, 5, 4, seed=1, trials=3)
    assert g.separable(E, U, np.arange(4)).all()
    # two copies of one embedding with different labels: never storable
    E2 = E.clone()
    E2[:, 1] = E2[:, 0]
    assert not g.separable(E2, U, np.arange(4)).any()


def test_cover_probability_values():
    assert g.cover_separable_probability(5, 5) == 1.0
    assert g.cover_separable_probability(3, 7) == 1.0
    for d in (1, 2, 5, 10):
        assert g.cover_separable_probability(2 * d, d) == pytest.approx(0.5)
    assert g.cover_separable_probability(4, 2) == pytest.approx((1 + 3) / 8)
    with pytest.raises(ValueError, match="d"):
        g.cover_separable_probability(4, 0)


def test_loss_minimum_is_a_minimum_with_positive_sharpness():
    E, U = g.sphere_memory(30, 2, 2, seed=0, trials=3)
    labels, probs = zipf.mod_labels(30, 2), zipf.zipf_probs(30, 1.0)
    assert not g.separable(E, U, labels).any()
    W, grad_norm = g.loss_minimum(E, U, labels, probs)
    assert (grad_norm < 1e-7).all()
    base = g.population_loss(W, E, U, labels, probs)
    gen = torch.Generator().manual_seed(0)
    for _ in range(5):
        bumped = W + 1e-3 * torch.randn(W.shape, generator=gen, dtype=W.dtype)
        assert (g.population_loss(bumped, E, U, labels, probs) >= base - 1e-14).all()
    lam = g.sharpness(W, E, U, labels, probs)
    assert (lam > 0).all()
    # gradient descent below 2 / lambda_* (here 3 * lambda_* < 2) converges to the same loss
    assert (3.0 * lam < 2).all()
    traj = g.gd_trajectory(E, U, labels, probs, 3.0, 1000, window=1)
    assert np.allclose(traj.losses[:, -1], base.numpy(), rtol=1e-6)
    assert np.allclose(traj.sharpness[:, -1], lam.numpy(), rtol=1e-3)


def test_late_oscillation_definitions():
    down = np.linspace(2.0, 1.0, 11)
    osc = np.array([1.0, 1.2] * 5 + [1.0])
    out = g.late_oscillation(np.stack([down, osc]), 10)
    assert np.allclose(out["rise_fraction"], [0.0, 0.5])
    assert np.allclose(out["amplitude"], [0.0, (5 * 0.2 / 10) / osc.mean()])
    assert g.late_oscillation(osc, 4)["rise_fraction"] == pytest.approx(0.5)
    with pytest.raises(ValueError, match="window"):
        g.late_oscillation(osc, 11)


def test_classifier_plane_is_the_landscape_of_descent():
    E, U = g.sphere_memory(5, 2, 2, seed=3)
    labels, probs = zipf.mod_labels(5, 2), zipf.zipf_probs(5, 1.0)
    traj = g.gd_trajectory(E, U, labels, probs, 3.0, 12)
    c = g.classifier_coordinates(traj.history[0], U[0])  # (13, 2)
    for t in (0, 5, 12):
        on_plane = g.classifier_plane_losses(E[0], U[0], labels, probs, [c[t, 0].item()], [c[t, 1].item()])
        assert on_plane[0, 0] == pytest.approx(traj.losses[0, t], rel=1e-12)
    a, b = np.linspace(-2, 2, 3), np.linspace(-1, 1, 4)
    grid = g.classifier_plane_losses(E[0], U[0], labels, probs, a, b)
    assert grid.shape == (4, 3)
    delta = U[0, 0] - U[0, 1]
    Wc = delta[:, None] * torch.tensor([a[2], b[1]], dtype=E.dtype)[None, :] / (delta @ delta)
    assert torch.allclose(g.classifier_coordinates(Wc, U[0]), torch.tensor([a[2], b[1]], dtype=E.dtype))
    with pytest.raises(ValueError, match="U"):
        g.classifier_coordinates(Wc, U[0, :1])


def test_token_margins_sign_is_correctness():
    W, E, U, labels, probs = _random_problem(1, 6, 3, 3, seed=11)
    m = g.token_margins(W[0], E[0], U[0], labels)
    scores = U[0] @ W[0] @ E[0].T
    assert torch.equal(m > 0, scores.argmax(0) == torch.as_tensor(labels))
    assert torch.allclose(g.token_margins(W, E[0], U[0], labels)[0], m)


def test_one_step_boundary_decides_the_first_step():
    p1s, cosines = np.linspace(0.55, 0.95, 9), np.linspace(-0.95, 0.95, 39)
    bound = g.one_step_boundary(p1s)
    for i, p1 in enumerate(p1s):
        for c in cosines:
            if abs(c - bound[i]) < 1e-6:
                continue
            out = training.two_token_run(lrs=(0.5, 5.0), steps=1, cosine=float(c), p1=float(p1))
            rare_right = (out.scores[:, 1, 1] > out.scores[:, 0, 1]).numpy()
            assert (rare_right == (c < bound[i])).all()
    with pytest.raises(ValueError, match="p1"):
        g.one_step_boundary([1.0])


def test_two_token_flow_is_descent_when_the_step_is_the_euler_step():
    p1s, cosines = np.linspace(0.55, 0.95, 7), np.linspace(-0.9, 0.99, 9)
    out = g.two_token_phase(p1s, cosines, [0.05], steps=120, flow_step=0.05)
    assert out["success"].shape == (1, 7, 9)
    assert np.array_equal(out["success"], out["flow_success"])
    assert np.array_equal(out["success"], out["rare_margin"] > 0)
    with pytest.raises(ValueError, match="flow_step"):
        g.two_token_phase(p1s, cosines, [0.07], steps=1, flow_step=0.05)
    with pytest.raises(ValueError, match="cosines"):
        g.two_token_phase(p1s, [1.5], [1.0])
    with pytest.raises(ValueError, match="p1"):
        g.two_token_phase([0.0], cosines, [1.0])


def test_segmented_sgd_chains_segments_exactly():
    one = g.segmented_sgd(segments=((2.0, 40),), trials=3, eval_every=5)
    two = g.segmented_sgd(segments=((2.0, 20), (2.0, 20)), trials=3, eval_every=5)
    assert np.array_equal(one["steps"], np.arange(0, 41, 5))
    assert np.allclose(one["error"], two["error"], atol=1e-12)
    assert np.allclose(one["predicted_error"], two["predicted_error"])
    assert (one["error"][:, 0] == 1.0).all()  # W = 0: every class ties, ties count as errors
    direct = training.simulate(N=10, M=5, alpha=1.5, d=5, T=40, batch_size=1, lrs=(2.0,), seeds=range(3),
                               eval_every=5, dtype=torch.float64)[1]
    assert np.allclose(direct.errors, one["error"], atol=1e-12)
    with pytest.raises(ValueError, match="eval_every"):
        g.segmented_sgd(segments=((1.0, 7),), eval_every=5)


def test_bad_input_names_the_parameter():
    E, U = g.sphere_memory(4, 2, 2, seed=0)
    labels, probs = zipf.mod_labels(4, 2), zipf.zipf_probs(4, 1.0)
    with pytest.raises(ValueError, match="window"):
        g.gd_trajectory(E, U, labels, probs, 1.0, 5, window=6)
    with pytest.raises(ValueError, match="every"):
        g.gd_trajectory(E, U, labels, probs, 1.0, 5, window=5, every=2)
    with pytest.raises(ValueError, match="gtol"):
        g.loss_minimum(E, U, labels, probs, gtol=0.0)
    with pytest.raises(ValueError, match="ds"):
        g.load_scan(ds=())
    with pytest.raises(ValueError, match="lrs"):
        g.load_scan(lrs=(0.0,))


def test_cover_probability_is_the_binomial_tail_at_any_size():
    for N in (1, 2, 7, 40, 200):
        for d in range(1, N + 2):
            exact = math.fsum(math.comb(N - 1, k) for k in range(min(d, N))) / 2 ** (N - 1)
            assert g.cover_separable_probability(N, d) == pytest.approx(exact, rel=1e-12, abs=1e-300)
    # sizes where the big-integer sum would take hours: P(2d, d) = 1/2 by symmetry, a far tail underflows to 0
    assert g.cover_separable_probability(2 * 10**11, 10**11) == pytest.approx(0.5, rel=1e-9)
    assert g.cover_separable_probability(10**12, 6) == 0.0
    assert g.cover_separable_probability(10**12, 10**12) == 1.0


def test_token_margins_refuse_bad_tensors_by_name():
    W, E, U, labels, _ = _random_problem(1, 6, 3, 3, seed=11)
    W, E, U = W[0], E[0], U[0]
    bad_E = E.clone()
    bad_E[0, 0] = math.nan
    for kwargs, error, name in [({"E": bad_E}, ValueError, "E"), ({"W": None}, TypeError, "W"),
                                ({"U": U[:0]}, ValueError, "U"), ({"E": E[None]}, ValueError, "E"),
                                ({"U": "x"}, TypeError, "U"), ({"labels": labels + 0.5}, TypeError, "labels"),
                                ({"labels": labels[:-1]}, ValueError, "labels"),
                                ({"labels": labels * 3}, ValueError, "labels"), ({"labels": None}, TypeError, "labels"),
                                ({"W": W[:2]}, ValueError, "W")]:
        args = {"W": W, "E": E, "U": U, "labels": labels, **kwargs}
        with pytest.raises(error, match=rf"\b{name}\b"):
            g.token_margins(**args)
    # float32 memories against float64 embeddings are promoted, not refused
    assert torch.allclose(g.token_margins(W.float(), E, U, labels), g.token_margins(W, E, U, labels), atol=1e-5)


def test_two_token_inputs_are_checked_by_name_and_their_cost_before_any_work():
    with pytest.raises(TypeError, match="p1 "):
        g.one_step_boundary(None)
    with pytest.raises(ValueError, match="p1 "):
        g.one_step_boundary(math.nan)
    for kwargs, error, name in [({"p1s": None}, TypeError, "p1s"), ({"p1s": []}, ValueError, "p1s"),
                                ({"cosines": [math.nan]}, ValueError, "cosines"),
                                ({"cosines": "x"}, TypeError, "cosines"),
                                ({"lrs": np.ones((1, 1, 2))}, ValueError, "lrs"),
                                ({"steps": 10**12}, ValueError, "steps"),
                                ({"lrs": [1e300]}, ValueError, "flow_step")]:
        args = {"p1s": [0.75], "cosines": [0.9], "lrs": [0.1], **kwargs}
        with pytest.raises(error, match=rf"\b{name}\b"):
            g.two_token_phase(**args)
    scalar = g.two_token_phase(0.75, 0.9, 0.1, steps=10)  # numbers are one-point axes
    assert scalar["success"].shape == (1, 1, 1)
    assert np.array_equal(scalar["success"], g.two_token_phase([0.75], [0.9], [0.1], steps=10)["success"])


def test_segmented_sgd_and_loss_curves_refuse_bad_input_by_name():
    for segments, error in [(None, TypeError), ("x", TypeError), ((), TypeError), (((1.0,),), TypeError),
                            (((1.0, 2.5),), TypeError), (((-1.0, 10),), ValueError)]:
        with pytest.raises(error, match="segments"):
            g.segmented_sgd(segments=segments, trials=2)
    for name in ("trials", "M"):
        with pytest.raises(ValueError, match=rf"\b{name}\b.*ASSOCMEM_MAX"):
            g.segmented_sgd(**{name: 10**12})
    with pytest.raises(ValueError, match=r"\bN\b"):
        g.sphere_memory(10**12, 2, 3, seed=0)
    with pytest.raises(TypeError, match="losses"):
        g.late_oscillation(None, 2)
    with pytest.raises(ValueError, match="losses"):
        g.late_oscillation([1.0, math.nan, 0.5], 2)
    with pytest.raises(ValueError, match="losses"):
        g.late_oscillation(1.0, 1)


def test_batched_run_functions_refuse_bad_runs_by_name_and_match_when_checked():
    """population_loss, sharpness, loss_minimum, separable and gd_trajectory check E, U, W, labels and probs
    by name before any work (a 2-D E used to end in an IndexError, a NaN probability in a NaN loss); on valid
    input the checked loss equals the formula computed by hand."""
    gen = torch.Generator().manual_seed(3)
    E = torch.randn(2, 5, 3, generator=gen, dtype=torch.float64)
    U = torch.randn(2, 2, 3, generator=gen, dtype=torch.float64)
    W = torch.randn(2, 3, 3, generator=gen, dtype=torch.float64)
    labels, probs = [0, 1, 0, 1, 1], np.full(5, 0.2)
    scores = torch.einsum("rmd,rde,rne->rmn", U, W, E)
    by_hand = -(torch.log_softmax(scores, 1)[:, labels, range(5)] * 0.2).sum(1)
    torch.testing.assert_close(g.population_loss(W, E, U, labels, probs), by_hand, rtol=1e-12, atol=0)
    cases = [
        (lambda: g.population_loss(W, E[0], U, labels, probs), "E"),
        (lambda: g.population_loss(W, E, U[:1], labels, probs), "U"),
        (lambda: g.population_loss(None, E, U, labels, probs), "W"),
        (lambda: g.sharpness(W[:, :2], E, U, labels, probs), "W"),
        (lambda: g.population_loss(W, E, U, [0, 1, 0, 1, 2], probs), "labels"),
        (lambda: g.population_loss(W, E, U, labels, [0.2, 0.2, math.nan, 0.2, 0.2]), "probs"),
        (lambda: g.sharpness(W, E, U, labels, None), "probs"),
        (lambda: g.loss_minimum(E, U, labels, probs[:4]), "probs"),
        (lambda: g.loss_minimum(E, U, labels, probs, W0="x"), "W0"),
        (lambda: g.separable(E, U, None), "labels"),
        (lambda: g.gd_trajectory(E, U, labels, probs, "x", 3), "lr"),
        (lambda: g.gd_trajectory(E, U, labels, probs, [0.1, 0.1, 0.1], 3), "lr"),
    ]
    for call, name in cases:
        with pytest.raises((ValueError, TypeError), match=rf"\b{name}\b"):
            call()


@pytest.mark.parametrize("W, U, name", [
    (None, torch.eye(2), "W"), ("x", torch.eye(2), "W"), (torch.full((2, 2), math.nan), torch.eye(2), "W"),
    (np.ones((1, 1, 3, 3)), torch.eye(2), "W"), (torch.eye(2), None, "U"), (torch.eye(2), ["a", "b"], "U"),
    (torch.eye(2), torch.tensor([[1.0, math.nan], [0.0, 1.0]]), "U"),
])
def test_classifier_coordinates_refuse_bad_tensors_by_name(W, U, name):
    """Fuzz findings: None or strings gave AttributeError, NaN came back as NaN, a (.., 3, 3) W for a d = 2
    U numpy's "axes don't match"."""
    with pytest.raises((ValueError, TypeError), match=rf"(^|\W){name}(\W|$)"):
        g.classifier_coordinates(W, U)
    # checked, an array is accepted and converted: c = W^T (u_1 - u_2)
    W = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert torch.equal(g.classifier_coordinates(W, torch.eye(2)), torch.tensor([-2.0, -2.0], dtype=torch.float64))


@pytest.mark.parametrize("change, name", [
    (dict(E=None), "E"), (dict(E="x"), "E"), (dict(U=["a", "b"]), "U"), (dict(a=None), "a"),
    (dict(a=[math.nan]), "a"), (dict(b=[]), "b"), (dict(b="x"), "b"), (dict(b=np.ones((1, 1, 3))), "b"),
])
def test_classifier_plane_losses_refuse_bad_input_by_name(change, name):
    """Fuzz findings: a None or NaN grid coordinate was reported as "W must be finite", strings as numpy's
    conversion error, a 3-D grid as torch.meshgrid's; E and U of the wrong type as AttributeError."""
    E, U = g.sphere_memory(5, 2, 2, seed=3)
    args = dict(E=E[0], U=U[0], labels=zipf.mod_labels(5, 2), probs=zipf.zipf_probs(5, 1.0), a=[0.0, 1.0],
                b=[0.5]) | change
    with pytest.raises((ValueError, TypeError), match=rf"(^|\W){name}(\W|$)"):
        g.classifier_plane_losses(**args)


@pytest.mark.parametrize("lrs", [None, (), "x", [1.0, math.nan], np.ones((1, 1, 2))])
def test_load_scan_refuses_bad_step_sizes_by_name(lrs):
    """Fuzz findings: None gave "'NoneType' object is not iterable", () an error naming E."""
    with pytest.raises((ValueError, TypeError), match=r"\blrs\b"):
        g.load_scan(N=6, M=2, ds=(2,), lrs=lrs, trials=1, steps=3, window=2, every=1, iters=4)


def test_top_hessian_eigenvalue_refuses_a_non_callable_and_empty_params():
    """Fuzz findings: fn = None or a string gave "object is not callable", empty params an IndexError."""
    params = torch.ones(2, 3, dtype=torch.float64)
    for fn in (None, "x"):
        with pytest.raises(TypeError, match=r"\bfn\b"):
            g.top_hessian_eigenvalue(fn, params)
    with pytest.raises(ValueError, match=r"\bparams\b"):
        g.top_hessian_eigenvalue(lambda p: (p ** 2).sum(-1), params[:0])
    # checked, the quadratic's Hessian 2 I has top eigenvalue 2 for each run
    top = g.top_hessian_eigenvalue(lambda p: (p ** 2).sum(-1), params)
    torch.testing.assert_close(top, torch.full((2,), 2.0, dtype=torch.float64))
