r"""Full-batch gradient descent on small associative memories: sharpness, regimes, landscapes,
stability and schedules (chapter 4, after [CSB24]).

The memory scores class ``y`` for token ``x`` by :math:`s_{yx} = u_y^\top W e_x` and the population
loss is

.. math:: L(W) = -\sum_x p(x) \log \operatorname{softmax}_y(s_{\cdot x})_{f_*(x)} ,

convex in ``W`` (a log-sum-exp of linear maps), so its Hessian is positive semi-definite:

.. math:: \nabla^2 L = \sum_x p(x)\, (e_x e_x^\top) \otimes U^\top(\operatorname{diag}\sigma_x
          - \sigma_x \sigma_x^\top) U .

Gradient descent with step :math:`\eta` on a quadratic is stable iff its top eigenvalue (the
*sharpness*) is below :math:`2/\eta`. With ``M = 2`` classes the loss depends on ``W`` only through the
*classifier* :math:`c = W^\top (u_1 - u_2) \in \mathbb R^d`, since :math:`s_{1x} - s_{2x} = c^\top e_x`:
full-batch descent from ``W = 0`` moves in the plane :math:`\{(u_1 - u_2) c^\top\}`, which in
``d = 2`` is drawn exactly (:func:`classifier_plane_losses`). Every association is stored with a
positive margin at once iff the tokens are *linearly separable* (:func:`separable`); then the loss
tends to 0 along a ray and the sharpness with it. Otherwise (the memory *overflows*) the loss has a
minimiser :math:`W_*` at finite distance (:func:`loss_minimum`) whose sharpness :math:`\lambda_*` is
positive, and descent with :math:`\eta \lambda_* > 2` cannot settle there. :func:`load_scan` measures
this against the load ``N / d``; for ``M = 2`` and sphere embeddings the probability of separability
is Cover's count, :func:`cover_separable_probability`.

The runs themselves go through :func:`assocmem.training.train` (full-batch mode); this module adds
what is measured on them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.optimize
import scipy.special
import torch

from . import _validate as check
from . import memory, training, zipf
from .theory import dynamics

__all__ = ["population_loss", "top_hessian_eigenvalue", "sharpness", "sphere_memory", "Trajectory",
           "gd_trajectory", "separable", "cover_separable_probability", "loss_minimum", "late_oscillation",
           "load_scan", "classifier_coordinates", "classifier_plane_losses", "token_margins",
           "one_step_boundary", "two_token_phase", "segmented_sgd"]

_SHARPNESS_CHUNK_FLOATS = 2 ** 22  # entries of the Krylov basis of one chunk of runs (32 MiB in float64)


def population_loss(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, labels, probs) -> torch.Tensor:
    r"""Population cross-entropy :math:`L(W) = -\sum_x p(x) \log \operatorname{softmax}(U W e_x)_{f_*(x)}`
    of each run, differentiable (``torch.func`` transforms apply).

    Parameters
    ----------
    W : torch.Tensor, shape ``(R, d, d)``
        One memory per run.
    E, U : torch.Tensor, shapes ``(R, N, d)`` and ``(R, M, d)``
        Input and output embeddings of each run.
    labels : array_like of int, shape ``(N,)``
        Classes :math:`f_*(x)` in ``0..M-1``.
    probs : array_like, shape ``(N,)``
        :math:`p(x)`.

    Returns
    -------
    torch.Tensor, shape ``(R,)``
    """
    W, E, U, labels, probs = _runs(E, U, labels, probs, W=W)
    return _population_loss(W, E, U, labels, probs)


def _population_loss(W, E, U, labels, probs):
    """:func:`population_loss` on checked tensors (``labels`` int64 and ``probs`` on ``E``'s device and dtype):
    no check inside, so that ``torch.func`` transforms and line searches call it as often as they need."""
    logp = torch.log_softmax(U @ W @ E.transpose(1, 2), dim=1)  # (R, M, N)
    right = logp.gather(1, labels.expand(logp.shape[0], -1)[:, None, :])[:, 0]
    return -(right @ probs)


_ABSENT = object()  # a parameter the caller of ``_runs`` does not have (None is a value, refused by name)


def _runs(E, U, labels, probs=_ABSENT, *, W=_ABSENT, W_name: str = "W"):
    """Checked ``(W, E, U, labels, probs)`` of a batch of runs: ``E`` ``(R, N, d)``, ``U`` ``(R, M, d)``,
    ``W`` ``(R, d, d)``, finite, promoted to one dtype on ``E``'s device; ``labels`` ``N`` classes in
    ``0..M-1``; ``probs`` ``N`` non-negative finite weights; each refused by name. ``W`` and ``probs`` are
    checked only when given (an absent one is returned as None)."""
    E, U = check.tensor("E", E, ndim=3), check.tensor("U", U, ndim=3)
    R, N, d = E.shape
    if U.shape[0] != R or U.shape[2] != d:
        raise ValueError(f"U must have shape (R={R}, M, d={d}) to match E {tuple(E.shape)}, got {tuple(U.shape)}")
    dtype = torch.promote_types(E.dtype, U.dtype)
    W = None if W is _ABSENT else check.tensor(W_name, W, ndim=3)
    if W is not None:
        if tuple(W.shape) != (R, d, d):
            raise ValueError(f"{W_name} must have shape (R, d, d) = ({R}, {d}, {d}), got {tuple(W.shape)}")
        dtype = torch.promote_types(dtype, W.dtype)
        W = W.to(device=E.device, dtype=dtype)
    E, U = E.to(dtype), U.to(device=E.device, dtype=dtype)
    labels = torch.as_tensor(check.labels("labels", labels, N, U.shape[1]), device=E.device)
    if probs is _ABSENT:
        probs = None
    else:
        p = check.real_array("probs", probs)
        if p.shape != (N,) or (p < 0).any():
            raise ValueError(f"probs must be {N} non-negative weights, one per token, got {check._short(probs)}")
        probs = torch.as_tensor(p, dtype=dtype, device=E.device)
    return W, E, U, labels, probs


def top_hessian_eigenvalue(fn, params: torch.Tensor, *, iters: int = 40, seed: int = 0) -> torch.Tensor:
    r"""Largest Hessian eigenvalue of ``fn`` at ``params`` for each run, by Lanczos on Hessian-vector
    products (``torch.func.jvp`` of ``torch.func.grad``).

    ``fn`` maps ``params`` of shape ``(R, ...)`` to ``(R,)`` values, run ``r`` depending only on
    ``params[r]`` (so the Hessian of the sum is block-diagonal and one product serves every run).
    Lanczos with full reorthogonalisation builds ``k = min(iters, n)`` Krylov vectors per run (``n``
    parameters), stopping early once every run's Krylov space is invariant (after at most rank + 1
    products); the largest Ritz value is returned. With ``k = n``, or after such a stop, it is the exact
    top eigenvalue of a positive semi-definite Hessian such as that of :func:`population_loss` (a run
    that stops before the others contributes zero Ritz values); for ``k < n`` it is a lower bound that
    converges quickly when the top eigenvalue is separated.

    Parameters
    ----------
    fn : callable
        ``fn(params) -> (R,)`` tensor, differentiable twice.
    params : torch.Tensor, shape ``(R, ...)``
        Point at which the Hessian is taken (floating dtype; float64 recommended).
    iters : int
        Maximum Krylov dimension ``k``.
    seed : int
        Seed of the random starting vectors.

    Returns
    -------
    torch.Tensor, shape ``(R,)``
    """
    iters = check.positive_int("iters", iters)
    seed = check.seed("seed", seed)
    if not callable(fn):
        raise TypeError(f"fn must be a callable mapping params to (R,) values, got {check._short(fn)}")
    if not isinstance(params, torch.Tensor) or not params.is_floating_point() or params.ndim < 2:
        raise TypeError("params must be a floating torch tensor of shape (R, ...)")
    if params.numel() == 0:
        raise ValueError(f"params must not be empty, got shape {tuple(params.shape)}")
    R = params.shape[0]
    n = params[0].numel()
    k = min(iters, n)
    grad = torch.func.grad(lambda p: fn(p).sum())
    point = params.detach()

    def hvp(v: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(grad, (point,), (v.reshape(params.shape),))[1].reshape(R, n)

    gen = torch.Generator().manual_seed(seed)
    q = torch.randn(R, n, generator=gen, dtype=params.dtype).to(params.device)
    q = q / q.norm(dim=1, keepdim=True)
    basis = torch.zeros(R, k, n, dtype=params.dtype, device=params.device)
    alpha = torch.zeros(R, k, dtype=params.dtype, device=params.device)
    beta = torch.zeros(R, k, dtype=params.dtype, device=params.device)
    size = torch.zeros(R, dtype=params.dtype, device=params.device)  # running bound on |H| for breakdown
    for j in range(k):
        basis[:, j] = q
        w = hvp(q)
        size = torch.maximum(size, w.norm(dim=1))
        alpha[:, j] = (w * q).sum(1)
        for _ in range(2):  # full reorthogonalisation, twice for stability
            w = w - torch.einsum("rk,rkn->rn", torch.einsum("rkn,rn->rk", basis[:, :j + 1], w), basis[:, :j + 1])
        norm = w.norm(dim=1)
        alive = norm > 1e-10 * size
        if not alive.any():  # every run's Krylov space is invariant: its Ritz values are exact
            k = j + 1
            break
        if j + 1 < k:
            beta[:, j] = torch.where(alive, norm, torch.zeros_like(norm))
            q = torch.where(alive[:, None], w / norm.clamp_min(torch.finfo(params.dtype).tiny)[:, None],
                            torch.zeros_like(w))
    alpha, off = alpha[:, :k], beta[:, : k - 1]
    T = torch.diag_embed(alpha) + torch.diag_embed(off, 1) + torch.diag_embed(off, -1)
    return torch.linalg.eigvalsh(T)[:, -1]


def sharpness(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, labels, probs, *, iters: int = 40,
              seed: int = 0) -> torch.Tensor:
    r"""Sharpness :math:`\lambda_{\max}(\nabla^2_W L)` of :func:`population_loss` at each run's ``W``.

    Parameters
    ----------
    W : torch.Tensor, shape ``(R, d, d)``
    E, U : torch.Tensor, shapes ``(R, N, d)``, ``(R, M, d)``
    labels, probs : array_like, shape ``(N,)``
        As in :func:`population_loss`.
    iters : int
        Krylov dimension of :func:`top_hessian_eigenvalue` (exact when ``>= d * d``).
    seed : int
        Seed of the starting vectors.

    Returns
    -------
    torch.Tensor, shape ``(R,)``, computed in chunks of runs whose Krylov bases stay under
    ``_SHARPNESS_CHUNK_FLOATS`` entries.
    """
    W, E, U, labels, probs = _runs(E, U, labels, probs, W=W)
    iters = check.positive_int("iters", iters)
    chunk = max(1, _SHARPNESS_CHUNK_FLOATS // (min(iters, W[0].numel()) * W[0].numel()))
    return torch.cat([top_hessian_eigenvalue(lambda V, i=i: _population_loss(V, E[i:i + chunk], U[i:i + chunk],
                                                                             labels, probs),
                                             W[i:i + chunk], iters=iters, seed=seed)
                      for i in range(0, W.shape[0], chunk)])


def sphere_memory(N: int, M: int, d: int, seed: int, *, trials: int = 1, dtype=torch.float64):
    r"""Input and output embeddings uniform on the unit sphere of :math:`\mathbb R^d` (the unit circle
    for ``d = 2``), drawn by :func:`assocmem.memory.embeddings` (streams 0 and 1).

    Parameters
    ----------
    N, M : int
        Numbers of input tokens and of classes.
    d : int
        Dimension.
    seed : int
        Seed; trial ``t`` is drawn from ``(seed, stream, t)``.
    trials : int
        Independent draws (the runs axis).
    dtype : torch.dtype
        Floating dtype of the result.

    Returns
    -------
    E, U : torch.Tensor, shapes ``(trials, N, d)`` and ``(trials, M, d)``, contiguous.
    """
    N, M, d = check.positive_int("N", N), check.positive_int("M", M), check.positive_int("d", d)
    trials = check.positive_int("trials", trials)
    check.budget("N, M, d, trials", nbytes=16.0 * trials * (N + M) * d,
                 formula="a float64 draw and its copy, trials x (N + M) x d")
    E = memory.embeddings(N, d, seed, trials=trials, stream=0, kind="sphere", dtype=dtype)
    U = memory.embeddings(M, d, seed, trials=trials, stream=1, kind="sphere", dtype=dtype)
    return E.contiguous(), U.contiguous()


@dataclass
class Trajectory:
    r"""Full-batch gradient descent of ``R`` runs (:func:`gd_trajectory`).

    Attributes
    ----------
    losses, errors : numpy.ndarray, shape ``(R, steps + 1)``
        Population loss and error (ties count as errors) at every step ``0..steps``.
    sharpness_steps : numpy.ndarray, shape ``(S,)``
        Steps at which the sharpness was measured (the last ``S`` steps).
    sharpness : numpy.ndarray, shape ``(R, S)``
        :func:`sharpness` at those steps.
    W : torch.Tensor, shape ``(R, d, d)``
        Final memories.
    history : torch.Tensor, shape ``(R, S, d, d)``
        The memories at ``sharpness_steps``.
    """

    losses: np.ndarray
    errors: np.ndarray
    sharpness_steps: np.ndarray
    sharpness: np.ndarray
    W: torch.Tensor
    history: torch.Tensor


def gd_trajectory(E: torch.Tensor, U: torch.Tensor, labels, probs, lr, steps: int, *, window: int | None = None,
                  every: int = 1, W0: torch.Tensor | None = None, iters: int = 40) -> Trajectory:
    r"""Full-batch gradient descent :math:`W_{t+1} = W_t - \eta \nabla L(W_t)` from ``W0`` (zero by
    default) with :func:`assocmem.training.train`, loss and error at every step, and the sharpness
    every ``every`` steps over the last ``window`` steps (from step ``steps - window`` on).

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)``, ``(R, M, d)``
        Embeddings of each run.
    labels, probs : array_like, shape ``(N,)``
        Classes and probabilities.
    lr : float or array_like of shape ``(R,)``
        Step size :math:`\eta` of each run.
    steps : int
        Number of steps.
    window : int, optional
        Number of final steps whose sharpness is measured (default: all of them).
    every : int
        Measure the sharpness at every ``every``-th of those steps (``window`` must be a multiple).
    W0 : torch.Tensor, shape ``(R, d, d)``, optional
        Initial memories.
    iters : int
        Krylov dimension of the sharpness (:func:`sharpness`).

    Returns
    -------
    Trajectory
    """
    W0, E, U, _, _ = _runs(E, U, labels, probs, **({} if W0 is None else {"W": W0}), W_name="W0")
    rates = check.real_array("lr", lr)
    if rates.shape not in ((), (1,), (E.shape[0],)) or (rates <= 0).any():
        raise ValueError(f"lr must be a positive step size or one per run (R={E.shape[0]}), got {check._short(lr)}")
    steps = check.positive_int("steps", steps)
    iters = check.positive_int("iters", iters)
    window = steps if window is None else check.positive_int("window", window)
    if window > steps:
        raise ValueError(f"window must be at most steps={steps}, got {window}")
    every = check.positive_int("every", every)
    if window % every:
        raise ValueError(f"window={window} must be a multiple of every={every}")
    kwargs = dict(lr=lr, eval_every=1)
    losses, errors = [], []
    if steps > window:
        head = training.train(E, U, labels, probs, steps=steps - window, W0=W0, **kwargs)
        losses.append(head.losses[:, :-1])
        errors.append(head.errors[:, :-1])
        W0 = head.W
    tail = training.train(E, U, labels, probs, steps=window, W0=W0, keep_history=True, **kwargs)
    losses.append(tail.losses)
    errors.append(tail.errors)
    history = tail.history[:, ::every]  # (R, window / every + 1, d, d)
    R, S = history.shape[:2]
    flat = lambda t: t[:, None].expand(R, S, *t.shape[1:]).reshape(R * S, *t.shape[1:])  # noqa: E731
    sharp = sharpness(history.reshape(R * S, *history.shape[2:]), flat(E), flat(U), labels, probs, iters=iters)
    return Trajectory(losses=np.concatenate(losses, 1), errors=np.concatenate(errors, 1),
                      sharpness_steps=np.arange(steps - window, steps + 1, every),
                      sharpness=sharp.reshape(R, S).cpu().numpy(), W=tail.W, history=history)


def separable(E: torch.Tensor, U: torch.Tensor, labels) -> np.ndarray:
    r"""Whether some ``W`` stores every association with a positive margin, for each run:
    the linear program :math:`\exists W:\ (u_{f_*(x)} - u_y)^\top W e_x \ge 1` for all ``x`` and
    :math:`y \neq f_*(x)` (feasible iff the strict inequalities are; solved by ``scipy``'s HiGHS).

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)``, ``(R, M, d)``
    labels : array_like of int, shape ``(N,)``

    Returns
    -------
    numpy.ndarray of bool, shape ``(R,)``
    """
    _, E, U, labels, _ = _runs(E, U, labels)
    labels = labels.cpu().numpy()
    E64, U64 = E.detach().cpu().double().numpy(), U.detach().cpu().double().numpy()
    M = U64.shape[1]
    rows = [(x, y) for x in range(E64.shape[1]) for y in range(M) if y != labels[x]]
    out = np.zeros(E64.shape[0], dtype=bool)
    for r in range(E64.shape[0]):
        A = np.stack([-np.outer(U64[r, labels[x]] - U64[r, y], E64[r, x]).ravel() for x, y in rows])
        res = scipy.optimize.linprog(np.zeros(A.shape[1]), A_ub=A, b_ub=-np.ones(len(rows)),
                                     bounds=(None, None), method="highs")
        if res.status not in (0, 2):
            raise RuntimeError(f"the separability LP of run {r} ended with status {res.status}: {res.message}")
        out[r] = res.status == 0
    return out


def cover_separable_probability(N: int, d: int) -> float:
    r"""Cover's probability that ``N`` points in general position in :math:`\mathbb R^d`, labelled by
    independent fair signs, are separable by a hyperplane through the origin:

    .. math:: P(N, d) = 2^{1-N} \sum_{k=0}^{d-1} \binom{N-1}{k}
              = \Pr[\mathrm{Binomial}(N - 1, 1/2) \le d - 1] = I_{1/2}(N - d, d) \quad (d < N),

    equal to 1/2 at ``N = 2d`` and to 1 for ``d >= N``. For ``M = 2`` and embeddings with a
    sign-symmetric law (the sphere), labels ``x mod 2`` are as good as random signs, so this is the
    probability that :func:`separable` holds. Evaluated as the regularised incomplete beta function
    :math:`I_{1/2}` (``scipy.special.betainc``): constant cost and a relative error near ``1e-13`` for any
    ``N`` and ``d`` (the exact sum of big integers would take hours at ``N = 10**12``); it underflows to 0
    only where the probability is below about ``1e-308``.

    Parameters
    ----------
    N : int
        Number of points.
    d : int
        Dimension.
    """
    N, d = check.positive_int("N", N), check.positive_int("d", d)
    if d >= N:
        return 1.0
    return float(scipy.special.betainc(N - d, d, 0.5))


def loss_minimum(E: torch.Tensor, U: torch.Tensor, labels, probs, *, W0: torch.Tensor | None = None,
                 max_iter: int = 200, gtol: float = 1e-9):
    r"""A minimiser :math:`W_*` of :func:`population_loss` for each run, by L-BFGS with a strong-Wolfe
    line search on the sum of the runs' losses (independent runs: the minimisers are those of each).

    A minimiser exists only where the tokens are not :func:`separable`; elsewhere the loss decreases
    to 0 along a ray and the result is just the last iterate.

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)``, ``(R, M, d)``
    labels, probs : array_like, shape ``(N,)``
    W0 : torch.Tensor, shape ``(R, d, d)``, optional
        Starting point (zero by default).
    max_iter : int
        Maximum L-BFGS iterations.
    gtol : float
        Stop when the largest gradient entry is below ``gtol`` (or when an iteration changes the loss
        or the parameters by less than ``1e-15``: float64 cannot resolve more).

    Returns
    -------
    W : torch.Tensor, shape ``(R, d, d)``
    grad_norm : numpy.ndarray, shape ``(R,)``
        Frobenius norm of each run's gradient at ``W`` (how well it is a minimum).
    """
    W0, E, U, labels, probs = _runs(E, U, labels, probs, **({} if W0 is None else {"W": W0}), W_name="W0")
    max_iter = check.positive_int("max_iter", max_iter)
    gtol = check.real("gtol", gtol, low=0.0, low_open=True)
    R, _, d = E.shape
    W = (torch.zeros(R, d, d, dtype=E.dtype, device=E.device) if W0 is None else W0.detach().clone())
    W.requires_grad_(True)
    opt = torch.optim.LBFGS([W], lr=1.0, max_iter=max_iter, tolerance_grad=gtol, tolerance_change=1e-15,
                            history_size=50, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _population_loss(W, E, U, labels, probs).sum()
        loss.backward()
        return loss

    opt.step(closure)
    W = W.detach()
    grad = torch.func.grad(lambda V: _population_loss(V, E, U, labels, probs).sum())(W)
    return W, grad.flatten(1).norm(dim=1).cpu().numpy()


def late_oscillation(losses, window: int) -> dict:
    r"""How much a loss curve still rises over its last ``window`` steps.

    With :math:`L_t` the losses of the last ``window + 1`` steps and :math:`\bar L` their mean:
    ``rise_fraction`` is the fraction of the ``window`` steps with :math:`L_{t+1} > L_t` (by more than
    :math:`10^{-12} L_t`, so that the rounding of a converged loss is not a rise), and
    ``amplitude`` is :math:`\frac{1}{\text{window}}\sum_t (L_{t+1} - L_t)_+ / \bar L`, the mean upward
    jump per step relative to the loss (0 for a monotone descent; about :math:`a / (2\bar L)` for a
    period-two oscillation of peak-to-peak amplitude ``a``).

    Parameters
    ----------
    losses : array_like, shape ``(..., steps + 1)``
        Loss curves.
    window : int
        Number of final steps examined.

    Returns
    -------
    dict of numpy.ndarray, shape ``(...)``: ``rise_fraction``, ``amplitude``.
    """
    losses = check.real_array("losses", losses)
    if losses.ndim == 0:
        raise ValueError("losses must be loss curves of shape (..., steps + 1), got a scalar")
    window = check.positive_int("window", window)
    if losses.shape[-1] < window + 1:
        raise ValueError(f"losses must hold at least window + 1 = {window + 1} steps, got {losses.shape[-1]}")
    tail = losses[..., -(window + 1):]
    jumps = np.diff(tail, axis=-1)
    rises = jumps > 1e-12 * np.abs(tail[..., :-1])  # rounding of a converged loss is no rise
    return {"rise_fraction": rises.mean(-1), "amplitude": np.where(rises, jumps, 0.0).mean(-1) / tail.mean(-1)}


def load_scan(*, N: int = 30, M: int = 2, alpha: float = 1.0, ds=(2, 3, 5, 8, 10, 15, 20, 30),
              lrs=(1.0, 10.0, 100.0), trials: int = 20, steps: int = 1000, window: int = 200,
              every: int = 10, seed: int = 0, iters: int = 40) -> list[dict]:
    r"""Is the edge of stability related to memory overflow? Full-batch descent on ``N`` Zipf(``alpha``)
    tokens with labels ``x mod M`` and unit-sphere embeddings, for every ``d``, step size and trial.

    For each run: whether the tokens are :func:`separable` (the memory does not overflow); the
    sharpness over the last ``window`` steps (mean and max) and its ratio to :math:`2/\eta`; the
    :func:`late_oscillation` of the loss; and the sharpness :math:`\lambda_*` at the minimiser
    (:func:`loss_minimum`, non-separable runs; 0 for separable ones, where the infimum is at infinity
    and the sharpness tends to 0). The prediction from the stability of the minimum is that a run keeps
    oscillating iff it is not separable and :math:`\eta \lambda_* > 2`.

    Parameters
    ----------
    N, M : int
        Tokens and classes.
    alpha : float
        Zipf exponent of :math:`p`.
    ds : sequence of int
        Dimensions (the load is ``N / d``).
    lrs : sequence of float
        Step sizes :math:`\eta`.
    trials : int
        Embedding draws per ``d`` (trial ``t`` of :func:`sphere_memory` with ``seed``).
    steps : int
        Gradient steps.
    window : int
        Final steps over which sharpness and oscillation are measured.
    every : int
        The sharpness is measured every ``every`` steps of the window.
    seed : int
        Seed of the embeddings.
    iters : int
        Krylov dimension of the sharpness.

    Returns
    -------
    list of dict
        One row per ``(d, lr, trial)``: ``d``, ``load``, ``lr``, ``trial``, ``separable``,
        ``final_loss``, ``sharpness_mean``, ``sharpness_max``, ``edge_ratio`` (``lr * sharpness_mean / 2``),
        ``rise_fraction``, ``amplitude``, ``min_sharpness``, ``predicted_oscillation``.
    """
    ds = check.int_array("ds", ds)
    lrs = check.positive_array("lrs", lrs)
    if lrs.ndim > 1:
        raise ValueError(f"lrs must be a number or a 1-D sequence of step sizes, got shape {lrs.shape}")
    lrs = lrs.reshape(-1).tolist()
    trials = check.positive_int("trials", trials)
    probs, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    rows = []
    for d in ds.tolist():
        E, U = sphere_memory(N, M, d, seed, trials=trials)
        sep = separable(E, U, labels)
        lam_star = np.zeros(trials)
        if (~sep).any():
            idx = torch.as_tensor(np.flatnonzero(~sep))
            W_star, _ = loss_minimum(E[idx], U[idx], labels, probs)
            lam_star[~sep] = sharpness(W_star, E[idx], U[idx], labels, probs, iters=iters).cpu().numpy()
        R = len(lrs) * trials
        pick = torch.arange(trials).repeat(len(lrs))
        lr_runs = np.repeat(lrs, trials)
        traj = gd_trajectory(E[pick], U[pick], labels, probs, lr_runs, steps, window=window, every=every,
                             iters=iters)
        osc = late_oscillation(traj.losses, window)
        for r in range(R):
            t = int(pick[r])
            s_mean = float(traj.sharpness[r].mean())
            rows.append({"d": d, "load": N / d, "lr": float(lr_runs[r]), "trial": t, "separable": bool(sep[t]),
                         "final_loss": float(traj.losses[r, -1]), "sharpness_mean": s_mean,
                         "sharpness_max": float(traj.sharpness[r].max()), "edge_ratio": lr_runs[r] * s_mean / 2,
                         "rise_fraction": float(osc["rise_fraction"][r]), "amplitude": float(osc["amplitude"][r]),
                         "min_sharpness": float(lam_star[t]),
                         "predicted_oscillation": bool(not sep[t] and lr_runs[r] * lam_star[t] > 2)})
    return rows


def classifier_coordinates(W: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    r"""The classifier :math:`c = W^\top (u_1 - u_2)` of two-class memories: ``W`` ``(..., d, d)``,
    ``U`` ``(M = 2, d)`` of one run; returns ``(..., d)``. The scores differ by :math:`c^\top e_x`.

    Parameters
    ----------
    W : torch.Tensor, shape ``(..., d, d)``
        Memories of one run.
    U : torch.Tensor, shape ``(2, d)``
        Output embeddings :math:`u_1, u_2` of that run.
    """
    U = _two_class_outputs(U)
    W = check.tensor("W", W, min_ndim=2)
    d = U.shape[1]
    if W.shape[-2:] != (d, d):
        raise ValueError(f"W must have shape (..., d, d) with d={d} (from U), got {tuple(W.shape)}")
    dtype = torch.promote_types(W.dtype, U.dtype)
    return W.to(dtype).transpose(-1, -2) @ (U[0] - U[1]).to(device=W.device, dtype=dtype)


def _two_class_outputs(U) -> torch.Tensor:
    """``U`` checked as the finite ``(2, d)`` output embeddings of one two-class run, refused by name."""
    U = check.tensor("U", U)
    if U.ndim != 2 or U.shape[0] != 2:
        raise ValueError(f"U must be the (2, d) output embeddings of one two-class run, got {tuple(U.shape)}")
    return U


def classifier_plane_losses(E: torch.Tensor, U: torch.Tensor, labels, probs, a, b) -> np.ndarray:
    r"""Population loss of a two-class memory in ``d = 2`` over a grid of classifiers
    :math:`c = (a, b)`, with :math:`W(c) = \delta c^\top / \|\delta\|^2`, :math:`\delta = u_1 - u_2`
    (so that :func:`classifier_coordinates` of :math:`W(c)` is ``c``). Every memory reached by
    full-batch descent from 0 is some :math:`W(c)` plus a direction the loss ignores, so this plane is
    the whole landscape. Shape ``(len(b), len(a))``, for ``contour(a, b, ...)``.

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(N, 2)`` and ``(2, 2)``
        Embeddings of one run.
    labels, probs : array_like, shape ``(N,)``
    a, b : array_like
        Grid of the two coordinates of ``c``.
    """
    E = check.tensor("E", E)
    if E.ndim != 2 or E.shape[1] != 2:
        raise ValueError(f"E must be the (N, 2) embeddings of one run in d = 2, got {tuple(E.shape)}")
    U = _two_class_outputs(U).to(device=E.device, dtype=E.dtype)
    if U.shape[1] != 2:
        raise ValueError(f"U must be the (2, 2) output embeddings of one run in d = 2, got {tuple(U.shape)}")
    grid = {}
    for name, values in (("a", a), ("b", b)):
        grid[name] = check.real_array(name, values)
        if grid[name].ndim > 1:
            raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {grid[name].shape}")
    delta = U[0] - U[1]
    B, A = torch.meshgrid(torch.as_tensor(grid["b"].reshape(-1)), torch.as_tensor(grid["a"].reshape(-1)),
                          indexing="ij")
    c = torch.stack([A.reshape(-1), B.reshape(-1)], 1).to(E.dtype)
    W = delta[None, :, None] * c[:, None, :] / (delta @ delta)
    G = W.shape[0]
    loss = population_loss(W, E.expand(G, -1, -1), U.expand(G, -1, -1), labels, probs)
    return loss.reshape(A.shape).cpu().numpy()


def token_margins(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, labels) -> torch.Tensor:
    r"""Margin of every association, :math:`m_x = s_{f_*(x)x} - \max_{y \neq f_*(x)} s_{yx}` (stored
    iff positive), for memories ``W`` ``(..., d, d)`` of one run (``E`` ``(N, d)``, ``U`` ``(M, d)``);
    shape ``(..., N)``.

    Parameters
    ----------
    W : torch.Tensor, shape ``(..., d, d)``
        Memories of one run (finite; an array is converted, and the three are promoted to one dtype).
    E : torch.Tensor, shape ``(N, d)``
        Input embeddings :math:`e_x`.
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings :math:`u_y`.
    labels : array of int, shape ``(N,)``
        Classes :math:`f_*(x)`, in :math:`[0, M-1]`.
    """
    W = check.tensor("W", W, min_ndim=2)
    E, U = check.tensor("E", E, ndim=2), check.tensor("U", U, ndim=2)
    d = E.shape[1]
    if U.shape[1] != d or W.shape[-2:] != (d, d):
        raise ValueError(f"W, E, U must have shapes (..., d, d), (N, d), (M, d) with one d, got "
                         f"{tuple(W.shape)}, {tuple(E.shape)}, {tuple(U.shape)}")
    dtype = torch.promote_types(torch.promote_types(W.dtype, E.dtype), U.dtype)
    W, E, U = W.to(dtype), E.to(device=W.device, dtype=dtype), U.to(device=W.device, dtype=dtype)
    labels = torch.as_tensor(check.labels("labels", labels, E.shape[0], U.shape[0]), device=W.device)
    scores = U @ W @ E.T  # (..., M, N)
    right = scores.gather(-2, labels.expand(*scores.shape[:-2], 1, -1))[..., 0, :]
    mask = torch.nn.functional.one_hot(labels, U.shape[0]).T.bool()
    return right - scores.masked_fill(mask, -math.inf).amax(-2)


def one_step_boundary(p1) -> np.ndarray:
    r"""In the two-token problem (:func:`assocmem.training.two_token_setup`) the first step from
    ``W = 0`` gives the classifier :math:`c_1 = \eta(p_1 e_1 - p_2 e_2)`, so the rare token is right
    after one step, for every :math:`\eta`, iff :math:`\cos(e_1, e_2) < p_2 / p_1 = (1 - p_1)/p_1`.
    Returns that cosine for each ``p1`` (in ``(0, 1)``).

    Parameters
    ----------
    p1 : float or array
        Probability of the frequent token, in :math:`(0, 1)`.
    """
    p1 = _open_unit("p1", p1)
    return (1 - p1) / p1


def _open_unit(name: str, values) -> np.ndarray:
    """A finite scalar or 1-D array with entries in ``(0, 1)``, refused by ``name`` otherwise."""
    values = check.real_array(name, values)
    if values.ndim > 1:
        raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {values.shape}")
    if np.any((values <= 0) | (values >= 1)):
        raise ValueError(f"{name} must lie in (0, 1), got {check._short(values.tolist())}")
    return values


def two_token_phase(p1s, cosines, lrs, *, steps: int = 35, flow_step: float = 0.05) -> dict:
    r"""Success phase diagram of the two-token problem: after ``steps`` full-batch steps from
    ``W = 0``, is the rare token right? Measured by gradient descent (:func:`assocmem.training.train`)
    at every ``(lr, p1, cosine)``, and predicted by gradient flow at the same time :math:`t = \eta\,`
    ``steps``. The flow is integrated exactly in the classifier plane (``M = 2``: :math:`\dot c =
    -\|\delta\|^2 \nabla_c L`, :math:`\|\delta\|^2 = 2`) by explicit Euler steps of ``flow_step``,
    vectorised over the grid.

    Parameters
    ----------
    p1s : float or array_like, 1-D
        Probabilities of the frequent token (in ``(0, 1)``).
    cosines : float or array_like, 1-D
        :math:`\cos(e_1, e_2)` (in ``[-1, 1]``).
    lrs : float or array_like, 1-D
        Step sizes :math:`\eta`; each ``lr * steps`` must be a multiple of ``flow_step``.
    steps : int
        Number of descent steps.
    flow_step : float
        Euler step of the gradient-flow integration. The cost, ``len(p1s) * steps`` descent steps and
        ``max(lrs) * steps / flow_step`` Euler steps, is checked against
        ``assocmem._validate.budget`` before any work.

    Returns
    -------
    dict
        ``success`` (descent) and ``flow_success`` (flow): bool arrays ``(len(lrs), len(p1s),
        len(cosines))``; ``rare_margin``: the rare token's final margin under descent, same shape.
    """
    p1s = np.atleast_1d(_open_unit("p1s", p1s))
    cosines = np.atleast_1d(check.real_array("cosines", cosines))
    lrs = np.atleast_1d(check.positive_array("lrs", lrs))
    for name, values in (("cosines", cosines), ("lrs", lrs)):
        if values.ndim != 1:
            raise ValueError(f"{name} must be a number or a 1-D sequence, got shape {values.shape}")
    if np.any(np.abs(cosines) > 1):
        raise ValueError(f"cosines must lie in [-1, 1], got {check._short(cosines.tolist())}")
    steps = check.positive_int("steps", steps)
    flow_step = check.real("flow_step", flow_step, low=0.0, low_open=True)
    runs = lrs.size * cosines.size
    check.budget("steps, p1s, lrs, cosines", work=p1s.size * steps * (check.STEP_WORK + 100.0 * runs),
                 formula="len(p1s) x steps descent steps of len(lrs) x len(cosines) runs")
    flow_steps = lrs.max() * steps / flow_step
    check.budget("lrs, steps, flow_step", work=flow_steps * (check.STEP_WORK + 100.0 * p1s.size * cosines.size),
                 formula="max(lrs) x steps / flow_step Euler steps of the len(p1s) x len(cosines) grid")
    horizons = np.rint(lrs * steps / flow_step).astype(int)
    if not np.allclose(horizons * flow_step, lrs * steps, rtol=1e-9, atol=0):
        raise ValueError(f"each lr * steps must be a multiple of flow_step={flow_step}")
    margin = np.zeros((lrs.size, p1s.size, cosines.size))
    for i, p1 in enumerate(p1s):
        E = torch.stack([training.two_token_setup(float(c), float(p1))[0][0] for c in cosines])
        _, U, labels, probs = training.two_token_setup(float(cosines[0]), float(p1))
        R = lrs.size * cosines.size
        out = training.train(E.repeat(lrs.size, 1, 1), U.expand(R, -1, -1), labels, probs,
                             lr=np.repeat(lrs, cosines.size), steps=steps, method="dense")
        scores = out.scores  # (R, 2, 2): [run, class, token]
        margin[:, i] = (scores[:, 1, 1] - scores[:, 0, 1]).reshape(lrs.size, cosines.size).numpy()
    # gradient flow in the classifier plane: c = W^T (u_1 - u_2), scores differ by c.e_x
    P1 = p1s[:, None] * np.ones_like(cosines)
    e2 = np.stack([np.broadcast_to(cosines, P1.shape), np.broadcast_to(np.sqrt(1 - cosines ** 2), P1.shape)], -1)
    c = np.zeros(P1.shape + (2,))
    flow = np.zeros_like(margin, dtype=bool)
    order = np.argsort(horizons)
    done = 0
    for k in range(int(horizons.max()) + 1):
        while done < order.size and horizons[order[done]] == k:
            flow[order[done]] = (c * e2).sum(-1) < 0  # the rare token's margin -c.e_2 is positive
            done += 1
        if done == order.size:
            break
        m1, m2 = c[..., 0], -(c * e2).sum(-1)  # margins of token 1 (class 0) and token 2 (class 1)
        g1, g2 = P1 * _expit(-m1), (1 - P1) * _expit(-m2)  # -dL/dm of each token
        c = c + flow_step * 2 * (g1[..., None] * np.array([1.0, 0.0]) - g2[..., None] * e2)
    return {"success": margin > 0, "flow_success": flow, "rare_margin": margin}


def segmented_sgd(*, N: int = 10, M: int = 5, alpha: float = 1.5, d: int = 5, segments=((10.0, 1000),),
                  trials: int = 100, seed: int = 0, eval_every: int = 10) -> dict:
    r"""Batch-1 SGD from ``W = 0`` with a piecewise-constant step size (the schedules of [CDB24]),
    against the decoupled prediction on the same samples.

    ``segments`` is a sequence of ``(lr, steps)``: e.g. ``((10, 100), (0.3, 900))`` is
    :math:`\gamma = 10` then :math:`\times 0.03` from step 100. Each trial draws Gaussian embeddings
    (:func:`assocmem.training.run_embeddings`) and its samples from ``zipf.sample_tokens``; each
    segment continues from the previous memory. The prediction runs
    :func:`assocmem.theory.dynamics.minibatch_q` (symmetric form) with the same per-step rates and
    samples and takes the exact error of :math:`\sum_x q_t(x) u_{f_*(x)} e_x^\top` on the same
    embeddings (ties as errors).

    Parameters
    ----------
    N, M : int
        Tokens and classes (labels ``x mod M``).
    alpha : float
        Zipf exponent.
    d : int
        Dimension.
    segments : sequence of (float, int)
        Step size and number of steps of each segment.
    trials : int
        Independent runs (seeds ``seed .. seed + trials - 1``).
    seed : int
        First seed.
    eval_every : int
        Record errors every ``eval_every`` steps (must divide every segment's length).

    Returns
    -------
    dict
        ``steps`` (n,), ``error`` and ``predicted_error`` (trials, n), ``probs``.
    """
    N, M, d = check.positive_int("N", N), check.positive_int("M", M), check.positive_int("d", d)
    alpha = check.real("alpha", alpha, low=0.0)
    trials = check.positive_int("trials", trials)
    seed = check.seed("seed", seed)
    eval_every = check.positive_int("eval_every", eval_every)
    segments = _segments(segments)
    if any(n % eval_every for _, n in segments):
        raise ValueError(f"segments: each length must be a multiple of eval_every={eval_every}, "
                         f"got {[n for _, n in segments]}")
    total = sum(n for _, n in segments)
    check.budget("N, M, d, trials, segments", nbytes=16.0 * trials * ((N + M) * d + total + N),
                 work=total * (check.STEP_WORK + 4.0 * trials * (N + M) * d),
                 formula="trials x total steps of batch-1 SGD on (N + M) x d embeddings")
    seeds = list(range(seed, seed + trials))
    probs, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    E, U = training.run_embeddings(seeds, N, M, d, dtype=torch.float64)
    tokens = np.stack([zipf.sample_tokens(N, alpha, total, s) for s in seeds])
    errors, W, start = [], None, 0
    for lr, n in segments:
        out = training.train(E, U, labels, probs, lr=lr, tokens=tokens[:, start:start + n], batch_size=1,
                             eval_every=eval_every, W0=W)
        errors.append(out.errors if not errors else out.errors[:, 1:])
        W, start = out.W, start + n
    rates = np.concatenate([np.full(n, g) for g, n in segments])
    counts = zipf.token_counts(tokens.reshape(trials, total, 1), N)
    q = dynamics.minibatch_q(counts, np.broadcast_to(rates, (trials, total)), M, 1, form="symmetric")
    steps = np.arange(0, total + 1, eval_every)
    predicted = np.stack([memory.population_error(torch.as_tensor(q[:, t], dtype=E.dtype), probs, labels, E, U)[:, 0]
                          .numpy() for t in steps], 1)
    return {"steps": steps, "error": np.concatenate(errors, 1), "predicted_error": predicted, "probs": probs}


def _segments(segments) -> list[tuple[float, int]]:
    """``segments`` of :func:`segmented_sgd` as a non-empty list of ``(lr > 0, steps >= 1)``, refused by
    name when it is not a sequence of pairs."""
    if isinstance(segments, (str, bytes)) or not isinstance(segments, (list, tuple, np.ndarray)) \
            or len(segments) == 0:
        raise TypeError(f"segments must be a non-empty sequence of (lr, steps) pairs, got {check._short(segments)}")
    out = []
    for k, segment in enumerate(segments):
        if isinstance(segment, (str, bytes)) or np.ndim(segment) != 1 or len(segment) != 2:
            raise TypeError(f"segments[{k}] must be an (lr, steps) pair, got {check._short(segment)}")
        lr, steps = segment
        steps = steps.item() if isinstance(steps, np.generic) else steps
        out.append((check.real(f"segments[{k}] lr", lr, low=0.0, low_open=True),
                    check.positive_int(f"segments[{k}] steps", steps)))
    return out


def _expit(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1 + np.tanh(0.5 * z))
