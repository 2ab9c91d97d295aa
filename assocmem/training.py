r"""Gradient training of associative memories, many independent runs in one tensor program.

The model scores output ``y`` for input ``x`` by :math:`u_y^\top \mathrm{LN}(W e_x)` and is trained by
cross-entropy :math:`\ell = -\log \mathrm{softmax}_y`, averaged over mini-batches of ``B`` samples
drawn once each (one pass over ``T`` fresh samples), or over the population ``p`` (full-batch GD).
``LN`` is the identity or the reference layer norm :math:`h \mapsto h / \sqrt{\|h\|^2 + 10^{-6}}`.

Every tensor carries a leading *runs* dimension ``R``: seeds, learning rates and layer-norm flags
are per-run tensors, so a grid of runs costs one batched matrix product per step instead of a
Python loop. Gradients are written by hand (the tests check them against autograd). Two exact
implementations share the interface of :func:`train`:

* ``"dense"`` stores ``W`` (``R x d x d``); any optimiser, learned embeddings. Within a step all
  samples of the same token share ``W e_x``, so when ``B >= N`` the step evaluates the ``N`` tokens
  once, weighted by their batch counts: :math:`O(\min(B, N)\, d^2)` per step.
* ``"factorised"`` writes :math:`W_t = W_0 + K^\top A_t E` with ``K`` the output embeddings (and the
  rows :math:`W_0 e_x` when :math:`W_0 \neq 0`) and ``A`` of size ``k x N``. Plain and normalised SGD
  never leave this span, with or without layer norm, so the whole run is carried by Gram matrices
  and costs :math:`O(k N^2)` per step whatever ``d``. Adam and learned embeddings leave the span.

Chapter 4 of the book runs every experiment through this module.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from . import _validate as check
from . import memory, zipf
from .sweep import experiment
from .theory import dynamics

__all__ = ["OPTIMIZERS", "SCHEDULES", "MODELS", "Trained", "train", "gradients", "scores_error",
           "initial_memory", "run_embeddings", "two_token_setup", "two_token_run", "slice_directions",
           "slice_losses", "slice_coordinates", "simulate", "decoupled_comparison", "optimization_grid"]

OPTIMIZERS = ("sgd", "nsgd", "adam", "sign")
SCHEDULES = ("constant", "linear", "cosine")
MODELS = ("W", "learned")
LAYER_NORM_EPS = 1e-6
_NORM_EPS = 1e-12
_W0_STREAM = 2  # memory.embeddings streams 0 and 1 are E and U
FUSED_ADAM_MIN_SIZE = 128 * 128  # entries of one run's W from which a per-run fused Adam call pays
MAX_PROGRAM_FLOATS = 2 ** 25  # entries of one R x d x d tensor in a batched grid program (128 MiB in float32)


@dataclass
class Trained:
    r"""Result of :func:`train` for ``R`` runs.

    Attributes
    ----------
    steps : numpy.ndarray, shape ``(n_evals,)``
        Steps at which ``errors`` and ``losses`` were recorded (0 is the initialisation).
    errors : numpy.ndarray, shape ``(R, n_evals)``
        Population error :math:`\sum_x p(x) 1[\arg\max_y s_{xy} \neq f_*(x)]` (ties count as
        errors; ``nan`` once a run has diverged to non-finite scores).
    losses : numpy.ndarray, shape ``(R, n_evals)``
        Population cross-entropy :math:`\sum_x p(x) \ell(x)`.
    scores : torch.Tensor, shape ``(R, M, N)``
        Final scores :math:`s_{yx} = u_y^\top \mathrm{LN}(W e_x)`.
    W, E, U : torch.Tensor
        Final parameters (``W`` is ``None`` when a factorised run was asked not to materialise it).
    method : str
        ``"dense"`` or ``"factorised"``.
    history : torch.Tensor or None
        ``W`` at each recorded step, shape ``(R, n_evals, d, d)``, when asked for.
    """

    steps: np.ndarray
    errors: np.ndarray
    losses: np.ndarray
    scores: torch.Tensor
    W: torch.Tensor | None
    E: torch.Tensor
    U: torch.Tensor
    method: str
    history: torch.Tensor | None = None

    def stored_weights(self, labels) -> torch.Tensor:
        r"""The learned :math:`\hat q(x) = u_{f_*(x)}^\top W e_x / (\|u_{f_*(x)}\|^2 \|e_x\|^2)`,
        shape ``(R, N)``: the coefficient of :math:`u_{f_*(x)} e_x^\top` for quasi-orthogonal
        embeddings, to compare with the decoupled prediction (without layer norm)."""
        labels = torch.as_tensor(np.asarray(labels), device=self.scores.device)
        right = self.scores.gather(1, labels.expand(self.scores.shape[0], -1)[:, None, :])[:, 0]
        norms = (self.E ** 2).sum(-1) * (self.U ** 2).sum(-1).gather(1, labels.expand(self.U.shape[0], -1))
        return right / norms


def train(E, U, labels, probs, *, lr, tokens=None, batch_size: int | None = None, steps: int | None = None,
          optimizer: str = "sgd", betas=(0.9, 0.999), eps: float = 1e-8, layer_norm=False,
          learn_embeddings: bool = False, W0=None, schedule: str = "constant",
          eval_every: int | None = None, method: str = "auto", keep_weights: bool = True,
          keep_history: bool = False) -> Trained:
    r"""Train ``R`` memories at once by mini-batch (or full-batch) gradient descent on cross-entropy.

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)`` and ``(R, M, d)``
        Input and output embeddings of each run (rows :math:`e_x`, :math:`u_y`).
    labels : array_like of int, shape ``(N,)``
        The target :math:`f_*(x)` of each token (0-based classes).
    probs : array_like, shape ``(N,)``
        :math:`p(x)`, for the population error and loss (and the gradient in full-batch mode).
    lr : float or array_like of shape ``(R,)``
        Step size :math:`\gamma` of each run.
    tokens : array_like of int, shape ``(R, T)``, optional
        One pass over these samples in consecutive batches of ``batch_size`` (``T`` a multiple of it);
        the loss of a batch is the mean over its samples. Without ``tokens``, full-batch gradient
        descent on :math:`\sum_x p(x)\ell(x)` for ``steps`` steps.
    optimizer : {"sgd", "nsgd", "adam", "sign"}
        Plain SGD, normalised SGD (each parameter's step is :math:`\gamma\, G / \|G\|_F`), Adam with
        ``betas`` and ``eps``, or sign descent (Adam with betas ``(0, 0)``).
    layer_norm : bool or array_like of bool, shape ``(R,)``
        Apply :math:`h / \sqrt{\|h\|^2 + 10^{-6}}` to :math:`h = W e_x` (per run).
    learn_embeddings : bool
        Train ``E`` and ``U`` with ``W`` (with the same optimiser).
    W0 : torch.Tensor of shape ``(R, d, d)``, optional
        Initial memory (zero when omitted).
    schedule : {"constant", "linear", "cosine"}
        Learning rate :math:`\gamma_t = \gamma\, s(t / \text{steps})` with ``s = 1``, ``1 - u``,
        or ``(1 + cos(pi u)) / 2``.
    eval_every : int, optional
        Record error and loss every ``eval_every`` steps (and at 0 and the end); default: only the ends.
    method : {"auto", "dense", "factorised"}
        ``"auto"`` is factorised whenever that is exact (SGD or normalised SGD, fixed embeddings).
    keep_weights : bool
        Whether a factorised run materialises the final ``W`` (``d x d`` per run).
    keep_history : bool
        Keep ``W`` at every recorded step (for small ``d``: trajectories in chapter 4).

    Returns
    -------
    Trained
    """
    problem = _Problem.build(E, U, labels, probs, lr, tokens, batch_size, steps, layer_norm, W0)
    optimizer = check.choice("optimizer", optimizer, OPTIMIZERS)
    schedule = check.choice("schedule", schedule, SCHEDULES)
    method = check.choice("method", method, ("auto", "dense", "factorised"))
    exact_factorised = optimizer in ("sgd", "nsgd") and not learn_embeddings
    if method == "factorised" and not exact_factorised:
        raise ValueError("method='factorised' is exact only for optimizer 'sgd' or 'nsgd' with fixed "
                         f"embeddings; got optimizer={optimizer!r}, learn_embeddings={learn_embeddings}")
    if optimizer == "sign":
        optimizer, betas = "adam", (0.0, 0.0)
    betas = tuple(check.real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(betas))
    eps = check.real("eps", eps, low=0.0)
    every = problem.steps if eval_every is None else check.positive_int("eval_every", eval_every)
    record = sorted({0, problem.steps, *range(0, problem.steps, every)})
    factorised = method == "factorised" or (method == "auto" and exact_factorised)
    model = (_FactorisedModel(problem) if factorised
             else _DenseModel(problem, learn_embeddings, _Optimizer(optimizer, betas, eps)))
    if factorised:
        model.normalise = optimizer == "nsgd"
    errors, losses, history = [], [], []
    for t in range(problem.steps + 1):
        if t in record:
            error, loss = model.evaluate()
            errors.append(error)
            losses.append(loss)
            if keep_history:
                history.append(model.weights().clone())
        if t < problem.steps:
            model.step(problem.batch(t), problem.lr * _schedule_factor(schedule, t, problem.steps))
    return Trained(steps=np.array(record), errors=torch.stack(errors, 1).cpu().numpy(),
                   losses=torch.stack(losses, 1).cpu().numpy(), scores=model.scores(),
                   W=model.weights() if keep_weights or not factorised else None,
                   E=model.E, U=model.U, method="factorised" if factorised else "dense",
                   history=torch.stack(history, 1) if keep_history else None)


def scores_error(scores: torch.Tensor, labels, probs) -> torch.Tensor:
    r"""Population error of score tables ``(R, M, N)``, shape ``(R,)``:
    :math:`\sum_x p(x)\,1[\exists y \neq f_*(x):\ s_{yx} \geq s_{f_*(x)x}]` (ties count as errors).
    A run whose scores are not all finite (training diverged) gets ``nan``, never a number."""
    labels = torch.as_tensor(np.asarray(labels), device=scores.device)
    probs = torch.as_tensor(np.asarray(probs), device=scores.device, dtype=scores.dtype)
    right = scores.gather(1, labels.expand(scores.shape[0], -1)[:, None, :])
    rivals = scores.masked_fill(_one_hot(labels, scores.shape[1], scores.dtype).T.bool(), -math.inf)
    wrong = (rivals.amax(1, keepdim=True) >= right)[:, 0].to(scores.dtype)
    diverged = ~torch.isfinite(scores).all(dim=2).all(dim=1)
    return (wrong @ probs).masked_fill(diverged, math.nan)


def gradients(W, E, U, labels, idx, weights, layer_norm=False, *, wrt=("W", "E", "U")):
    r"""Loss and hand-written gradients of :math:`L = \sum_p w_p\, \ell(x_p)`, batched over runs.

    With :math:`h = W e_x`, :math:`r = (\|h\|^2 + 10^{-6})^{-1/2}` (1 without layer norm),
    :math:`z = r h`, logits :math:`U z` and :math:`g = w(\mathrm{softmax} - \mathbf 1_{f_*(x)})`:

    .. math:: \partial_U L = g^\top z,\quad \partial_z = U^\top g,\quad
              \partial_h = r(\partial_z - r^2 h\, h^\top \partial_z),\quad
              \partial_W L = \sum_p \partial_{h_p} e_{x_p}^\top,\quad
              \partial_{e_x} L = \sum_{p: x_p = x} W^\top \partial_{h_p}.

    Parameters
    ----------
    W : (R, d, d); E : (R, N, d); U : (R, M, d)
    labels : (N,) int tensor; idx, weights : (R, P) tokens and their weights
    layer_norm : bool or (R,) bool tensor
    wrt : tuple of {"W", "E", "U"}
        The gradients to compute (``E``'s costs as much as the forward pass).

    Returns
    -------
    loss : (R,) tensor, and a dict of the gradients in ``wrt``, shaped like the parameters.
    """
    return _gradients(W, E, U, labels, idx, weights, layer_norm, wrt)


def _gradients(W, E, U, labels, idx, weights, layer_norm, wrt, *, factor_W: bool = False):
    """:func:`gradients`; with ``factor_W`` the ``W`` entry is the pair ``(dh^T, e)`` whose product is
    the gradient, so that SGD can apply it without forming a ``d x d`` matrix."""
    layer_norm = torch.as_tensor(layer_norm, device=W.device).expand(W.shape[0])
    e = _batch_gather(E, idx)
    h, r, z, logits = _forward(W, e, U, layer_norm)
    target = _one_hot(labels[idx], U.shape[1], logits.dtype)
    g, loss = _softmax_residual(logits, target, weights)
    dz = g @ U
    proj = torch.where(layer_norm[:, None], r * r * (h * dz).sum(-1), torch.zeros_like(r))
    dh = r[..., None] * (dz - proj[..., None] * h)
    grads = {}
    if "W" in wrt:
        grads["W"] = (dh.transpose(1, 2), e) if factor_W else dh.transpose(1, 2) @ e
    if "E" in wrt:
        grads["E"] = torch.zeros_like(E).index_put_(
            (torch.arange(idx.shape[0], device=idx.device)[:, None], idx), dh @ W, accumulate=True)
    if "U" in wrt:
        grads["U"] = g.transpose(1, 2) @ z
    return (loss * weights).sum(-1), grads


def initial_memory(runs_seeds, d: int, *, init: str = "zero", dtype=torch.float32, device="cpu") -> torch.Tensor | None:
    r"""The initial memory of each run: ``None`` for ``init="zero"``, else :math:`W_0` with i.i.d.
    :math:`\mathcal N(0, 1/d)` entries (``randn / sqrt(d)``) drawn from each run's seed."""
    check.choice("init", init, ("zero", "random"))
    d = check.positive_int("d", d)
    if init == "zero":
        return None
    return torch.cat([memory.embeddings(d, d, int(seed), stream=_W0_STREAM, dtype=dtype, device=device)
                      for seed in runs_seeds])


def run_embeddings(runs_seeds, N: int, M: int, d: int, *, output_embeddings: str = "gaussian",
                   dtype=torch.float32, device="cpu"):
    r"""Embeddings of each run drawn from the run's seed: ``(E, U)`` of shapes ``(R, N, d)`` and ``(R, M, d)``;
    runs sharing a seed share embeddings.

    Parameters
    ----------
    runs_seeds : iterable of int
        The seed of each run.
    N, M, d : int
        Numbers of input tokens and of classes, and the dimension.
    output_embeddings : {"gaussian", "sphere"}
        Law of the output embeddings :math:`u_y`: :math:`\mathcal N(0, I/d)` (the training grid of
        [CDB24]) or uniform on the unit sphere, :math:`\|u_y\| = 1` (what the decoupled map assumes).
        The input embeddings are always :math:`e_x \sim \mathcal N(0, I/d)`; both come from
        :func:`assocmem.memory.embeddings` (streams 0 and 1), so a sphere ``U`` is the Gaussian one normalised.
    dtype, device
        Of the returned tensors (the draw does not depend on them).
    """
    output_embeddings = check.choice("output_embeddings", output_embeddings, memory.KINDS)
    N, M, d = check.positive_int("N", N), check.positive_int("M", M), check.positive_int("d", d)
    kwargs = dict(dtype=dtype, device=device)
    E = [memory.embeddings(N, d, int(seed), stream=0, **kwargs) for seed in runs_seeds]
    U = [memory.embeddings(M, d, int(seed), stream=1, kind=output_embeddings, **kwargs) for seed in runs_seeds]
    return torch.cat(E), torch.cat(U)


def two_token_setup(cosine: float = 0.95, p1: float = 0.75, *, dtype=torch.float64):
    r"""The two-token example of [CSB24] (chapter 4): ``N = M = d = 2``, ``U = I``, ``f_*(x) = x``,
    :math:`e_1 = (1, 0)`, :math:`e_2 = (c, \sqrt{1 - c^2})` with :math:`c = \cos(e_1, e_2)`,
    :math:`p = (p_1, 1 - p_1)`. Returns ``(E, U, labels, probs)`` with a runs axis of size 1."""
    c = check.real("cosine", cosine, low=-1.0, high=1.0)
    p1 = check.real("p1", p1, low=0.0, high=1.0)
    E = torch.tensor([[[1.0, 0.0], [c, math.sqrt(1.0 - c * c)]]], dtype=dtype)
    U = torch.eye(2, dtype=dtype)[None]
    return E, U, np.array([0, 1]), np.array([p1, 1.0 - p1])


def two_token_run(lrs=(1.0, 10.0), steps: int = 35, *, cosine: float = 0.95, p1: float = 0.75) -> Trained:
    """Full-batch gradient descent from ``W = 0`` on :func:`two_token_setup`, one run per step size,
    recording loss, error and ``W`` at every step."""
    E, U, labels, probs = two_token_setup(cosine, p1)
    R = len(lrs)
    return train(E.expand(R, -1, -1), U.expand(R, -1, -1), labels, probs, lr=list(lrs), steps=steps,
                 eval_every=1, method="dense", keep_history=True)


def slice_directions(E: torch.Tensor, U: torch.Tensor, labels) -> torch.Tensor:
    r"""One direction per token, :math:`D_x = (u_{f_*(x)} - \bar u_{\neq f_*(x)})\, e_x^\top`, shape
    ``(N, d, d)`` (``E``, ``U`` of one run, 2-D). For ``M = 2`` gradient descent from 0 stays in their span."""
    labels = torch.as_tensor(np.asarray(labels))
    M = U.shape[0]
    others = (U.sum(0, keepdim=True) - U[labels]) / (M - 1)
    return torch.einsum("xi,xj->xij", U[labels] - others, E)


def slice_losses(E: torch.Tensor, U: torch.Tensor, labels, probs, a, b, *, tokens=(0, 1)) -> np.ndarray:
    r"""Population loss on the plane :math:`W = a D_{x_1} + b D_{x_2}` (:func:`slice_directions`) for a
    grid of coordinates: shape ``(len(b), len(a))``, ready for ``contour(a, b, ...)``."""
    D = slice_directions(E, U, labels)[list(tokens)]
    A, B = torch.meshgrid(torch.as_tensor(np.asarray(b, dtype=np.float64)),
                          torch.as_tensor(np.asarray(a, dtype=np.float64)), indexing="ij")
    W = (B.reshape(-1, 1, 1) * D[0] + A.reshape(-1, 1, 1) * D[1]).to(E.dtype)
    scores = U @ W @ E.T
    logp = torch.log_softmax(scores, dim=1)
    labels_t = torch.as_tensor(np.asarray(labels))
    nll = -logp[:, labels_t, torch.arange(E.shape[0])]
    return (nll @ torch.as_tensor(np.asarray(probs), dtype=E.dtype)).reshape(A.shape).numpy()


def slice_coordinates(W: torch.Tensor, E: torch.Tensor, U: torch.Tensor, labels, *, tokens=(0, 1)) -> np.ndarray:
    """Least-squares coordinates of memories ``W`` (``(..., d, d)``) on the plane of :func:`slice_losses`,
    shape ``(..., 2)`` (exact when ``W`` lies in the plane)."""
    D = slice_directions(E, U, labels)[list(tokens)].reshape(2, -1).T
    flat = W.reshape(-1, D.shape[0]).T
    coords = torch.linalg.lstsq(D.to(W.dtype), flat).solution.T
    return coords.reshape(*W.shape[:-2], 2).numpy()


def simulate(*, N: int = 100, M: int = 5, alpha: float = 2.0, d: int = 100, T: int = 1024,
             batch_size: int = 16, lrs=(1.0,), seeds=(0,), layer_norms=(False,), optimizer: str = "sgd",
             model: str = "W", init: str = "zero", schedule: str = "constant", eval_every: int | None = None,
             method: str = "auto", output_embeddings: str = "gaussian", dtype=torch.float32, device="cpu",
             keep_weights: bool = False):
    r"""Every combination of ``seeds x lrs x layer_norms`` trained as one batched program.

    Data: ``f_*(x) = x mod M`` on a Zipf(``alpha``) law over ``N`` tokens; each seed draws its own
    embeddings, ``W_0`` and ``T`` fresh samples (shared by the runs of that seed, so learning rates
    are compared on the same data). ``model="learned"`` trains the embeddings too.

    Returns
    -------
    runs : list of dict
        ``seed``, ``lr``, ``layer_norm`` of each run, in the order of the runs dimension.
    trained : Trained
    """
    check.choice("model", model, MODELS)
    probs = zipf.zipf_probs(N, alpha)
    labels = zipf.mod_labels(N, M)
    runs = [{"seed": int(s), "lr": float(g), "layer_norm": bool(ln)}
            for s in seeds for g in lrs for ln in layer_norms]
    run_seeds = [r["seed"] for r in runs]
    E, U = run_embeddings(run_seeds, N, M, d, output_embeddings=output_embeddings, dtype=dtype, device=device)
    tokens = np.stack([zipf.sample_tokens(N, alpha, T, seed) for seed in run_seeds])
    trained = train(E, U, labels, probs, lr=[r["lr"] for r in runs], tokens=tokens, batch_size=batch_size,
                    optimizer=optimizer, layer_norm=[r["layer_norm"] for r in runs],
                    learn_embeddings=model == "learned", schedule=schedule, eval_every=eval_every,
                    W0=initial_memory(run_seeds, d, init=init, dtype=dtype, device=device),
                    method=method, keep_weights=keep_weights)
    return runs, trained


def decoupled_comparison(*, N: int = 100, M: int = 5, alpha: float = 2.0, d: int = 100, batch_size: int = 1000,
                         steps: int = 100, lr: float = 1.0, trials: int = 100, output_embeddings: str = "sphere",
                         dtype=torch.float64, device="cpu") -> dict:
    r"""Real mini-batch SGD from :math:`W_0 = 0` against the decoupled predictions (chapter 4).

    Runs ``trials`` seeds of :func:`simulate` (plain SGD, recorded every step) and, on the same
    batches, the two forms of :func:`assocmem.theory.dynamics.minibatch_q`; the predicted error
    curve is the exact error (:func:`assocmem.memory.population_error`) of the outer-product memory
    :math:`\sum_x q_t(x) u_{f_*(x)} e_x^\top` built with the same embeddings: column ``t`` of every
    curve is the state after the first ``t`` batches.

    Parameters
    ----------
    N, M, alpha : int, int, float
        Tokens, classes and Zipf exponent of the data (``f_*(x) = x mod M``).
    d : int
        Embedding dimension.
    batch_size, steps : int
        ``B`` samples per step, ``steps`` steps (``T = B * steps`` fresh samples).
    lr : float
        The step size :math:`\gamma`.
    trials : int
        Seeds ``0 .. trials - 1`` (embeddings and samples).
    output_embeddings : {"sphere", "gaussian"}
        Law of the :math:`u_y` (:func:`run_embeddings`). The map assumes :math:`\|u_y\| = 1`, and the
        paper's code draws unit-norm output embeddings: ``"sphere"`` is the paper's check;
        ``"gaussian"`` (:math:`\|u\|^2 \sim \chi^2_d / d`) adds the fluctuation of the norms.
    dtype, device
        Of the training tensors.

    Returns
    -------
    dict
        ``steps`` (``steps + 1``,); ``error`` (trials, steps + 1) of SGD; ``q`` (trials, N) learned
        :math:`\hat q_T`; ``predicted_error[form]`` and ``predicted_q[form]`` likewise for each form;
        ``probs``.
    """
    seeds = range(check.positive_int("trials", trials))
    T = check.positive_int("batch_size", batch_size) * check.positive_int("steps", steps)
    _, trained = simulate(N=N, M=M, alpha=alpha, d=d, T=T, batch_size=batch_size, lrs=(lr,), seeds=seeds,
                          eval_every=1, output_embeddings=output_embeddings, dtype=dtype, device=device)
    probs, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    tokens = np.stack([zipf.sample_tokens(N, alpha, T, seed) for seed in seeds])
    counts = zipf.token_counts(tokens.reshape(trials, steps, batch_size), N)
    E, U = run_embeddings(seeds, N, M, d, output_embeddings=output_embeddings, dtype=dtype, device=device)
    out = {"steps": trained.steps, "error": trained.errors, "probs": probs,
           "q": trained.stored_weights(labels).cpu().numpy(), "predicted_error": {}, "predicted_q": {}}
    for form in dynamics.FORMS:
        q = dynamics.minibatch_q(counts, lr, M, batch_size, form=form)
        curve = [_memory_error(q[:, t], probs, labels, E, U) for t in range(steps + 1)]
        out["predicted_error"][form] = np.stack(curve, 1)
        out["predicted_q"][form] = q[:, -1]
    return out


def _memory_error(q: np.ndarray, probs, labels, E, U) -> np.ndarray:
    """Error of the outer-product memories ``q`` (trials, N); an empty memory ties everywhere (error 1)."""
    if not q.any():
        return np.ones(q.shape[0])
    q = torch.as_tensor(q, dtype=E.dtype, device=E.device)
    return memory.population_error(q, probs, labels, E, U)[:, 0].cpu().numpy()


@experiment("optimization_grid")
def optimization_grid(d: int = 100, T: int = 1024, batch_size: int = 16, optimizer: str = "sgd",
                      model: str = "W", lrs=(0.1, 1.0, 10.0, 100.0), trials: int = 10,
                      layer_norms=(False, True), N: int = 100, M: int = 5, alpha: float = 2.0,
                      init: str = "random", device: str = "cpu"):
    """One cell of the paper's training grid (chapter 4): ``trials`` seeds x ``lrs`` x ``layer_norms``
    runs trained together; one row per run with its final population error.

    The runs go in as few batched programs as keep each ``R x d x d`` tensor under
    ``MAX_PROGRAM_FLOATS`` entries (all of them at once up to ``d`` of a few hundred).
    The full grid of the paper (40,320 runs) is ``d in {10, 20, 50, 100, 200, 500, 1000}``,
    ``T in {1024, 10240, 102400}``, ``batch_size in {16, 64, 256, 1024}``, ``optimizer in {sgd, adam}``,
    ``model in {W, learned}`` with the defaults for the rest.
    """
    trials = check.positive_int("trials", trials)
    per_seed = len(lrs) * len(layer_norms)
    seeds_per_program = max(1, MAX_PROGRAM_FLOATS // (per_seed * d * d))
    rows = []
    for first in range(0, trials, seeds_per_program):
        runs, trained = simulate(N=N, M=M, alpha=alpha, d=d, T=T, batch_size=batch_size, lrs=lrs,
                                 seeds=range(first, min(trials, first + seeds_per_program)),
                                 layer_norms=layer_norms, optimizer=optimizer, model=model, init=init,
                                 device=device)
        rows += [{**run, "error": float(err), "diverged": bool(np.isnan(err))}
                 for run, err in zip(runs, trained.errors[:, -1], strict=True)]
    return rows


# --- internals -------------------------------------------------------------------------------------

@dataclass
class _Problem:
    """Validated inputs of :func:`train`, as tensors on one device."""

    E: torch.Tensor
    U: torch.Tensor
    labels: torch.Tensor
    probs: torch.Tensor
    lr: torch.Tensor
    tokens: torch.Tensor | None
    batch_size: int
    steps: int
    layer_norm: torch.Tensor
    W0: torch.Tensor | None

    @classmethod
    def build(cls, E, U, labels, probs, lr, tokens, batch_size, steps, layer_norm, W0) -> _Problem:
        if not (isinstance(E, torch.Tensor) and isinstance(U, torch.Tensor)):
            raise TypeError("E and U must be torch tensors of shapes (R, N, d) and (R, M, d)")
        if E.ndim != 3 or U.ndim != 3 or E.shape[0] != U.shape[0] or E.shape[2] != U.shape[2]:
            raise ValueError(f"E and U must have shapes (R, N, d) and (R, M, d), got {tuple(E.shape)} "
                             f"and {tuple(U.shape)}")
        if not E.is_floating_point() or U.dtype != E.dtype:
            raise TypeError("E and U must share one floating dtype")
        R, N, d = E.shape
        M = U.shape[1]
        if M < 1:
            raise ValueError(f"U must hold M >= 1 output embeddings, got M={M}")
        dev, dt = E.device, E.dtype
        labels = np.asarray(labels)
        if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
                or labels.max() >= M:
            raise ValueError(f"labels must be N={N} integers in [0, {M - 1}]")
        probs = np.asarray(probs, dtype=np.float64)
        if probs.shape != (N,) or probs.min() < 0 or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"probs must be N={N} non-negative numbers summing to 1")
        lr_arr = np.broadcast_to(np.asarray(lr, dtype=np.float64), (R,)) if np.ndim(lr) <= 1 else None
        if lr_arr is None or lr_arr.shape != (R,) or not np.all(np.isfinite(lr_arr)) or lr_arr.min() <= 0:
            raise ValueError(f"lr must be a positive finite number or R={R} of them")
        ln = np.broadcast_to(np.asarray(layer_norm), (R,)) if np.ndim(layer_norm) <= 1 else None
        if ln is None or ln.shape != (R,) or ln.dtype != bool:
            raise TypeError(f"layer_norm must be a bool or R={R} bools")
        if tokens is None:
            if batch_size is not None:
                raise ValueError("batch_size needs tokens; full-batch descent takes only steps")
            if steps is None:
                raise ValueError("give tokens (with batch_size) or steps (full-batch descent on probs)")
            steps = check.positive_int("steps", steps)
            batch_size = 0
        else:
            tokens = np.asarray(tokens)
            if tokens.ndim != 2 or tokens.shape[0] != R or not np.issubdtype(tokens.dtype, np.integer):
                raise ValueError(f"tokens must be an integer array of shape (R={R}, T)")
            if tokens.min() < 0 or tokens.max() >= N:
                raise ValueError(f"tokens must lie in [0, {N - 1}]")
            batch_size = check.positive_int("batch_size", batch_size)
            if tokens.shape[1] % batch_size:
                raise ValueError(f"T={tokens.shape[1]} must be a multiple of batch_size={batch_size}")
            if steps is not None:
                raise ValueError("steps is set by T / batch_size when tokens are given")
            steps = tokens.shape[1] // batch_size
            tokens = torch.as_tensor(tokens, device=dev)
        if W0 is not None and (not isinstance(W0, torch.Tensor) or W0.shape != (R, d, d)):
            raise ValueError(f"W0 must be a tensor of shape (R, d, d) = {(R, d, d)}")
        return cls(E, U, torch.as_tensor(labels, device=dev), torch.as_tensor(probs, device=dev, dtype=dt),
                   torch.as_tensor(lr_arr.copy(), device=dev, dtype=dt), tokens, batch_size, steps,
                   torch.as_tensor(ln.copy(), device=dev), None if W0 is None else W0.to(device=dev, dtype=dt))

    @property
    def runs(self) -> int:
        return self.E.shape[0]

    def batch(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Step ``t``'s evaluation points ``(idx, weights)``, shapes ``(R, P)``: the batch's samples
        with weight ``1/B`` when ``B < N``, else all ``N`` tokens weighted by count/B (or by p)."""
        R, N = self.runs, self.E.shape[1]
        all_tokens = torch.arange(N, device=self.E.device).expand(R, N)
        if self.tokens is None:
            return all_tokens, self.probs.expand(R, N)
        chunk = self.tokens[:, t * self.batch_size:(t + 1) * self.batch_size]
        if self.batch_size < N:
            return chunk, torch.full(chunk.shape, 1.0 / self.batch_size, dtype=self.E.dtype, device=self.E.device)
        counts = torch.zeros(R, N, dtype=self.E.dtype, device=self.E.device)
        counts.scatter_add_(1, chunk, torch.ones_like(chunk, dtype=self.E.dtype))
        return all_tokens, counts / self.batch_size


def _schedule_factor(schedule: str, t: int, steps: int) -> float:
    u = t / steps
    return {"constant": 1.0, "linear": 1.0 - u, "cosine": 0.5 * (1.0 + math.cos(math.pi * u))}[schedule]


def _one_hot(labels: torch.Tensor, M: int, dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, M).to(dtype)


def _batch_gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[r, idx[r, p]]`` for a table ``(R, N, ...)`` and indices ``(R, P)``."""
    return table[torch.arange(table.shape[0], device=idx.device)[:, None], idx]


def _softmax_residual(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor):
    """Weighted ``softmax - onehot`` (the gradient of the loss in the logits) and the weighted loss."""
    logp = torch.log_softmax(logits, dim=-1)
    g = (logp.exp() - target) * weights[..., None]
    loss = -(logp * target).sum(-1)
    return g, loss


def _forward(W, e, U, layer_norm):
    """``h = W e``, the layer-norm factor ``r``, ``z = r h`` and logits ``U z`` for points ``e`` (R, P, d)."""
    h = e @ W.transpose(1, 2)
    r = torch.where(layer_norm[:, None], ((h * h).sum(-1) + LAYER_NORM_EPS).rsqrt(),
                    torch.ones((), dtype=h.dtype, device=h.device))
    z = h * r[..., None]
    return h, r, z, z @ U.transpose(1, 2)


class _DenseModel:
    """``W`` stored densely; forward and backward written by hand."""

    def __init__(self, problem: _Problem, learn_embeddings: bool, optimizer: _Optimizer):
        self.p = problem
        R, N, d = problem.E.shape
        self.W = (torch.zeros(R, d, d, dtype=problem.E.dtype, device=problem.E.device)
                  if problem.W0 is None else problem.W0.clone())
        self.E, self.U = problem.E.clone(), problem.U.clone()
        self.learn = learn_embeddings
        self.params = [self.W, self.E, self.U] if learn_embeddings else [self.W]
        self.opt = optimizer
        self.opt.attach(self.params)

    def step(self, batch, lr: torch.Tensor) -> None:
        idx, weights = batch
        names = ("W", "E", "U") if self.learn else ("W",)
        sgd = self.opt.name == "sgd"
        _, grads = _gradients(self.W, self.E, self.U, self.p.labels, idx, weights, self.p.layer_norm, names,
                              factor_W=sgd)
        if not sgd:
            self.opt.update(self.params, [grads[name] for name in names], lr)
            return
        dh_t, e = grads.pop("W")
        self.W.baddbmm_(dh_t * -lr.view(-1, 1, 1), e)  # W -= lr dh^T e in one pass over W
        if self.learn:
            self.opt.update([self.E, self.U], [grads["E"], grads["U"]], lr)

    def scores(self) -> torch.Tensor:
        return _forward(self.W, self.E, self.U, self.p.layer_norm)[3].transpose(1, 2)

    def evaluate(self):
        return _evaluate(self.scores(), self.p)

    def weights(self) -> torch.Tensor:
        return self.W


class _FactorisedModel:
    r"""``W = W0 + K^T A E`` with ``K = [U; E W0^T]`` (or ``U`` when ``W0 = 0``); carries
    ``C = A G_E + [0; I]``, the coefficients of every ``h_x = W e_x`` in the rows of ``K``."""

    def __init__(self, problem: _Problem):
        self.p = problem
        self.E, self.U = problem.E, problem.U
        R, N, _ = self.E.shape
        self.K = self.U if problem.W0 is None else torch.cat([self.U, self.E @ problem.W0.transpose(1, 2)], 1)
        k, M = self.K.shape[1], self.U.shape[1]
        self.gram_E = self.E @ self.E.transpose(1, 2)
        self.gram_UK = self.U @ self.K.transpose(1, 2)
        self.gram_K = self.K @ self.K.transpose(1, 2)
        self.A = torch.zeros(R, k, N, dtype=self.E.dtype, device=self.E.device)
        self.C = torch.zeros_like(self.A)
        if problem.W0 is not None:
            self.C[:, M:] = torch.eye(N, dtype=self.E.dtype, device=self.E.device)
        self.normalise = False

    def _forward(self, C: torch.Tensor):
        """Raw scores ``U h``, layer-norm factor and logits for coefficient columns ``C`` (R, k, P)."""
        raw = self.gram_UK @ C
        if not self.p.layer_norm.any():
            return raw, torch.ones_like(raw[:, 0]), raw
        norm2 = (C * (self.gram_K @ C)).sum(1)
        r = torch.where(self.p.layer_norm[:, None], (norm2 + LAYER_NORM_EPS).rsqrt(),
                        torch.ones((), dtype=raw.dtype, device=raw.device))
        return raw, r, raw * r[:, None, :]

    def step(self, batch, lr: torch.Tensor) -> None:
        """One step on the points ``idx`` (R, P): every product is ``k x P`` or ``P x N``, never ``d``."""
        idx, weights = batch
        M = self.U.shape[1]
        cols = idx[:, None, :].expand(-1, self.C.shape[1], -1)
        C = self.C.gather(2, cols)
        raw, r, logits = self._forward(C)
        target = _one_hot(self.p.labels[idx], M, logits.dtype).transpose(1, 2)
        g = (torch.softmax(logits, dim=1) - target) * weights[:, None, :]
        proj = torch.where(self.p.layer_norm[:, None], r * r * (raw * g).sum(1), torch.zeros_like(r))
        delta = -proj[:, None, :] * C
        delta[:, :M] += g
        delta = delta * r[:, None, :]
        gram_rows = _batch_gather(self.gram_E, idx)
        scale = lr
        if self.normalise:
            pair = gram_rows.gather(2, idx[:, None, :].expand(-1, idx.shape[1], -1))
            norm2 = ((delta.transpose(1, 2) @ self.gram_K @ delta) * pair).sum((1, 2))
            scale = lr / (norm2.clamp_min(0).sqrt() + _NORM_EPS)
        step = scale[:, None, None] * delta
        self.A.scatter_add_(2, cols, -step)
        self.C -= step @ gram_rows

    def scores(self) -> torch.Tensor:
        return self._forward(self.C)[2]

    def evaluate(self):
        return _evaluate(self.scores(), self.p)

    def weights(self) -> torch.Tensor:
        W = self.K.transpose(1, 2) @ self.A @ self.E
        return W if self.p.W0 is None else W + self.p.W0


def _evaluate(scores: torch.Tensor, p: _Problem):
    """Population error and loss of score tables ``(R, M, N)``."""
    logp = torch.log_softmax(scores, dim=1).gather(1, p.labels.expand(scores.shape[0], -1)[:, None, :])[:, 0]
    return scores_error(scores, p.labels, p.probs), -(logp @ p.probs)


class _Optimizer:
    """Per-run step sizes applied to a list of parameters: SGD, normalised SGD or Adam."""

    def __init__(self, name: str, betas, eps: float):
        self.name, self.betas, self.eps = name, betas, eps
        self.t = 0

    def attach(self, params) -> None:
        if self.name == "adam":
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]

    def update(self, params, grads, lr: torch.Tensor) -> None:
        self.t += 1
        if self.name == "adam" and params[0][0].numel() >= FUSED_ADAM_MIN_SIZE and hasattr(torch, "_fused_adam_"):
            self._fused_adam(params, grads, lr)
            return
        for i, (param, grad) in enumerate(zip(params, grads, strict=True)):
            rate = lr.view(-1, *([1] * (param.ndim - 1)))
            if self.name == "sgd":
                param.sub_(rate * grad)
            elif self.name == "nsgd":
                norm = grad.flatten(1).norm(dim=1).view_as(rate)
                param.sub_(rate * grad / (norm + _NORM_EPS))
            else:
                self._adam(i, param, grad, rate)

    def _adam(self, i: int, param, grad, rate) -> None:
        """In place, few passes: ``m <- lerp(m, g, 1 - b1)``, ``v <- b2 v + (1 - b2) g^2``,
        ``param -= rate * m_hat / (sqrt(v_hat) + eps)`` with the rate folded into the denominator."""
        b1, b2 = self.betas
        m, v = self.m[i], self.v[i]
        m.lerp_(grad, 1 - b1)
        v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        denom = v.sqrt().div_(math.sqrt(1 - b2 ** self.t)).add_(self.eps).div_(rate)
        param.addcdiv_(m, denom, value=-1 / (1 - b1 ** self.t))

    def _fused_adam(self, params, grads, lr: torch.Tensor) -> None:
        """The same update with torch's fused Adam kernel (one pass over each tensor), one call per run
        because the kernel takes one step size; worth it when a run's memory is large."""
        step = torch.full((), float(self.t), device=params[0].device)
        b1, b2 = self.betas
        for r, rate in enumerate(lr.tolist()):
            torch._fused_adam_([p[r] for p in params], [g[r] for g in grads], [m[r] for m in self.m],
                               [v[r] for v in self.v], [], [step] * len(params), lr=rate, beta1=b1, beta2=b2,
                               weight_decay=0.0, eps=self.eps, amsgrad=False, maximize=False)
