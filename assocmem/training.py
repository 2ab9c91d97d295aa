r"""Gradient training of associative memories, many independent runs in one tensor program.

Three models score output ``y`` for input ``x`` (chapter 4; the names of [CDB24]'s code in brackets):

* ``"W"`` [matrix]: :math:`s_y(x) = u_y^\top \mathrm{LN}(W e_x)`, only ``W`` trained;
* ``"learned"`` [learnable]: the same scores, with ``E``, ``W`` and ``U`` trained;
* ``"relu"`` [exponential]: no ``W``, :math:`s_y(x) = u_y^\top \mathrm{LN}(\mathrm{ReLU}(e_x))`, ``E`` and
  ``U`` trained.

They are trained by cross-entropy :math:`\ell = -\log \mathrm{softmax}_y`, averaged over mini-batches of
``B`` samples drawn once each (one pass over ``T`` fresh samples), or over the population ``p``
(full-batch GD). ``LN`` is the identity or the reference layer norm :math:`h \mapsto h / \sqrt{\|h\|^2 + 10^{-6}}`.

Every tensor carries a leading *runs* dimension ``R``: seeds, learning rates and layer-norm flags
are per-run tensors, so a grid of runs costs one batched matrix product per step instead of a
Python loop. Gradients are written by hand (the tests check them against autograd). The samples of a
batch that share a token share their forward pass, so a step evaluates each batch's distinct tokens
once, weighted by their counts (about 5 of 16 samples under Zipf(2) with ``N = 100``). Two exact
implementations share the interface of :func:`train`:

* ``"dense"`` stores ``W`` (``R x d x d``); any optimiser, any model. Plain SGD updates ``W`` by one
  ``baddbmm_``, or, for a large ``W``, holds the rank-``P`` updates of several steps as factors and folds
  them in with one product (``W`` written once every few steps; products with ``W`` add the factors' share);
  sign descent in one pass over ``W`` in blocks of rows that stay in cache: the block's
  gradient, its update and its share of the next step's forward pass, so ``W`` is read and written once
  a step with no optimiser state (model ``"learned"`` reads it once more, for the gradient in ``E``).
  Sign descent is Adam with betas ``(0, 0)``, :math:`\gamma\, g / (|g| + \epsilon)`, with no state.
* ``"factorised"`` writes :math:`W_t = W_0 + K^\top A_t E` with ``K`` the output embeddings (and the
  rows :math:`W_0 e_x` when :math:`W_0 \neq 0`) and ``A`` of size ``k x N``. Plain and normalised SGD
  never leave this span, with or without layer norm, so the whole run is carried by Gram matrices
  and costs :math:`O(k N P)` per step whatever ``d`` (``P`` distinct tokens in the batch). Adam,
  sign descent and learned embeddings leave the span.

:func:`optimization_grid` is the paper's training grid as a sweep experiment; :func:`load_grid` reads
its committed results (``data/training_grid/training_grid.csv.gz``). Chapter 4 of the book runs every experiment
through this module.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import _validate as check
from . import memory, zipf
from .sweep import experiment
from .theory import dynamics

__all__ = ["OPTIMIZERS", "GRID_OPTIMIZERS", "SCHEDULES", "MODELS", "PARAMETERS", "TIES", "Trained", "train",
           "gradients", "scores_error", "initial_memory", "run_embeddings", "grid_learning_rates",
           "two_token_setup", "two_token_run", "slice_directions", "slice_losses", "slice_coordinates",
           "simulate", "decoupled_comparison", "optimization_grid", "GRID_AXES", "GRID_RUNS", "GRID_FILE",
           "GRID_COLUMNS", "load_grid", "write_grid_file"]

OPTIMIZERS = ("sgd", "nsgd", "adam", "sign")
GRID_OPTIMIZERS = ("sgd", "adam", "torch_adam", "sign", "nsgd")
SCHEDULES = ("constant", "linear", "cosine")
MODELS = ("W", "learned", "relu")
PARAMETERS = {"W": ("W",), "learned": ("W", "E", "U"), "relu": ("E", "U")}
TIES = ("error", "first")
LAYER_NORM_EPS = 1e-6
_NORM_EPS = 1e-12
_W0_STREAM = 2  # memory.embeddings streams 0 and 1 are E and U
FUSED_ADAM_MIN_SIZE = 128 * 128  # entries of one run's W from which a per-run fused Adam call pays
MAX_PROGRAM_FLOATS = 2 ** 23  # entries of one R x d x d tensor in a batched grid program (32 MiB in float32)
BLOCK_FLOATS = 2 ** 18  # entries of one block of rows of W in the one-pass update (1 MiB in float32)
WHOLE_W_FLOATS = 2 ** 19  # up to this many entries of W (all runs), the one-pass update takes W whole
_BATCH_CHUNK_FLOATS = 2 ** 20  # entries of the per-chunk count table from which batches are compressed
LOW_RANK_COLUMNS = 64  # plain SGD's rank-P updates of W held as factors up to this rank, then folded in one product
LOW_RANK_MIN_FLOATS = 2 ** 17  # entries of one run's W from which the held factors pay (d >= 363; measured)


@dataclass
class Trained:
    r"""Result of :func:`train` for ``R`` runs.

    Attributes
    ----------
    steps : numpy.ndarray, shape ``(n_evals,)``
        Steps at which ``errors`` and ``losses`` were recorded (0 is the initialisation).
    errors : numpy.ndarray, shape ``(R, n_evals)``
        Population error :math:`\sum_x p(x) 1[\arg\max_y s_{xy} \neq f_*(x)]` (ties by ``train``'s
        ``ties``; ``nan`` once a run has diverged to non-finite scores).
    losses : numpy.ndarray, shape ``(R, n_evals)``
        Population cross-entropy :math:`\sum_x p(x) \ell(x)`.
    scores : torch.Tensor, shape ``(R, M, N)``
        Final scores :math:`s_{yx}`.
    W, E, U : torch.Tensor
        Final parameters (``W`` is ``None`` for the ``"relu"`` model, and when a factorised run was asked
        not to materialise it).
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
        embeddings, to compare with the decoupled prediction (without layer norm).

        Parameters
        ----------
        labels : array of int, shape ``(N,)``
            Classes :math:`f_*(x)` of the training data.
        """
        labels = torch.as_tensor(np.asarray(labels), device=self.scores.device)
        right = self.scores.gather(1, labels.expand(self.scores.shape[0], -1)[:, None, :])[:, 0]
        norms = (self.E ** 2).sum(-1) * (self.U ** 2).sum(-1).gather(1, labels.expand(self.U.shape[0], -1))
        return right / norms


def train(E, U, labels, probs, *, lr, tokens=None, batch_size: int | None = None, steps: int | None = None,
          optimizer: str = "sgd", betas=(0.9, 0.999), eps: float = 1e-8, layer_norm=False, model: str = "W",
          learn_embeddings: bool = False, W0=None, schedule: str = "constant", eval_every: int | None = None,
          method: str = "auto", ties: str = "error", keep_weights: bool = True,
          keep_history: bool = False) -> Trained:
    r"""Train ``R`` memories at once by mini-batch (or full-batch) gradient descent on cross-entropy.

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)`` and ``(R, M, d)``
        Input and output embeddings of each run (rows :math:`e_x`, :math:`u_y`); ``M >= 1``
        (``M = 1`` is trivially exact: every gradient is 0 and so is the error).
    labels : array_like of int, shape ``(N,)``
        The target :math:`f_*(x)` of each token (0-based classes).
    probs : array_like, shape ``(N,)``
        :math:`p(x)`, for the population error and loss (and the gradient in full-batch mode).
    lr : float, array_like of shape ``(R,)``, or dict
        Step size :math:`\gamma` of each run; a dict ``{"W": ..., "E": ..., "U": ...}`` gives each trained
        parameter its own (a float or ``R`` of them), as the paper's Adam does (:func:`grid_learning_rates`).
    tokens : array_like of int, shape ``(R, T)``, optional
        One pass over these samples in consecutive batches of ``batch_size`` (``T`` a multiple of it);
        the loss of a batch is the mean over its samples. Without ``tokens``, full-batch gradient
        descent on :math:`\sum_x p(x)\ell(x)` for ``steps`` steps.
    batch_size : int, optional
        ``B``, with ``tokens``.
    steps : int, optional
        Number of full-batch steps, without ``tokens``.
    optimizer : {"sgd", "nsgd", "adam", "sign"}
        Plain SGD; normalised SGD (each parameter's step is :math:`\gamma\, G / \|G\|_F`); Adam with
        ``betas`` and ``eps`` (torch's update); sign descent :math:`\gamma\, G / (|G| + \epsilon)`,
        which is Adam with betas ``(0, 0)``, computed without any optimiser state.
    betas : tuple of two floats in [0, 1)
        Adam's moment decays.
    eps : float
        Adam's and sign descent's :math:`\epsilon \ge 0`.
    layer_norm : bool or array_like of bool, shape ``(R,)``
        Apply :math:`h / \sqrt{\|h\|^2 + 10^{-6}}` to :math:`h = W e_x` (or :math:`\mathrm{ReLU}(e_x)`), per run.
    model : {"W", "learned", "relu"}
        What is trained (see the module's notes): ``W``; ``E``, ``W`` and ``U``; or ``E`` and ``U`` with
        scores :math:`u_y^\top \mathrm{LN}(\mathrm{ReLU}(e_x))` and no ``W``.
    learn_embeddings : bool
        ``True`` is ``model="learned"``.
    W0 : torch.Tensor of shape ``(R, d, d)``, optional
        Initial memory (zero when omitted; not used by ``"relu"``).
    schedule : {"constant", "linear", "cosine"}
        Learning rate :math:`\gamma_t = \gamma\, s(t / \text{steps})` with ``s = 1``, ``1 - u``,
        or ``(1 + cos(pi u)) / 2``.
    eval_every : int, optional
        Record error and loss every ``eval_every`` steps (and at 0 and the end); default: only the ends.
    method : {"auto", "dense", "factorised"}
        ``"auto"`` is factorised whenever that is exact (SGD or normalised SGD, model ``"W"``) and cheaper,
        i.e. when :math:`d^2 > k N` (``k = M``, or ``M + N`` when :math:`W_0 \neq 0`).
    ties : {"error", "first"}
        Score ties in the error: counted as errors, or ``argmax``'s first class (the papers' code).
    keep_weights : bool
        Whether a factorised run materialises the final ``W`` (``d x d`` per run).
    keep_history : bool
        Keep ``W`` at every recorded step (for small ``d``: trajectories in chapter 4).

    Returns
    -------
    Trained
    """
    model = check.choice("model", model, MODELS)
    if learn_embeddings:
        if model == "relu":
            raise ValueError("learn_embeddings=True means model='learned'; it cannot be combined with model='relu'")
        model = "learned"
    optimizer = check.choice("optimizer", optimizer, OPTIMIZERS)
    schedule = check.choice("schedule", schedule, SCHEDULES)
    method = check.choice("method", method, ("auto", "dense", "factorised"))
    ties = check.choice("ties", ties, TIES)
    problem = _Problem.build(E, U, labels, probs, lr, tokens, batch_size, steps, layer_norm, W0, PARAMETERS[model])
    exact_factorised = optimizer in ("sgd", "nsgd") and model == "W"
    if method == "factorised" and not exact_factorised:
        raise ValueError("method='factorised' is exact only for optimizer 'sgd' or 'nsgd' with model 'W'; "
                         f"got optimizer={optimizer!r}, model={model!r}")
    if keep_history and model == "relu":
        raise ValueError("keep_history keeps W, which the 'relu' model does not have")
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise TypeError(f"betas must be a pair of floats in [0, 1), got {check._short(betas)}")
    betas = tuple(check.real(f"betas[{i}]", b, low=0.0, high=1.0, high_open=True) for i, b in enumerate(betas))
    eps = check.real("eps", eps, low=0.0)
    every = problem.steps if eval_every is None else check.positive_int("eval_every", eval_every)
    _check_cost(problem, every, keep_history, "steps" if tokens is None else "tokens, batch_size")
    record = sorted({0, problem.steps, *range(0, problem.steps, every)})
    d, span = problem.E.shape[2], problem.U.shape[1] + (0 if problem.W0 is None else problem.E.shape[1])
    # the factorised step costs about k N per point against d^2 for the dense one
    factorised = method == "factorised" or (method == "auto" and exact_factorised and d * d > span * problem.E.shape[1])
    net = (_FactorisedModel(problem, normalise=optimizer == "nsgd", track_W=keep_weights or keep_history)
           if factorised
           else _DenseModel(problem, model, _Optimizer(optimizer, betas, eps)))
    errors, losses, history = [], [], []
    batches = problem.batches()
    batch = next(batches, None)
    for t in range(problem.steps + 1):
        if t in record:
            error, loss = _evaluate(net.scores(), problem, ties)
            errors.append(error)
            losses.append(loss)
            if keep_history:
                history.append(net.weights().clone())
        if t < problem.steps:
            following = next(batches, None)
            factor = _schedule_factor(schedule, t, problem.steps)
            net.step(batch, {name: rate * factor for name, rate in problem.lr.items()}, following)
            batch = following
    return Trained(steps=np.array(record), errors=torch.stack(errors, 1).cpu().numpy(),
                   losses=torch.stack(losses, 1).cpu().numpy(), scores=net.scores(),
                   W=net.weights() if keep_weights or not factorised else None,
                   E=net.E, U=net.U, method="factorised" if factorised else "dense",
                   history=torch.stack(history, 1) if keep_history else None)


def _gradient_inputs(W, E, U, labels, idx, weights, layer_norm, relu: bool):
    """The inputs of :func:`gradients`, each refused by name when malformed, as tensors of one dtype on
    ``E``'s device (``W`` is None for the ``"relu"`` model)."""
    E, U = check.tensor("E", E, ndim=3), check.tensor("U", U, ndim=3)
    R, N, d = E.shape
    if U.shape[0] != R or U.shape[2] != d:
        raise ValueError(f"U must have shape (R={R}, M, d={d}) to match E {tuple(E.shape)}, got {tuple(U.shape)}")
    dtype, dev = torch.promote_types(E.dtype, U.dtype), E.device
    if relu:
        W = None
    else:
        W = check.tensor("W", W, ndim=3)
        if tuple(W.shape) != (R, d, d):
            raise ValueError(f"W must have shape (R, d, d) = ({R}, {d}, {d}), got {tuple(W.shape)}")
        dtype = torch.promote_types(dtype, W.dtype)
        W = W.to(device=dev, dtype=dtype)
    E, U = E.to(dtype), U.to(device=dev, dtype=dtype)
    labels = torch.as_tensor(check.labels("labels", labels, N, U.shape[1]), device=dev)
    points = np.asarray(idx.detach().cpu() if isinstance(idx, torch.Tensor) else idx)
    if not np.issubdtype(points.dtype, np.integer):
        raise TypeError(f"idx must be integer token indices of shape (R={R}, P), got {check._short(idx)}")
    if points.ndim != 2 or points.shape[0] != R or points.shape[1] == 0 or points.min() < 0 or points.max() >= N:
        raise ValueError(f"idx must have shape (R={R}, P) with P >= 1 and entries in [0, {N - 1}], "
                         f"got {check._short(idx)}")
    w = check.real_array("weights", weights)
    if w.shape != points.shape:
        raise ValueError(f"weights must have the shape of idx {points.shape}, got {w.shape}")
    ln = np.asarray(layer_norm.detach().cpu() if isinstance(layer_norm, torch.Tensor) else layer_norm)
    if ln.dtype != bool or ln.shape not in ((), (R,)):
        raise TypeError(f"layer_norm must be a bool or R={R} bools, got {check._short(layer_norm)}")
    return (W, E, U, labels, torch.as_tensor(points, device=dev), torch.as_tensor(w, device=dev, dtype=dtype),
            torch.as_tensor(ln, device=dev).expand(R))


def scores_error(scores: torch.Tensor, labels, probs, *, ties: str = "error") -> torch.Tensor:
    r"""Population error of score tables ``(R, M, N)``, shape ``(R,)``.

    With ``ties="error"``: :math:`\sum_x p(x)\,1[\exists y \neq f_*(x):\ s_{yx} \geq s_{f_*(x)x}]` (a tie
    is an error). With ``ties="first"``: :math:`\sum_x p(x)\,1[\arg\max_y s_{yx} \neq f_*(x)]` with
    ``argmax`` the first of the largest scores, as the papers' code computes it. A run whose scores are
    not all finite (training diverged) gets ``nan``, never a number.

    Parameters
    ----------
    scores : torch.Tensor, shape ``(R, M, N)``
    labels : array_like of int, shape ``(N,)``
    probs : array_like, shape ``(N,)``
    ties : {"error", "first"}
    """
    ties = check.choice("ties", ties, TIES)
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError(f"scores must be a floating torch tensor of shape (R, M, N), got {check._short(scores)}")
    if scores.ndim != 3 or scores.numel() == 0:
        raise ValueError(f"scores must have shape (R, M, N) with no empty axis, got {tuple(scores.shape)}")
    N = scores.shape[2]
    labels = torch.as_tensor(check.labels("labels", labels, N, scores.shape[1]), device=scores.device)
    p = check.real_array("probs", probs)
    if p.shape != (N,) or (p < 0).any():
        raise ValueError(f"probs must be N={N} non-negative weights, one per token, got {check._short(probs)}")
    probs = torch.as_tensor(p, device=scores.device, dtype=scores.dtype)
    if ties == "first":
        wrong = (scores.argmax(1) != labels).to(scores.dtype)
    else:
        right = scores.gather(1, labels.expand(scores.shape[0], -1)[:, None, :])
        rivals = scores.masked_fill(_one_hot(labels, scores.shape[1], scores.dtype).T.bool(), -math.inf)
        wrong = (rivals.amax(1, keepdim=True) >= right)[:, 0].to(scores.dtype)
    diverged = ~torch.isfinite(scores).all(dim=2).all(dim=1)
    return (wrong @ probs).masked_fill(diverged, math.nan)


def gradients(W, E, U, labels, idx, weights, layer_norm=False, *, wrt=("W", "E", "U"), model: str = "W"):
    r"""Loss and hand-written gradients of :math:`L = \sum_p w_p\, \ell(x_p)`, batched over runs.

    With :math:`h = W e_x` (model ``"relu"``: :math:`h = \mathrm{ReLU}(e_x)`),
    :math:`r = (\|h\|^2 + 10^{-6})^{-1/2}` (1 without layer norm), :math:`z = r h`, logits :math:`U z`
    and :math:`g = w(\mathrm{softmax} - \mathbf 1_{f_*(x)})`:

    .. math:: \partial_U L = g^\top z,\quad \partial_z = U^\top g,\quad
              \partial_h = r(\partial_z - r^2 h\, h^\top \partial_z),\quad
              \partial_W L = \sum_p \partial_{h_p} e_{x_p}^\top,\quad
              \partial_{e_x} L = \sum_{p: x_p = x} W^\top \partial_{h_p}
              \ \ (\text{"relu"}: \textstyle\sum_{p: x_p = x} 1[e_x > 0] \odot \partial_{h_p}).

    Parameters
    ----------
    W : torch.Tensor (R, d, d), or None for model ``"relu"``
    E : torch.Tensor (R, N, d)
    U : torch.Tensor (R, M, d)
    labels : torch.Tensor (N,) of int
    idx, weights : torch.Tensor (R, P)
        The tokens of the points and their weights.
    layer_norm : bool or (R,) bool tensor
    wrt : tuple of {"W", "E", "U"}
        The gradients to compute (``E``'s costs as much as the forward pass).
    model : {"W", "learned", "relu"}
        ``"W"`` and ``"learned"`` share their scores; ``"relu"`` has no ``W``.

    Returns
    -------
    loss : (R,) tensor, and a dict of the gradients in ``wrt``, shaped like the parameters.
    """
    relu = check.choice("model", model, MODELS) == "relu"
    if isinstance(wrt, str) or not isinstance(wrt, (tuple, list)) or not all(name in PARAMETERS["learned"]
                                                                             for name in wrt):
        raise ValueError(f"wrt must be a tuple of names among {PARAMETERS['learned']}, got {check._short(wrt)}")
    if relu and "W" in wrt:
        raise ValueError("the 'relu' model has no W: leave 'W' out of wrt")
    W, E, U, labels, idx, weights, layer_norm = _gradient_inputs(W, E, U, labels, idx, weights, layer_norm, relu)
    bp = _backprop(W, E, U, labels, idx, weights, layer_norm, relu)
    grads = {}
    if "W" in wrt:
        grads["W"] = bp.dh.transpose(1, 2) @ bp.e
    if "E" in wrt:
        rows = bp.dh * (bp.e > 0) if relu else bp.dh @ W
        grads["E"] = torch.zeros_like(E).index_put_((_runs_index(idx), idx), rows, accumulate=True)
    if "U" in wrt:
        grads["U"] = bp.g.transpose(1, 2) @ bp.z
    return bp.loss, grads


def grid_learning_rates(optimizer: str, model: str, lr, d: int) -> tuple[str, dict]:
    r"""The rule of :func:`train` and the per-parameter step sizes of one of :data:`GRID_OPTIMIZERS`.

    * ``"sgd"``: plain SGD, :math:`\gamma` for every trained parameter;
    * ``"adam"``: the paper's Adam, torch's Adam with betas ``(0, 0)``, i.e. sign descent
      :math:`\gamma' g / (|g| + 10^{-8})`, at :math:`\gamma' = \gamma / d` for ``W`` and
      :math:`\gamma / \sqrt d` for ``E`` and ``U`` (``"relu"``: :math:`\gamma/\sqrt d` for both);
    * ``"torch_adam"``: torch's default Adam (betas ``(0.9, 0.999)``) at :math:`\gamma` for every parameter;
    * ``"sign"``, ``"nsgd"``: those rules of :func:`train` at :math:`\gamma`.

    Parameters
    ----------
    optimizer : one of :data:`GRID_OPTIMIZERS`
    model : one of :data:`MODELS`
    lr : float or array_like
        The nominal :math:`\gamma` (per run).
    d : int
        The embedding dimension.

    Returns
    -------
    (rule, lr) : the ``optimizer`` and ``lr`` arguments of :func:`train`.
    """
    optimizer = check.choice("optimizer", optimizer, GRID_OPTIMIZERS)
    names = PARAMETERS[check.choice("model", model, MODELS)]
    d = check.positive_int("d", d)
    lr = check.positive_array("lr", lr)
    if optimizer == "adam":
        return "sign", {name: lr / d if name == "W" else lr / math.sqrt(d) for name in names}
    rule = {"sgd": "sgd", "torch_adam": "adam", "sign": "sign", "nsgd": "nsgd"}[optimizer]
    return rule, {name: lr for name in names}


def initial_memory(runs_seeds, d: int, *, init: str = "zero", dtype=torch.float32, device="cpu") -> torch.Tensor | None:
    r"""The initial memory of each run: ``None`` for ``init="zero"``, else :math:`W_0` with i.i.d.
    :math:`\mathcal N(0, 1/d)` entries (``randn / sqrt(d)``) drawn from each run's seed.

    Parameters
    ----------
    runs_seeds : iterable of int
        The seed of each run (runs sharing a seed share :math:`W_0`).
    d : int
        The dimension.
    init : {"zero", "random"}
    dtype, device
        Of the returned ``(R, d, d)`` tensor (the draw does not depend on them).
    """
    check.choice("init", init, ("zero", "random"))
    d = check.positive_int("d", d)
    if init == "zero":
        return None
    return _per_seed(runs_seeds, lambda seed: memory.embeddings(d, d, seed, stream=_W0_STREAM, dtype=dtype,
                                                                device=device))


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
    runs_seeds = _seeds(runs_seeds)
    check.budget("N, M, d, runs_seeds", nbytes=16.0 * len(runs_seeds) * (N + M) * d,
                 formula="the draws and their storage, runs x (N + M) x d, 8 bytes each")
    kwargs = dict(dtype=dtype, device=device)
    return (_per_seed(runs_seeds, lambda seed: memory.embeddings(N, d, seed, stream=0, **kwargs)),
            _per_seed(runs_seeds, lambda seed: memory.embeddings(M, d, seed, stream=1, kind=output_embeddings,
                                                                 **kwargs)))


def _seeds(runs_seeds) -> list[int]:
    """``runs_seeds`` (an iterable, e.g. a range) as a non-empty list of seeds, refused by name otherwise."""
    if isinstance(runs_seeds, (str, bytes)) or runs_seeds is None:
        raise TypeError(f"runs_seeds must be an iterable of non-negative integers, got {check._short(runs_seeds)}")
    try:
        values = runs_seeds if isinstance(runs_seeds, (np.ndarray, torch.Tensor)) else list(runs_seeds)
    except TypeError:
        raise TypeError(f"runs_seeds must be an iterable of non-negative integers, got "
                        f"{check._short(runs_seeds)}") from None
    return check.int_array("runs_seeds", values, minimum=0).tolist()


def _per_seed(runs_seeds, draw) -> torch.Tensor:
    """``draw(seed)`` (a ``(1, ...)`` tensor) for each run, drawn once per distinct seed: shape ``(R, ...)``."""
    runs_seeds = _seeds(runs_seeds)
    distinct = {seed: draw(seed) for seed in dict.fromkeys(runs_seeds)}
    return torch.cat([distinct[seed] for seed in runs_seeds])


def two_token_setup(cosine: float = 0.95, p1: float = 0.75, *, dtype=torch.float64):
    r"""The two-token example of [CSB24] (chapter 4): ``N = M = d = 2``, ``U = I``, ``f_*(x) = x``,
    :math:`e_1 = (1, 0)`, :math:`e_2 = (c, \sqrt{1 - c^2})` with :math:`c = \cos(e_1, e_2)`,
    :math:`p = (p_1, 1 - p_1)`. Returns ``(E, U, labels, probs)`` with a runs axis of size 1.

    Parameters
    ----------
    cosine : float
        :math:`c = \cos(e_1, e_2)`, in :math:`[-1, 1]`.
    p1 : float
        Probability :math:`p_1` of token 1, in :math:`[0, 1]`.
    dtype : torch.dtype
        Floating dtype of ``E`` and ``U``.
    """
    c = check.real("cosine", cosine, low=-1.0, high=1.0)
    p1 = check.real("p1", p1, low=0.0, high=1.0)
    E = torch.tensor([[[1.0, 0.0], [c, math.sqrt(1.0 - c * c)]]], dtype=dtype)
    U = torch.eye(2, dtype=dtype)[None]
    return E, U, np.array([0, 1]), np.array([p1, 1.0 - p1])


def two_token_run(lrs=(1.0, 10.0), steps: int = 35, *, cosine: float = 0.95, p1: float = 0.75) -> Trained:
    """Full-batch gradient descent from ``W = 0`` on :func:`two_token_setup`, one run per step size,
    recording loss, error and ``W`` at every step.

    Parameters
    ----------
    lrs : sequence of float
        Step sizes :math:`\\eta`, one run each.
    steps : int
        Number of gradient steps.
    cosine : float
        :math:`\\cos(e_1, e_2)` (:func:`two_token_setup`).
    p1 : float
        Probability of token 1 (:func:`two_token_setup`).

    Returns
    -------
    Trained
        The runs, with the history of ``W``.
    """
    lrs = _step_sizes("lrs", lrs)
    steps = check.positive_int("steps", steps)
    E, U, labels, probs = two_token_setup(cosine, p1)
    R = len(lrs)
    return train(E.expand(R, -1, -1), U.expand(R, -1, -1), labels, probs, lr=lrs, steps=steps,
                 eval_every=1, method="dense", keep_history=True)


def slice_directions(E: torch.Tensor, U: torch.Tensor, labels) -> torch.Tensor:
    r"""One direction per token, :math:`D_x = (u_{f_*(x)} - \bar u_{\neq f_*(x)})\, e_x^\top`, shape
    ``(N, d, d)`` (``E``, ``U`` of one run, 2-D). For ``M = 2`` gradient descent from 0 stays in their span.

    Parameters
    ----------
    E : torch.Tensor, shape ``(N, d)``
        Input embeddings of one run.
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings of that run, :math:`M \ge 2`.
    labels : array of int, shape ``(N,)``
        Classes :math:`f_*(x)`, in :math:`[0, M-1]`.
    """
    E, U = check.tensor("E", E, ndim=2), check.tensor("U", U, ndim=2)
    labels = check.int_array("labels", labels, minimum=0)
    if labels.size != E.shape[0] or labels.max() >= U.shape[0] or U.shape[0] < 2 or E.shape[1] != U.shape[1]:
        raise ValueError(f"labels must give one class in [0, M={U.shape[0]}) per row of E ({E.shape[0]}), with "
                         f"M >= 2 and E, U of one dimension d; got {labels.size} labels, E {tuple(E.shape)}, "
                         f"U {tuple(U.shape)}")
    labels = torch.as_tensor(labels)
    M = U.shape[0]
    others = (U.sum(0, keepdim=True) - U[labels]) / (M - 1)
    return torch.einsum("xi,xj->xij", U[labels] - others, E)


def slice_losses(E: torch.Tensor, U: torch.Tensor, labels, probs, a, b, *, tokens=(0, 1)) -> np.ndarray:
    r"""Population loss on the plane :math:`W = a D_{x_1} + b D_{x_2}` (:func:`slice_directions`) for a
    grid of coordinates: shape ``(len(b), len(a))``, ready for ``contour(a, b, ...)``.

    Parameters
    ----------
    E : torch.Tensor, shape ``(N, d)``
        Input embeddings of one run.
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings of that run, :math:`M \ge 2`.
    labels : array of int, shape ``(N,)``
        Classes :math:`f_*(x)`, in :math:`[0, M-1]`.
    probs : array, shape ``(N,)``
        Token probabilities :math:`p(x)`.
    a : array, 1-D
        Coordinates along :math:`D_{x_1}`.
    b : array, 1-D
        Coordinates along :math:`D_{x_2}`.
    tokens : pair of int
        The two tokens :math:`x_1, x_2` whose directions span the plane, indices in :math:`[0, N)`.
    """
    E, U = check.tensor("E", E, ndim=2), check.tensor("U", U, ndim=2)
    a, b, probs = check.real_array("a", a), check.real_array("b", b), check.real_array("probs", probs)
    tokens = _plane_tokens(tokens, E.shape[0])
    if probs.shape != (E.shape[0],) or a.ndim > 1 or b.ndim > 1:
        raise ValueError(f"probs must have one entry per row of E ({E.shape[0]}) and a, b must be 1-D; got probs "
                         f"{probs.shape}, a {a.shape}, b {b.shape}")
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
    shape ``(..., 2)`` (exact when ``W`` lies in the plane).

    Parameters
    ----------
    W : torch.Tensor, shape ``(..., d, d)``
        Memories of the run.
    E : torch.Tensor, shape ``(N, d)``
        Input embeddings of one run.
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings of that run, :math:`M \\ge 2`.
    labels : array of int, shape ``(N,)``
        Classes :math:`f_*(x)`, in :math:`[0, M-1]`.
    tokens : pair of int
        The two tokens :math:`x_1, x_2` whose directions span the plane, indices in :math:`[0, N)`.
    """
    W = check.tensor("W", W, min_ndim=2)
    E = check.tensor("E", E, ndim=2)
    if W.shape[-2:] != (E.shape[1], E.shape[1]):
        raise ValueError(f"W must have shape (..., d, d) with d={E.shape[1]}, got {tuple(W.shape)}")
    tokens = _plane_tokens(tokens, E.shape[0])
    D = slice_directions(E, U, labels)[list(tokens)].reshape(2, -1).T
    flat = W.reshape(-1, D.shape[0]).T
    coords = torch.linalg.lstsq(D.to(W.dtype), flat).solution.T
    return coords.reshape(*W.shape[:-2], 2).numpy()


def _plane_tokens(tokens, N: int) -> list[int]:
    tokens = check.int_array("tokens", tokens, minimum=0)
    if tokens.size != 2 or tokens.max() >= N:
        raise ValueError(f"tokens must be two token indices in [0, {N}), got {tokens.tolist()}")
    return tokens.tolist()


def simulate(*, N: int = 100, M: int = 5, alpha: float = 2.0, d: int = 100, T: int = 1024,
             batch_size: int = 16, lrs=(1.0,), seeds=(0,), layer_norms=(False,), optimizer: str = "sgd",
             model: str = "W", init: str = "zero", schedule: str = "constant", eval_every: int | None = None,
             method: str = "auto", output_embeddings: str = "gaussian", ties: str = "error",
             dtype=torch.float32, device="cpu", keep_weights: bool = False):
    r"""Every combination of ``seeds x lrs x layer_norms`` trained as one batched program.

    Data: ``f_*(x) = x mod M`` on a Zipf(``alpha``) law over ``N`` tokens; each seed draws its own
    embeddings, ``W_0`` and ``T`` fresh samples (shared by the runs of that seed, so learning rates
    are compared on the same data).

    Parameters
    ----------
    N, M, alpha : int, int, float
        Tokens, classes, Zipf exponent.
    d, T, batch_size : int
        Dimension, samples (one pass), batch size.
    lrs, seeds, layer_norms : sequences
        The nominal step sizes, seeds and layer-norm flags crossed into runs.
    optimizer : one of :data:`GRID_OPTIMIZERS`
        ``"adam"`` is the paper's (sign descent at ``lr/d`` for ``W``, ``lr/sqrt(d)`` for ``E`` and ``U``;
        see :func:`grid_learning_rates`), ``"torch_adam"`` torch's default Adam at the nominal step size.
    model : one of :data:`MODELS`
    init : {"zero", "random"}
        :math:`W_0 = 0` or ``randn / sqrt(d)`` (:func:`initial_memory`).
    schedule, eval_every, method, ties, keep_weights
        As in :func:`train`.
    output_embeddings : {"gaussian", "sphere"}
        Law of ``U`` (:func:`run_embeddings`).
    dtype, device
        Of the tensors.

    Returns
    -------
    runs : list of dict
        ``seed``, ``lr``, ``layer_norm`` of each run, in the order of the runs dimension.
    trained : Trained
    """
    check.choice("model", model, MODELS)
    check.device("device", device)
    N, M, d = check.positive_int("N", N), check.positive_int("M", M), check.positive_int("d", d)
    T, batch_size = check.positive_int("T", T), check.positive_int("batch_size", batch_size)
    lrs, layer_norms = _step_sizes("lrs", lrs), _flags("layer_norms", layer_norms)
    seeds = check.int_array("seeds", seeds, minimum=0).tolist()
    R = len(seeds) * len(lrs) * len(layer_norms)
    check.budget("seeds, lrs, layer_norms, N, M, d, T", nbytes=8.0 * R * ((N + M + d) * d + T),
                 formula="runs x ((N + M + d) x d + T) numbers: embeddings, W0 and samples")
    probs = zipf.zipf_probs(N, alpha)
    labels = zipf.mod_labels(N, M)
    runs = [{"seed": int(s), "lr": float(g), "layer_norm": bool(ln)}
            for s in seeds for g in lrs for ln in layer_norms]
    run_seeds = [r["seed"] for r in runs]
    rule, rates = grid_learning_rates(optimizer, model, [r["lr"] for r in runs], d)
    E, U = run_embeddings(run_seeds, N, M, d, output_embeddings=output_embeddings, dtype=dtype, device=device)
    distinct = {seed: zipf.sample_tokens(N, alpha, T, seed) for seed in dict.fromkeys(run_seeds)}
    tokens = np.stack([distinct[seed] for seed in run_seeds])
    W0 = None if model == "relu" else initial_memory(run_seeds, d, init=init, dtype=dtype, device=device)
    trained = train(E, U, labels, probs, lr=rates, tokens=tokens, batch_size=batch_size, optimizer=rule,
                    layer_norm=[r["layer_norm"] for r in runs], model=model, schedule=schedule,
                    eval_every=eval_every, W0=W0, method=method, ties=ties, keep_weights=keep_weights)
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
    lr = check.real("lr", lr, low=0.0, low_open=True)
    T = check.positive_int("batch_size", batch_size) * check.positive_int("steps", steps)
    check.device("device", device)
    size = len(seeds) * (check.positive_int("N", N) + check.positive_int("M", M)) * check.positive_int("d", d)
    check.budget("trials, N, M, d, steps", nbytes=8.0 * size, work=4.0 * T * size,
                 formula="trials x batch_size x steps x (N + M) x d")
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


GRID_AXES = {"d": (10, 20, 50, 100, 200, 500, 1000), "T": (1024, 10_240, 102_400),
             "batch_size": (16, 64, 256, 1024), "optimizer": ("sgd", "adam"), "model": MODELS}
GRID_RUNS = 7 * 3 * 4 * 2 * 3 * (10 * 4 * 2)  # the axes above x 10 seeds x 4 step sizes x layer norm on/off
GRID_FILE = Path(__file__).resolve().parent.parent / "data" / "training_grid" / "training_grid.csv.gz"
GRID_COLUMNS = ("model", "optimizer", "lr", "d", "T", "batch_size", "layer_norm", "seed", "error", "diverged")


@experiment("optimization_grid", version=2)
def optimization_grid(d: int = 100, T: int = 1024, batch_size: int = 16, optimizer: str = "sgd",
                      model: str = "W", lrs=(0.1, 1.0, 10.0, 100.0), trials: int = 10,
                      layer_norms=(False, True), N: int = 100, M: int = 5, alpha: float = 2.0,
                      init: str = "random", device: str = "cpu"):
    """One cell of the paper's training grid (chapter 4): ``trials`` seeds x ``lrs`` x ``layer_norms``
    runs trained together; one row per run with its final population error.

    The paper's settings are the defaults: ``N = 100``, ``M = 5``, ``alpha = 2``, ``f_*(x) = x mod M``,
    :math:`W_0 = \\mathrm{randn}/\\sqrt d`, :math:`E, U \\sim \\mathcal N(0, I/d)`, one pass over ``T``
    fresh samples in batches of ``batch_size``, the error of ``argmax`` (first class on ties, as the
    paper's code). ``optimizer`` is one of :data:`GRID_OPTIMIZERS` (``"adam"`` is the paper's, see
    :func:`grid_learning_rates`), ``model`` one of :data:`MODELS`. The full grid (:data:`GRID_AXES`,
    40,320 runs) is run by the command in ``data/training_grid/README.md`` and read back by :func:`load_grid`.

    The runs go in as few batched programs as keep each ``R x d x d`` tensor under
    ``MAX_PROGRAM_FLOATS`` entries (all of them at once up to ``d`` of a few hundred).

    Parameters
    ----------
    d, T, batch_size : int
        Dimension, number of fresh samples (one pass) and batch size.
    optimizer : one of :data:`GRID_OPTIMIZERS`
    model : one of :data:`MODELS`
    lrs : tuple of float
        The nominal step sizes :math:`\\gamma`.
    trials : int
        Seeds ``0 .. trials - 1``.
    layer_norms : tuple of bool
        Layer norm off and / or on.
    N, M, alpha : int, int, float
        Tokens, classes, Zipf exponent.
    init : {"random", "zero"}
        :math:`W_0`.
    device : str
        Torch device of the programs.

    Returns
    -------
    list of dict
        One row per run: ``seed``, ``lr``, ``layer_norm``, ``error`` (``nan`` when diverged), ``diverged``.
    """
    trials = check.positive_int("trials", trials)
    d = check.positive_int("d", d)
    check.choice("optimizer", optimizer, GRID_OPTIMIZERS)
    per_seed = len(lrs) * len(layer_norms)
    seeds_per_program = max(1, MAX_PROGRAM_FLOATS // (per_seed * d * d))
    rows = []
    for first in range(0, trials, seeds_per_program):
        runs, trained = simulate(N=N, M=M, alpha=alpha, d=d, T=T, batch_size=batch_size, lrs=lrs,
                                 seeds=range(first, min(trials, first + seeds_per_program)),
                                 layer_norms=layer_norms, optimizer=optimizer, model=model, init=init,
                                 ties="first", device=device)
        rows += [{**run, "error": float(err), "diverged": bool(np.isnan(err))}
                 for run, err in zip(runs, trained.errors[:, -1], strict=True)]
    return rows


def load_grid(path=None):
    """The committed results of the paper's training grid, one row per run (chapter 4).

    Parameters
    ----------
    path : str or path-like, optional
        A gzip CSV written by the command in ``data/training_grid/README.md`` (default :data:`GRID_FILE`,
        ``data/training_grid/training_grid.csv.gz`` in the repository).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`GRID_COLUMNS`: ``model``, ``optimizer`` (``"sgd"`` or ``"adam"``, the paper's),
        ``lr`` (nominal :math:`\\gamma`), ``d``, ``T``, ``batch_size``, ``layer_norm``, ``seed``, ``error``
        (``nan`` where ``diverged``), ``diverged``. ``attrs["runs"]`` is the number of rows and
        ``attrs["expected"]`` the size of the full grid, :data:`GRID_RUNS`.
    """
    import pandas as pd

    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or path-like), got {path!r}")
    path = Path(GRID_FILE if path is None else path)
    if not path.is_file():
        raise ValueError(f"path: no grid file at {path}; the command in data/training_grid/README.md writes it")
    try:
        table = pd.read_csv(path)
    except (UnicodeDecodeError, ValueError, OSError, EOFError) as error:  # pandas' parser errors are ValueErrors
        raise ValueError(f"path: {path} is not a readable grid file (a gzip CSV): "
                         f"{type(error).__name__}: {error}") from None
    missing = sorted(set(GRID_COLUMNS) - set(table.columns))
    if missing:
        raise ValueError(f"path: {path} lacks the columns {missing}")
    table = table[list(GRID_COLUMNS)].astype({"model": str, "optimizer": str, "lr": float, "d": int, "T": int,
                                              "batch_size": int, "layer_norm": bool, "seed": int,
                                              "error": float, "diverged": bool})
    table.attrs.update(runs=len(table), expected=GRID_RUNS)
    return table


def write_grid_file(path=None, *, cache=True) -> int:
    """Write the finished runs of the paper's grid (:data:`GRID_AXES`) from the sweep cache to a gzip CSV
    with the columns :data:`GRID_COLUMNS`, in the grid's order; points not finished yet are left out (the
    CLI command in ``data/training_grid/README.md`` computes them, and this call is run again). A cache
    with no run, or with fewer runs than the file already holds, is an error (the file is kept).

    Parameters
    ----------
    path : str or path-like, optional
        Where to write (default :data:`GRID_FILE`); written atomically, byte-for-byte reproducible
        (no time stamp in the gzip header).
    cache : True, str or path-like
        The sweep cache the CLI wrote (``--cache DIR``; ``True`` is the default cache).

    Returns
    -------
    int
        The number of runs written (:data:`GRID_RUNS` once the grid is complete).
    """
    import gzip

    import pandas as pd

    from . import sweep
    from ._io import atomic_write

    if path is not None and not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a file path (str or os.PathLike) or None, got {check._short(path)}")
    if cache is not True and not isinstance(cache, (str, os.PathLike)):
        raise TypeError(f"cache must be True or a directory path (str or os.PathLike), got {check._short(cache)}")
    store = sweep.DiskCache() if cache is True else sweep.DiskCache(cache)
    path = Path(GRID_FILE if path is None else path)
    rows = []
    for config in sweep.grid(**GRID_AXES):
        full = optimization_grid.config(config)
        found = store.load(sweep.config_key(optimization_grid, full))
        rows += [{**full, **row} for row in found or ()]
    held = len(load_grid(path)) if path.is_file() else 0
    if len(rows) < max(held, 1):
        raise ValueError(f"cache: {store.directory} holds {len(rows)} runs of the grid, {path} already {held}; "
                         "give the cache the CLI wrote (--cache), the file is left as it is")
    text = pd.DataFrame(rows, columns=list(GRID_COLUMNS)).to_csv(index=False).encode()

    def write(handle) -> None:
        with gzip.GzipFile(fileobj=handle, mode="wb", mtime=0) as archive:
            archive.write(text)

    atomic_write(path, write, binary=True)
    return len(rows)


# --- internals -------------------------------------------------------------------------------------

@dataclass
class _Problem:
    """Validated inputs of :func:`train`, as tensors on one device; ``lr`` maps each trained parameter
    to its ``(R,)`` step sizes."""

    E: torch.Tensor
    U: torch.Tensor
    labels: torch.Tensor
    probs: torch.Tensor
    lr: dict
    tokens: torch.Tensor | None
    batch_size: int
    steps: int
    layer_norm: torch.Tensor
    W0: torch.Tensor | None

    @classmethod
    def build(cls, E, U, labels, probs, lr, tokens, batch_size, steps, layer_norm, W0, names) -> _Problem:
        if not (isinstance(E, torch.Tensor) and isinstance(U, torch.Tensor)):
            raise TypeError("E and U must be torch tensors of shapes (R, N, d) and (R, M, d)")
        if E.ndim != 3 or U.ndim != 3 or E.shape[0] != U.shape[0] or E.shape[2] != U.shape[2]:
            raise ValueError(f"E and U must have shapes (R, N, d) and (R, M, d), got {tuple(E.shape)} "
                             f"and {tuple(U.shape)}")
        if not E.is_floating_point() or U.dtype != E.dtype:
            raise TypeError("E and U must share one floating dtype")
        E, U = check.tensor("E", E), check.tensor("U", U)  # finite, non-empty
        R, N, d = E.shape
        M = U.shape[1]
        if M < 1:
            raise ValueError(f"U must hold M >= 1 output embeddings, got M={M}")
        dev, dt = E.device, E.dtype
        labels = np.asarray(labels)
        if labels.shape != (N,) or not np.issubdtype(labels.dtype, np.integer) or labels.min() < 0 \
                or labels.max() >= M:
            raise ValueError(f"labels must be N={N} integers in [0, {M - 1}]")
        probs = check.real_array("probs", probs)
        if probs.shape != (N,) or probs.min() < 0 or not np.isclose(probs.sum(), 1.0):
            raise ValueError(f"probs must be N={N} non-negative numbers summing to 1")
        if isinstance(lr, Mapping):
            if set(lr) != set(names):
                raise ValueError(f"lr as a dict must give the step sizes of exactly the trained parameters "
                                 f"{list(names)}, got {sorted(lr)}")
            rates = {name: _run_rates(f"lr[{name!r}]", lr[name], R) for name in names}
        else:
            rates = dict.fromkeys(names, _run_rates("lr", lr, R))
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
                   {name: torch.as_tensor(rate, device=dev, dtype=dt) for name, rate in rates.items()},
                   tokens, batch_size, steps, torch.as_tensor(ln.copy(), device=dev),
                   None if W0 is None else W0.to(device=dev, dtype=dt))

    def batches(self):
        """Each step's evaluation points ``(idx, weights)``, shapes ``(R, P)``: the distinct tokens of the
        batch weighted by count / B (``P`` the most any run has at that step; the others padded with
        distinct unseen tokens of weight 0), or all ``N`` tokens weighted by ``p`` in full-batch mode."""
        R, N = self.E.shape[:2]
        dev, dt = self.E.device, self.E.dtype
        if self.tokens is None:
            points = torch.arange(N, device=dev).expand(R, N), self.probs.expand(R, N)
            for _ in range(self.steps):
                yield points
            return
        B = self.batch_size
        chunk = max(1, _BATCH_CHUNK_FLOATS // (R * N))
        for first in range(0, self.steps, chunk):
            last = min(self.steps, first + chunk)
            samples = self.tokens[:, first * B:last * B].reshape(R, last - first, B)
            counts = torch.zeros(R, last - first, N, dtype=dt, device=dev)
            counts.scatter_add_(2, samples, torch.ones_like(samples, dtype=dt))
            distinct = (counts > 0).sum(-1).amax(0).tolist()  # per step, the most distinct tokens of a run
            weights, idx = counts.topk(max(distinct), dim=-1)  # by decreasing count: the seen tokens first
            weights /= B
            for s, width in enumerate(distinct):
                yield idx[:, s, :width], weights[:, s, :width]


def _run_rates(name: str, lr, R: int) -> np.ndarray:
    """``lr`` as ``R`` positive finite step sizes (a scalar is broadcast)."""
    rates = check.real_array(name, lr)
    rates = np.broadcast_to(rates, (R,)) if rates.ndim <= 1 and rates.size in (1, R) else None
    if rates is None or rates.shape != (R,) or not np.all(np.isfinite(rates)) or rates.min() <= 0:
        raise ValueError(f"{name} must be a positive finite number or R={R} of them")
    return rates.copy()


def _step_sizes(name: str, values) -> list[float]:
    """``values`` as a non-empty list of positive finite step sizes (a scalar is one of them)."""
    rates = np.atleast_1d(check.positive_array(name, values))
    if rates.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of step sizes, got shape {rates.shape}")
    return rates.tolist()


def _flags(name: str, values) -> list[bool]:
    """``values`` as a non-empty list of bools (a single bool is one of them)."""
    flags = np.atleast_1d(np.asarray(values, dtype=object if values is None else None))
    if flags.ndim != 1 or flags.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence of bools, got shape {flags.shape}")
    if flags.dtype != bool:
        raise TypeError(f"{name} must be a bool or a sequence of bools, got {check._short(values)}")
    return flags.tolist()


def _check_cost(problem: _Problem, every: int, keep_history: bool, names: str) -> None:
    """Refuse, before any work, a run whose recorded history or whose work is beyond the bounds of
    :func:`assocmem._validate.budget`: ``steps x (fixed step cost + 6 R P d (d + M))`` operations (``P`` the
    points of a step: ``min(N, B)``, or ``N`` in full-batch mode) and ``8 (R records (2 + d^2 if kept))``
    bytes, with ``records = steps / eval_every + 2``."""
    R, N, d = problem.E.shape
    M = problem.U.shape[1]
    points = N if problem.tokens is None else min(N, problem.batch_size)
    records = problem.steps // every + 2
    check.budget(names, nbytes=8.0 * R * records * (2 + (d * d if keep_history else 0)),
                 work=problem.steps * (check.STEP_WORK + 6.0 * R * points * d * (d + M)),
                 formula=f"{problem.steps} steps x ({check.STEP_WORK:.0e} + 6 R P d (d + M)) operations, "
                         f"{records} records of R={R} runs")


def _schedule_factor(schedule: str, t: int, steps: int) -> float:
    u = t / steps
    return {"constant": 1.0, "linear": 1.0 - u, "cosine": 0.5 * (1.0 + math.cos(math.pi * u))}[schedule]


def _one_hot(labels: torch.Tensor, M: int, dtype) -> torch.Tensor:
    return torch.nn.functional.one_hot(labels, M).to(dtype)


def _runs_index(idx: torch.Tensor) -> torch.Tensor:
    return torch.arange(idx.shape[0], device=idx.device)[:, None]


def _batch_gather(table: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """``table[r, idx[r, p]]`` for a table ``(R, N, ...)`` and indices ``(R, P)``."""
    return table[_runs_index(idx), idx]


def _softmax_residual(logits: torch.Tensor, target: torch.Tensor, weights: torch.Tensor):
    """Weighted ``softmax - onehot`` (the gradient of the loss in the logits) and the weighted loss."""
    logp = torch.log_softmax(logits, dim=-1)
    g = (logp.exp() - target) * weights[..., None]
    loss = -(logp * target).sum(-1)
    return g, (loss * weights).sum(-1)


def _hidden(W, e, relu: bool) -> torch.Tensor:
    """``h = W e`` (or ``ReLU(e)``) for points ``e`` (R, P, d)."""
    return torch.relu(e) if relu else e @ W.transpose(1, 2)


def _normalise(h: torch.Tensor, layer_norm: torch.Tensor):
    """The layer-norm factor ``r`` (1 where a run has no layer norm) and ``z = r h``."""
    r = torch.where(layer_norm[:, None], ((h * h).sum(-1) + LAYER_NORM_EPS).rsqrt(),
                    torch.ones((), dtype=h.dtype, device=h.device))
    return r, h * r[..., None]


@dataclass
class _Backprop:
    """One batch's forward and backward pass: points ``e``, hidden ``h``, normalised ``z``, logit residual
    ``g``, the gradient ``dh`` in ``h`` and the weighted loss."""

    e: torch.Tensor
    h: torch.Tensor
    z: torch.Tensor
    g: torch.Tensor
    dh: torch.Tensor
    loss: torch.Tensor


def _backprop(W, E, U, labels, idx, weights, layer_norm, relu: bool, h=None) -> _Backprop:
    e = _batch_gather(E, idx)
    if h is None:
        h = _hidden(W, e, relu)
    r, z = _normalise(h, layer_norm)
    target = _one_hot(labels[idx], U.shape[1], z.dtype)
    g, loss = _softmax_residual(z @ U.transpose(1, 2), target, weights)
    dz = g @ U
    proj = torch.where(layer_norm[:, None], r * r * (h * dz).sum(-1), torch.zeros_like(r))
    dh = r[..., None] * (dz - proj[..., None] * h)
    return _Backprop(e, h, z, g, dh, loss)


def _block_rows(R: int, d: int) -> int:
    """Rows of ``W`` per block of the one-pass update: all of them when the runs' ``W`` is small,
    else about ``BLOCK_FLOATS`` entries a block."""
    if R * d * d <= WHOLE_W_FLOATS:
        return d
    return max(1, min(d, BLOCK_FLOATS // (R * d)))


class _DenseModel:
    """Parameters stored densely; forward and backward written by hand (:func:`_backprop`)."""

    def __init__(self, problem: _Problem, model: str, optimizer: _Optimizer):
        self.p = problem
        R, N, d = problem.E.shape
        self.relu, self.names = model == "relu", PARAMETERS[model]
        self.E = problem.E.clone(memory_format=torch.contiguous_format)
        self.U = problem.U.clone(memory_format=torch.contiguous_format)
        self.W = None
        if not self.relu:
            self.W = (torch.zeros(R, d, d, dtype=problem.E.dtype, device=problem.E.device)
                      if problem.W0 is None else problem.W0.clone(memory_format=torch.contiguous_format))
        self.opt = optimizer
        self.opt.attach([getattr(self, name) for name in self.names])
        self.rows = _block_rows(R, d)
        self.ahead = None  # (idx, h): the forward pass of the next batch, computed in the last pass over W
        self.pending = (_PendingUpdates(self.W) if optimizer.name == "sgd" and self.W is not None
                        and d * d >= LOW_RANK_MIN_FLOATS else None)

    def step(self, batch, lr: dict, following) -> None:
        idx, weights = batch
        h = self.ahead[1] if self.ahead is not None and self.ahead[0] is idx else None
        self.ahead = None
        if h is None and self.pending is not None:
            h = self.pending.times_WT(_batch_gather(self.E, idx))
        bp = _backprop(self.W, self.E, self.U, self.p.labels, idx, weights, self.p.layer_norm, self.relu, h)
        if self.opt.name not in ("sgd", "sign"):
            grads = {}
            if "W" in self.names:
                grads["W"] = bp.dh.transpose(1, 2) @ bp.e
            if "E" in self.names:
                rows = bp.dh * (bp.e > 0) if self.relu else bp.dh @ self.W
                grads["E"] = torch.zeros_like(self.E).index_put_((_runs_index(idx), idx), rows, accumulate=True)
            if "U" in self.names:
                grads["U"] = bp.g.transpose(1, 2) @ bp.z
            self.opt.update([getattr(self, n) for n in self.names], [grads[n] for n in self.names],
                            [lr[n] for n in self.names])
            return
        if "U" in self.names:
            self.opt.apply(self.U, bp.g.transpose(1, 2) @ bp.z, lr["U"])
        if "E" in self.names:  # the batch's tokens are distinct: update their rows only (the others' step is 0)
            rows = bp.e.clone()
            self.opt.apply(rows, bp.dh * (bp.e > 0) if self.relu else self._times_W(bp.dh), lr["E"])
            self.E[_runs_index(idx), idx] = rows
        if self.W is not None:
            e_next = None if following is None else _batch_gather(self.E, following[0])
            h_next = self._update_W(bp, lr["W"], e_next)
            self.ahead = None if following is None else (following[0], h_next)

    def _update_W(self, bp: _Backprop, lr: torch.Tensor, e_next):
        r"""Update ``W`` from the batch's points ``bp.e`` (before ``E`` moved) and return the next batch's
        :math:`h = W e` (``e_next`` from the updated ``E``; ``None`` after the last step).

        SGD is one ``baddbmm_`` (the BLAS reads and writes ``W`` once), then the product for ``h``; for a
        large ``W`` the update is held as low-rank factors instead (:class:`_PendingUpdates`). Sign
        descent needs the gradient itself: one pass over ``W`` in blocks of rows, each block's gradient,
        update and share of ``h`` computed while it is in cache, so ``W`` is again read and written once."""
        W, dh, e = self.W, bp.dh, bp.e
        R, d = W.shape[:2]
        if self.opt.name == "sgd" and self.pending is not None:
            self.pending.add(dh.transpose(1, 2) * -lr.view(R, 1, 1), e)
            return None if e_next is None else self.pending.times_WT(e_next)
        if self.opt.name == "sgd":
            W.baddbmm_(dh.transpose(1, 2) * -lr.view(R, 1, 1), e)
            return None if e_next is None else torch.bmm(e_next, W.transpose(1, 2))
        dh_t = dh.transpose(1, 2)
        inv_rate = (-1.0 / lr).view(R, 1, 1)
        h_next = None if e_next is None else torch.empty(R, e_next.shape[1], d, dtype=W.dtype, device=W.device)
        for start in range(0, d, self.rows):
            rows = slice(start, start + self.rows)
            block = W[:, rows]
            grad = torch.bmm(dh_t[:, rows], e)
            block.addcdiv_(grad, grad.abs().add_(self.opt.eps).mul_(inv_rate))
            if h_next is not None:
                h_next[:, :, rows] = torch.bmm(e_next, block.transpose(1, 2))
        return h_next

    def _times_W(self, x: torch.Tensor) -> torch.Tensor:
        """``x W`` for rows ``x`` (R, P, d), with the held updates."""
        return torch.bmm(x, self.W) if self.pending is None else self.pending.times_W(x)

    def scores(self) -> torch.Tensor:
        if self.pending is not None:
            self.pending.fold()
        h = _hidden(self.W, self.E, self.relu)
        return (_normalise(h, self.p.layer_norm)[1] @ self.U.transpose(1, 2)).transpose(1, 2)

    def weights(self) -> torch.Tensor:
        if self.pending is not None:
            self.pending.fold()
        return self.W


class _PendingUpdates:
    r"""Plain SGD's updates of a dense ``W`` held as factors: :math:`W = W_d + A B` with ``A`` (R, d, k) the
    columns :math:`-\gamma\, \partial_h^\top` and ``B`` (R, k, d) the points :math:`e` of the steps since the
    last fold. A step's update has rank ``P`` (its distinct tokens), so products with ``W`` cost one pass over
    :math:`W_d` plus :math:`O(P k d)`, and ``W_d`` is written once every ``LOW_RANK_COLUMNS / P`` steps, by one
    product of rank ``k`` (an efficient GEMM) instead of one rank-``P`` ``baddbmm_`` a step. Exact: the same
    sums, in another order."""

    def __init__(self, W: torch.Tensor):
        R, d, _ = W.shape
        self.W = W
        self.A = W.new_empty(R, d, LOW_RANK_COLUMNS)
        self.B = W.new_empty(R, LOW_RANK_COLUMNS, d)
        self.k = 0

    def add(self, left: torch.Tensor, right: torch.Tensor) -> None:
        """Hold the update ``left @ right`` (``(R, d, P)`` times ``(R, P, d)``)."""
        P = left.shape[2]
        if self.k + P > LOW_RANK_COLUMNS:
            self.fold()
        if 4 * P > LOW_RANK_COLUMNS:  # a large batch's update: held for fewer than four steps, it does not pay
            self.W.baddbmm_(left, right)
            return
        self.A[:, :, self.k:self.k + P] = left
        self.B[:, self.k:self.k + P] = right
        self.k += P

    def fold(self) -> None:
        """Add the held updates to ``W`` (in place) and empty the buffer."""
        if self.k:
            self.W.baddbmm_(self.A[:, :, :self.k], self.B[:, :self.k])
            self.k = 0

    def times_WT(self, x: torch.Tensor) -> torch.Tensor:
        """``x W^T`` for points ``x`` (R, P, d): the hidden vectors ``h = W e``."""
        out = torch.bmm(x, self.W.transpose(1, 2))
        if self.k:
            out.baddbmm_(torch.bmm(x, self.B[:, :self.k].transpose(1, 2)), self.A[:, :, :self.k].transpose(1, 2))
        return out

    def times_W(self, x: torch.Tensor) -> torch.Tensor:
        r"""``x W`` for rows ``x`` (R, P, d): the gradient in ``E``, :math:`W^\top \partial_h`."""
        out = torch.bmm(x, self.W)
        if self.k:
            out.baddbmm_(torch.bmm(x, self.A[:, :, :self.k]), self.B[:, :self.k])
        return out


class _FactorisedModel:
    r"""``W = W0 + K^T A E`` with ``K = [U; E W0^T]`` (or ``U`` when ``W0 = 0``); carries
    ``C = A G_E + [0; I]``, the coefficients of every ``h_x = W e_x`` in the rows of ``K``."""

    def __init__(self, problem: _Problem, normalise: bool, track_W: bool):
        self.p = problem
        self.track_W = track_W  # without it A (hence W) is not kept: the scores need only C
        self.E, self.U = problem.E, problem.U
        R, N, _ = self.E.shape
        self.K = self.U if problem.W0 is None else torch.cat([self.U, self.E @ problem.W0.transpose(1, 2)], 1)
        k, M = self.K.shape[1], self.U.shape[1]
        self.gram_E = self.E @ self.E.transpose(1, 2)
        self.gram_UK = self.U @ self.K.transpose(1, 2)
        self.gram_K = self.K @ self.K.transpose(1, 2)
        self.A = torch.zeros(R, k, N, dtype=self.E.dtype, device=self.E.device) if track_W else None
        self.C = torch.zeros(R, k, N, dtype=self.E.dtype, device=self.E.device)
        if problem.W0 is not None:
            self.C[:, M:] = torch.eye(N, dtype=self.E.dtype, device=self.E.device)
        self.normalise = normalise

    def _forward(self, C: torch.Tensor):
        """Raw scores ``U h``, layer-norm factor and logits for coefficient columns ``C`` (R, k, P)."""
        raw = self.gram_UK @ C
        if not self.p.layer_norm.any():
            return raw, torch.ones_like(raw[:, 0]), raw
        norm2 = (C * (self.gram_K @ C)).sum(1)
        r = torch.where(self.p.layer_norm[:, None], (norm2 + LAYER_NORM_EPS).rsqrt(),
                        torch.ones((), dtype=raw.dtype, device=raw.device))
        return raw, r, raw * r[:, None, :]

    def step(self, batch, lr: dict, following=None) -> None:
        """One step on the points ``idx`` (R, P): every product is ``k x P`` or ``P x N``, never ``d``."""
        idx, weights = batch
        lr = lr["W"]
        M = self.U.shape[1]
        cols = idx[:, None, :].expand(-1, self.C.shape[1], -1)
        C = self.C.gather(2, cols)
        raw, r, logits = self._forward(C)
        g = torch.softmax(logits, dim=1).scatter_add_(1, self.p.labels[idx][:, None, :],
                                                      -torch.ones_like(logits[:, :1])).mul_(weights[:, None, :])
        if self.p.layer_norm.any():
            proj = torch.where(self.p.layer_norm[:, None], r * r * (raw * g).sum(1), torch.zeros_like(r))
            delta = C * -(proj * r)[:, None, :]
            delta[:, :M] += g * r[:, None, :]
        else:
            delta = torch.zeros_like(C)
            delta[:, :M] = g
        gram_rows = _batch_gather(self.gram_E, idx)
        scale = lr
        if self.normalise:
            pair = gram_rows.gather(2, idx[:, None, :].expand(-1, idx.shape[1], -1))
            norm2 = ((delta.transpose(1, 2) @ self.gram_K @ delta) * pair).sum((1, 2))
            scale = lr / (norm2.clamp_min(0).sqrt() + _NORM_EPS)
        step = delta.mul_(-scale[:, None, None])
        if self.track_W:
            self.A.scatter_add_(2, cols, step)
        self.C.baddbmm_(step, gram_rows)

    def scores(self) -> torch.Tensor:
        return self._forward(self.C)[2]

    def weights(self) -> torch.Tensor:
        W = self.K.transpose(1, 2) @ self.A @ self.E
        return W if self.p.W0 is None else W + self.p.W0


def _evaluate(scores: torch.Tensor, p: _Problem, ties: str):
    """Population error and loss of score tables ``(R, M, N)``."""
    logp = torch.log_softmax(scores, dim=1).gather(1, p.labels.expand(scores.shape[0], -1)[:, None, :])[:, 0]
    return scores_error(scores, p.labels, p.probs, ties=ties), -(logp @ p.probs)


class _Optimizer:
    """Per-run step sizes applied to parameters: SGD and sign descent (no state, :meth:`apply`), normalised
    SGD and Adam (:meth:`update`, with Adam's moments)."""

    def __init__(self, name: str, betas, eps: float):
        self.name, self.betas, self.eps = name, betas, eps
        self.t = 0

    def attach(self, params) -> None:
        if self.name == "adam":
            self.m = [torch.zeros_like(p) for p in params]
            self.v = [torch.zeros_like(p) for p in params]

    def apply(self, param: torch.Tensor, grad: torch.Tensor, lr: torch.Tensor) -> None:
        """In place, SGD ``param -= lr * grad`` or sign descent ``param -= lr * grad / (|grad| + eps)``."""
        rate = lr.view(-1, *([1] * (param.ndim - 1)))
        if self.name == "sgd":
            param.sub_(rate * grad)
        else:
            param.addcdiv_(grad, grad.abs().add_(self.eps).div_(-rate))

    def update(self, params, grads, lrs) -> None:
        self.t += 1
        if self.name == "adam" and params[0][0].numel() >= FUSED_ADAM_MIN_SIZE and hasattr(torch, "_fused_adam_"):
            self._fused_adam(params, grads, lrs)
            return
        for i, (param, grad, lr) in enumerate(zip(params, grads, lrs, strict=True)):
            rate = lr.view(-1, *([1] * (param.ndim - 1)))
            if self.name == "nsgd":
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

    def _fused_adam(self, params, grads, lrs) -> None:
        """The same update with torch's fused Adam kernel (one pass over each tensor), one call per run
        and parameter because the kernel takes one step size; worth it when a run's memory is large."""
        step = torch.full((), float(self.t), device=params[0].device)
        b1, b2 = self.betas
        for i, (param, grad, lr) in enumerate(zip(params, grads, lrs, strict=True)):
            for r, rate in enumerate(lr.tolist()):
                torch._fused_adam_([param[r]], [grad[r]], [self.m[i][r]], [self.v[i][r]], [], [step], lr=rate,
                                   beta1=b1, beta2=b2, weight_decay=0.0, eps=self.eps, amsgrad=False,
                                   maximize=False)
