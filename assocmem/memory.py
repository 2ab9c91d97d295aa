r"""Outer-product associative memories: embeddings, weighting schemes, scores and the exact error.

The memory stores the associations ``x -> f*(x)`` of ``N`` input tokens into ``M`` classes as

.. math:: W = \sum_x q(x)\, u_{f^*(x)} e_x^\top \in \mathbb{R}^{d \times d},

predicts :math:`f_W(x) = \arg\max_y u_y^\top W e_x` and is judged by its exact population error
:math:`\mathcal{E}(q) = \sum_x p(x)\, \mathbf{1}[f_W(x) \neq f^*(x)]`. Chapter 2 of the book discusses
every function here; chapter 3 builds ``q`` from sample counts.

Computation never forms ``W``. With the class sums :math:`V_y = \sum_{x: f^*(x) = y} q(x) e_x`
(an ``M x d`` matrix), the scores are

.. math:: u_y^\top W e_r = \sum_{y'} (u_y^\top u_{y'})\,(V_{y'}^\top e_r),

two thin products costing :math:`O(N d M)` per trial instead of :math:`O(N d^2)`.

Shapes: embeddings are ``(trials, n, d)``; ``q`` is ``(N,)``, ``(trials, N)`` or
``(trials, len(d_grid), N)`` (a leading axis of size 1 broadcasts over trials, a middle axis of size
1 over the grid of ``d``). Tokens are 0-based (index ``i`` is the book's token ``x = i + 1``).

Nested dimensions: one draw at the largest ``d`` serves every smaller ``d'`` through its leading
``d'`` coordinates, as in the paper. For Gaussian embeddings the truncated vectors are implicitly
rescaled by :math:`\sqrt{d/d'}` (variance ``I/d'``); this multiplies every score by the same positive
factor, so the argmax, hence the error, is computed without it. For sphere embeddings the truncated
vectors are renormalised to unit length.

Ties (:data:`TIES`): with ``ties="error"`` (the default, the book's definition) a token counts as
recalled only when its true class scores *strictly* above every other class, so a tie (for instance
all scores 0 when ``q = 0``) counts as an error. With ``ties="first"`` the prediction is
``argmax`` as the papers' code computes it, the first class among the largest scores; a tie is then
right when the true class is the smallest tied index. The two differ only on exact ties, which
random embeddings make impossible unless nothing is stored.

Example
-------
>>> import numpy as np
>>> from assocmem import memory, zipf
>>> N, M, alpha = 1000, 5, 2.0
>>> p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
>>> d_grid = np.unique(np.geomspace(10, 1000, 20).astype(int))
>>> E, U = memory.memory_embeddings(N, M, int(d_grid[-1]), seed=0, trials=10)
>>> err = memory.population_error(memory.power_weights(p, 1.0), p, labels, E, U, d_grid)
>>> err.shape  # (trials, len(d_grid)), float64
torch.Size([10, 20])
>>> q_thr = memory.scheme_weights("threshold", p, d_grid)     # 1[x <= d/8], shape (1, 20, N)
>>> err_thr = memory.population_error(q_thr, p, labels, E, U, d_grid)

For grids too large to hold every trial's embeddings at once, :func:`error_scan` draws them in
chunks of trials and returns the same numbers.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import torch

from . import _validate as check
from . import zipf
from .sweep import experiment

__all__ = [
    "KINDS",
    "SCHEMES",
    "TIES",
    "COUNT_TIES",
    "embeddings",
    "memory_embeddings",
    "uniform_weights",
    "power_weights",
    "threshold_weights",
    "seen_weights",
    "top_seen_weights",
    "scheme_weights",
    "scores",
    "signal_and_interference",
    "recall",
    "population_error",
    "population_errors",
    "error_scan",
    "error_scans",
    "error_vs_d",
]

KINDS = ("gaussian", "sphere")
SCHEMES = ("uniform", "power", "threshold")
TIES = ("error", "first")          # score ties: counted as errors, or argmax's first class (the papers' code)
COUNT_TIES = ("random", "index")   # count ties in top_seen_weights: seeded random order, or token index
_TIE_STREAM = 2718                 # the random tie order of top_seen_weights: its own stream of the seed


# --------------------------------------------------------------------------- embeddings

def embeddings(n: int, d: int, seed: int, *, trials: int = 1, first_trial: int = 0, stream: int = 0,
               kind: str = "gaussian", dtype: torch.dtype = torch.float32,
               device="cpu") -> torch.Tensor:
    r"""Random embeddings of ``n`` items in :math:`\mathbb{R}^d`, shape ``(trials, n, d)``.

    ``kind="gaussian"``: i.i.d. :math:`\mathcal{N}(0, I/d)`; ``kind="sphere"``: uniform on the unit
    sphere (a Gaussian draw normalised). Trial ``t`` is drawn from its own generator seeded by
    ``(seed, stream, t)``, so a chunk of trials ``first_trial .. first_trial + trials - 1`` is the
    same as those rows of one big draw, in any process and on any device, however many threads draw
    the trials concurrently (up to ``torch.get_num_threads()``). The draw is made on the
    CPU in float32 and then moved, so ``dtype`` and ``device`` never change the numbers.
    ``stream`` separates independent families (input vs output embeddings). The tensor is stored
    coordinate-major (``out.transpose(1, 2)`` is contiguous) so that nested blocks are contiguous.

    Parameters
    ----------
    n : int
        Number of items embedded.
    d : int
        Dimension.
    seed : int
        Seed; trial ``t`` uses a generator seeded by ``(seed, stream, t)``.
    trials : int
        Number of trials drawn.
    first_trial : int
        Index of the first trial (a chunk of a larger draw).
    stream : int
        Separates independent families of embeddings drawn from one seed (inputs 0, outputs 1).
    kind : {"gaussian", "sphere"}
        Gaussian ``N(0, I/d)`` or uniform on the unit sphere.
    dtype : torch.dtype
        dtype of the result (the draw is float32 on the CPU, then converted).
    device : str or torch.device
        Device of the result.
    """
    n = check.positive_int("n", n)
    d = check.positive_int("d", d)
    seed = check.seed("seed", seed)
    trials = check.positive_int("trials", trials)
    first_trial = check.positive_int("first_trial", first_trial, minimum=0)
    stream = check.positive_int("stream", stream, minimum=0)
    kind = check.choice("kind", kind, KINDS)
    _check_float_dtype(dtype)
    check.device("device", device)
    check.budget("n, d, trials", nbytes=2.0 * trials * n * d * torch.finfo(dtype).bits / 8,
                 formula="the draw and its storage, trials x n x d")
    # stored coordinate-major (a transposed view): the leading-d blocks that nested grids use are
    # then contiguous in memory, which makes the products of population_error about twice as fast
    # (the float32 draw is converted to dtype in the same copy, exactly)
    storage = torch.empty(trials, d, n, dtype=dtype)

    def draw(i: int) -> None:
        state = np.random.SeedSequence([seed, stream, first_trial + i]).generate_state(1, dtype=np.uint64)[0]
        storage[i] = torch.randn(n, d, generator=torch.Generator().manual_seed(int(state))).T

    # each trial has its own generator and its own slot, so trials are drawn on torch's threads at once
    # (one randn is single-threaded) with the same numbers as one after the other
    with ThreadPoolExecutor(max_workers=min(trials, torch.get_num_threads())) as pool:
        list(pool.map(draw, range(trials)))
    out = storage.transpose(1, 2).to(device=device)
    if kind == "sphere":
        return out.div_(out.norm(dim=-1, keepdim=True))
    return out.div_(np.sqrt(d))


def memory_embeddings(N: int, M: int, d: int, seed: int, *, trials: int = 1, first_trial: int = 0,
                      kind: str = "gaussian", dtype: torch.dtype = torch.float32,
                      device="cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Input embeddings ``E`` (``(trials, N, d)``, stream 0) and output embeddings ``U``
    (``(trials, M, d)``, stream 1), independent, from one ``seed``.

    Parameters
    ----------
    N : int
        Number of input tokens.
    M : int
        Number of output classes.
    d : int
        Dimension.
    seed : int
        Seed of both draws.
    trials : int
        Number of trials drawn.
    first_trial : int
        Index of the first trial (a chunk of a larger draw).
    kind : {"gaussian", "sphere"}
        Gaussian ``N(0, I/d)`` or uniform on the unit sphere.
    dtype : torch.dtype
        dtype of the result (the draw is float32 on the CPU, then converted).
    device : str or torch.device
        Device of the result.
    """
    N, M = check.positive_int("N", N), check.positive_int("M", M)
    check.budget("N, M, d, trials", nbytes=16.0 * check.positive_int("trials", trials) * (N + M)
                 * check.positive_int("d", d), formula="two draws of trials x (N + M) x d")
    kwargs = dict(trials=trials, first_trial=first_trial, kind=kind, dtype=dtype, device=device)
    return (embeddings(N, d, seed, stream=0, **kwargs), embeddings(M, d, seed, stream=1, **kwargs))


# --------------------------------------------------------------------------- weighting schemes

def uniform_weights(N: int) -> np.ndarray:
    """Scheme ``q(x) = 1`` for every token: every association stored with the same weight.

    Parameters
    ----------
    N : int
        Number of tokens.
    """
    check.budget("N", nbytes=8.0 * check.positive_int("N", N), formula="a float64 array of N")
    return np.ones(N)


def power_weights(p, rho: float) -> np.ndarray:
    r"""Scheme :math:`q(x) = p(x)^\rho`: ``rho = 1`` is one large-batch gradient step, ``rho = 0`` uniform.

    Parameters
    ----------
    p : array
        Probabilities of the tokens.
    rho : float
        Exponent (``rho >= 0``).
    """
    rho = check.real("rho", rho, low=0.0)
    return _probabilities(p) ** rho


def threshold_weights(N: int, P) -> np.ndarray:
    r"""Scheme :math:`q(x) = \mathbf{1}[x \le P]` (the ``P`` most frequent tokens of a Zipf law).

    ``P`` an integer gives shape ``(N,)``; a sequence of ``G`` integers gives ``(G, N)``, one row per
    threshold. ``P = 0`` stores nothing.

    Parameters
    ----------
    N : int
        Number of tokens.
    P : int or sequence of int
        Number(s) of most frequent tokens stored (``0 <= P <= N``).
    """
    N = check.positive_int("N", N)
    P_arr = check.int_array("P", P, minimum=0)
    check.budget("N, P", nbytes=8.0 * N * P_arr.size, formula="float64 weights of N per P")
    rows = (np.arange(N)[None, :] < P_arr[:, None]).astype(np.float64)
    return rows if np.ndim(P) else rows[0]


def seen_weights(counts) -> np.ndarray:
    r"""Scheme :math:`q(x) = \mathbf{1}[n_x > 0]`: every token seen at least once (shape of ``counts``).

    Parameters
    ----------
    counts : array
        Token counts ``n_x``, shape ``(..., N)``.
    """
    return (_counts(counts) > 0).astype(np.float64)


def top_seen_weights(counts, P, *, count_ties: str = "random", seed: int = 0) -> np.ndarray:
    r"""Weight 1 on the ``P`` most frequent *seen* tokens, 0 elsewhere.

    ``counts`` has shape ``(..., N)``. ``P`` an integer gives the shape of ``counts``; a sequence of
    ``G`` integers inserts an axis: ``(..., G, N)`` (with counts ``(trials, N)`` this is the
    ``(trials, len(d_grid), N)`` layout :func:`population_error` accepts).

    Ties among equal counts (:data:`COUNT_TIES`): ``count_ties="random"`` (the default) orders tied
    tokens by a random priority drawn once per row of ``counts`` (a stream of ``seed`` of its own,
    independent of the data drawn with the same seed), the same for every ``P``, so the kept sets are
    nested in ``P`` and use nothing the counts do not contain. ``count_ties="index"`` prefers the
    smaller token index; for a Zipf law that is the true frequency rank, which the counts do not hold,
    and it lowers the error (chapter 3 measures by how much).

    Parameters
    ----------
    counts : array
        Token counts ``n_x``, shape ``(..., N)``.
    P : int or sequence of int
        Number(s) of most frequent seen tokens kept.
    count_ties : {"random", "index"}
        Order of tokens with equal counts: a seeded random priority, or by index.
    seed : int
        Seed of the random priority.
    """
    counts = _counts(counts)
    P_arr = check.int_array("P", P, minimum=0)
    count_ties = check.choice("count_ties", count_ties, COUNT_TIES)
    if count_ties == "random":
        priority = np.random.default_rng([check.seed("seed", seed), _TIE_STREAM]).random(counts.shape)
        order = np.lexsort((priority, -counts), axis=-1)   # by decreasing count, then by priority
    else:
        order = np.argsort(-counts, axis=-1, kind="stable")
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(counts.shape[-1]), axis=-1)
    keep = (rank[..., None, :] < P_arr[:, None]) & (counts[..., None, :] > 0)
    out = keep.astype(np.float64)
    return out if np.ndim(P) else out[..., 0, :]


def scheme_weights(scheme: str, p, d_grid=None, *, rho: float = 1.0, fraction: float = 1 / 8) -> np.ndarray:
    r"""The weights of a named scheme of the chapter, ready for :func:`population_error`.

    ``"uniform"``: :math:`q = 1`; ``"power"``: :math:`q = p^\rho`; both shape ``(N,)``.
    ``"threshold"``: :math:`q = \mathbf{1}[x \le \lfloor \text{fraction} \cdot d \rfloor]` for each ``d``
    of ``d_grid``, shape ``(1, len(d_grid), N)`` (the paper's :math:`P = d/8`).

    Parameters
    ----------
    scheme : {"uniform", "power", "threshold"}
        The named scheme.
    p : array, shape ``(N,)``
        Token probabilities :math:`p(x)`.
    d_grid : sequence of int, optional
        Dimensions; required for ``"threshold"``.
    rho : float
        Power :math:`\rho` of ``"power"`` (:func:`power_weights`).
    fraction : float
        Stored tokens per dimension of ``"threshold"``, :math:`\ge 0`.
    """
    scheme = check.choice("scheme", scheme, SCHEMES)
    p = _probabilities(p)
    if scheme == "uniform":
        return uniform_weights(p.size)
    if scheme == "power":
        return power_weights(p, rho)
    fraction = check.real("fraction", fraction, low=0.0)
    if d_grid is None:
        raise ValueError("d_grid is required for the threshold scheme (P = fraction * d)")
    d_grid = check.int_array("d_grid", d_grid)
    # P = floor(fraction d), at most N (storing more than N tokens is storing all; a huge fraction must
    # not overflow int64 into a negative P)
    return threshold_weights(p.size, np.minimum(np.floor(fraction * d_grid), p.size).astype(np.int64))[None]


# --------------------------------------------------------------------------- scores and recall

def scores(q, labels, E: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    r"""All scores :math:`s_y(r) = u_y^\top W e_r`, shape ``(trials, M, N)``, without forming ``W``.

    ``q`` is ``(N,)`` or ``(trials, N)``. Uses :math:`s = (U U^\top)\,(V E^\top)` with the class sums
    :math:`V_y = \sum_{x: f^*(x)=y} q(x) e_x`.

    Parameters
    ----------
    q : array or tensor
        Weights ``q(x)``, shape ``(N,)`` or ``(trials, N)``.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    E, U : Tensor
        Input ``(trials, N, d)`` and output ``(trials, M, d)`` embeddings (same dtype and device).
    """
    E, U = _check_embeddings(E, U)
    labels = _labels(labels, E.shape[1], U.shape[1], E.device)
    q = _weights(q, E, n_grid=1)[:, 0]
    class_sums = _class_sums(q, labels, U.shape[1], E)
    return _finite(U @ U.transpose(1, 2) @ (class_sums @ E.transpose(1, 2)))


def signal_and_interference(q, labels, E: torch.Tensor, U: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Split each score into the token's own association and the interference of all others.

    .. math::
        u_y^\top W e_r = \underbrace{q(r)\,\|e_r\|^2\, u_y^\top u_{f^*(r)}}_{\text{signal}}
        + \underbrace{\sum_{x \neq r} q(x)\,(e_x^\top e_r)\,(u_y^\top u_{f^*(x)})}_{\text{interference}}.

    Both terms are computed independently (the interference from the ``N x N`` Gram matrix with its
    diagonal removed, so this is meant for the chapter's small ``N``); their sum equals
    :func:`scores`. Returns two tensors of shape ``(trials, M, N)``.

    Parameters
    ----------
    q : array or tensor
        Weights ``q(x)``, shape ``(N,)`` or ``(trials, N)``.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    E, U : Tensor
        Input ``(trials, N, d)`` and output ``(trials, M, d)`` embeddings (same dtype and device).
    """
    E, U = _check_embeddings(E, U)
    N, M = E.shape[1], U.shape[1]
    labels = _labels(labels, N, M, E.device)
    q = _weights(q, E, n_grid=1)[:, 0]
    output_gram = U @ U.transpose(1, 2)                                   # (T, M, M)
    own = output_gram[:, :, labels]                                       # u_y^T u_{f*(r)}, (T, M, N)
    signal = own * (q * (E * E).sum(-1))[:, None, :]
    gram = E @ E.transpose(1, 2)
    gram = gram - torch.diag_embed(torch.diagonal(gram, dim1=1, dim2=2))  # e_x^T e_r, x != r
    interference = own @ (q[:, :, None] * gram)                           # sum over x
    return _finite(signal), _finite(interference)


def recall(q, labels, E: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
    """Predicted classes :math:`f_W(r) = \\arg\\max_y s_y(r)`, shape ``(trials, N)`` (ties go to the
    smallest class index, as ``torch.argmax`` does: the rule of :func:`population_error` with
    ``ties="first"``; its default counts ties as errors).

    Parameters
    ----------
    q : array or tensor
        Weights ``q(x)``, shape ``(N,)`` or ``(trials, N)``.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    E, U : Tensor
        Input ``(trials, N, d)`` and output ``(trials, M, d)`` embeddings (same dtype and device).
    """
    return scores(q, labels, E, U).argmax(dim=1)


# --------------------------------------------------------------------------- the exact error

def population_error(q, p, labels, E: torch.Tensor, U: torch.Tensor, d_grid=None, *,
                     kind: str = "gaussian", ties: str = "error") -> torch.Tensor:
    r"""Exact population error :math:`\mathcal{E} = \sum_x p(x)\,\mathbf{1}[f_W(x) \neq f^*(x)]`
    for every trial and every ``d`` of a nested grid.

    Parameters
    ----------
    q : array or tensor
        Weights, shape ``(N,)``, ``(trials, N)`` or ``(trials, len(d_grid), N)``; size-1 leading axes
        broadcast (e.g. ``(1, len(d_grid), N)``: one threshold per ``d``, the same for all trials).
    p : array
        Probabilities of the ``N`` tokens (non-negative; the error is weighted by them as given).
    labels : int array
        The classes :math:`f^*(x)` in ``0..M-1``, length ``N``.
    E, U : Tensor
        Input ``(trials, N, D)`` and output ``(trials, M, D)`` embeddings drawn at the largest ``D``
        (same dtype and device; float64 for exact arithmetic).
    d_grid : int array, optional
        Increasing dimensions ``1 <= d <= D`` evaluated with the leading ``d`` coordinates
        (default ``[D]``).
    kind : {"gaussian", "sphere"}
        How truncated embeddings are brought back to the law at ``d``: Gaussian rescaling (no effect
        on the argmax) or renormalisation to the unit sphere.
    ties : {"error", "first"}
        A tie between the true class and another: an error (default), or decided as ``argmax`` does,
        for the first (smallest) class index among the largest scores (the papers' code).

    Returns
    -------
    Tensor
        float64, shape ``(trials, len(d_grid))``, on the device of ``E``.

    Notes
    -----
    Cost :math:`O(N M d)` per trial and grid point; when ``q`` does not depend on ``d`` and
    ``kind="gaussian"`` the products are accumulated block by block over the coordinates, so the
    whole grid costs :math:`O(N M D)`. Nothing of size ``d x d`` or ``N x d`` is allocated besides
    the embeddings themselves; use :func:`error_scan` to bound memory over many trials.
    """
    return _population_errors([q], ["q"], p, labels, E, U, d_grid, kind=kind, ties=ties)[0]


def population_errors(qs, p, labels, E: torch.Tensor, U: torch.Tensor, d_grid=None, *,
                      kind: str = "gaussian", ties: str = "error") -> list[torch.Tensor]:
    r""":func:`population_error` for several weightings ``qs`` (a list, each of the shapes
    :func:`population_error` accepts) on the same embeddings, sharing the passes over them.

    Every weight vector that a grid point reads is accumulated block by block over the coordinates:
    the block :math:`[d_{j-1}, d_j)` is read once and multiplied against all vectors still needed —
    the one of each ``d``-dependent weighting for every :math:`d \ge d_j`, and the single vector of each
    ``d``-independent one. A ``d``-dependent vector is read at one ``d`` only, so the output Gram
    matrix of that ``d`` is folded into its rows, :math:`\sum_{y'} (u_y^\top u_{y'}) V_{y'}`, and its
    products with the :math:`e_r` are the class scores themselves. Returns one float64 tensor of shape
    ``(trials, len(d_grid))`` per weighting.

    Parameters
    ----------
    qs : list
        Weightings, each of a shape :func:`population_error` accepts.
    p : array
        Probabilities of the ``N`` tokens.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    E, U : Tensor
        Input ``(trials, N, D)`` and output ``(trials, M, D)`` embeddings drawn at the largest ``D``.
    d_grid : int array, optional
        Increasing dimensions ``1 <= d <= D`` (default ``[D]``).
    kind : {"gaussian", "sphere"}
        How truncated embeddings are brought back to the law at ``d`` (:func:`population_error`).
    ties : {"error", "first"}
        Rule for a tie between the true class and another.
    """
    qs = _weight_list(qs)
    return _population_errors(qs, [f"qs[{i}]" for i in range(len(qs))], p, labels, E, U, d_grid,
                              kind=kind, ties=ties)


def _population_errors(qs, names, p, labels, E, U, d_grid, *, kind, ties) -> list[torch.Tensor]:
    """:func:`population_errors`, with ``names[i]`` the caller's name for ``qs[i]`` in error messages."""
    E, U = _check_embeddings(E, U)
    trials, N, D = E.shape
    M = U.shape[1]
    kind = check.choice("kind", kind, KINDS)
    ties = check.choice("ties", ties, TIES)
    d_grid = _d_grid(d_grid, D)
    G = len(d_grid)
    labels = _labels(labels, N, M, E.device)
    p = torch.as_tensor(_probabilities(p, N=N, normalised=False), dtype=torch.float64, device=E.device)
    weights = [_effective_weights(_weights(q, E, n_grid=G, name=name), E, d_grid, kind)
               for q, name in zip(qs, names, strict=True)]
    per_d = [i for i, w in enumerate(weights) if w.shape[1] > 1]
    fixed = [i for i, w in enumerate(weights) if w.shape[1] == 1]
    output_grams = _output_grams(U, d_grid, kind)                                   # (trials, G, M, M)
    # vector order: grid point by grid point the d-dependent vectors, then the d-independent ones, so
    # the vectors still accumulating at block j are a suffix starting at j * len(per_d)
    groups = []
    if per_d:
        by_grid_point = torch.stack([weights[i] for i in per_d], dim=2)          # (trials, G, P, N)
        groups.append(_stored_rows(by_grid_point, labels, E, mixing=output_grams[:, :, None]))
    if fixed:
        identity = torch.eye(M, dtype=E.dtype, device=E.device)
        groups.append(_stored_rows(torch.cat([weights[i] for i in fixed], dim=1), labels, E, mixing=identity))
    K = G * len(per_d) + len(fixed)
    errors = torch.empty(len(qs), trials, G, dtype=torch.float64, device=E.device)
    start = 0
    for j, d in enumerate(d_grid):
        # coordinates [start, d) feed every vector still accumulating: the d-dependent ones of the
        # grid points from j on (a suffix, thanks to the order) and all d-independent ones
        live = j * len(per_d)
        class_sums = torch.cat([rows[:, live * M if per_d and g == 0 else 0:] @ stored[:, :, start:d]
                                for g, (rows, stored) in enumerate(groups)], dim=1)
        block = E[:, :, start:d].transpose(1, 2)
        if j == 0:
            dot_sums = class_sums @ block                       # every vector is live in the first block
        else:
            dot_sums[:, live * M:].baddbmm_(class_sums, block)  # in place
        start = d
        if fixed:   # complete for this d: scored with its output Gram matrix
            class_scores = output_grams[:, j, None] @ dot_sums.view(trials, K, M, N)[:, K - len(fixed):]
            errors[fixed, :, j] = _weighted_misses(class_scores, labels, p, ties).T
    _finite(dot_sums)
    if per_d:       # their rows carry the output Gram matrix of their d: these are class scores already
        class_scores = dot_sums.view(trials, K, M, N)[:, :G * len(per_d)]
        errors[per_d] = _weighted_misses(class_scores, labels, p, ties).view(trials, G, len(per_d)).permute(2, 0, 1)
    return list(errors)


def error_scan(q, p, labels, M: int, d_grid, seed: int, *, trials: int = 100, kind: str = "gaussian",
               dtype: torch.dtype = torch.float32, device="cpu", max_bytes: int = 2**28,
               ties: str = "error") -> torch.Tensor:
    r"""The error curve of :func:`population_error` over ``trials`` fresh embedding draws.

    Embeddings are drawn at ``max(d_grid)`` by :func:`memory_embeddings` in chunks of trials whose
    embeddings take at most ``max_bytes`` (at least one trial per chunk), so peak memory stays
    bounded for any number of trials; the numbers do not depend on the chunking. Returns float64,
    shape ``(trials, len(d_grid))``, on the CPU. :func:`error_scans` does several weightings on the
    same draws.

    Parameters
    ----------
    q : array
        Weights, any shape :func:`population_error` accepts.
    p : array
        Probabilities of the ``N`` tokens.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    M : int
        Number of classes.
    d_grid : int array
        Increasing dimensions; embeddings are drawn at ``max(d_grid)``.
    seed : int
        Seed of the embedding draws.
    trials : int
        Number of embedding draws.
    kind : {"gaussian", "sphere"}
        Gaussian ``N(0, I/d)`` or uniform on the unit sphere.
    dtype : torch.dtype
        dtype of the result (the draw is float32 on the CPU, then converted).
    device : str or torch.device
        Device of the result.
    max_bytes : int
        Bound on the bytes of embeddings held at once (trials are drawn in chunks).
    ties : {"error", "first"}
        Rule for a tie between the true class and another (:func:`population_error`).
    """
    return _error_scans([q], ["q"], p, labels, M, d_grid, seed, trials=trials, kind=kind, dtype=dtype,
                        device=device, max_bytes=max_bytes, ties=ties)[0]


def error_scans(qs, p, labels, M: int, d_grid, seed: int, *, trials: int = 100, kind: str = "gaussian",
                dtype: torch.dtype = torch.float32, device="cpu", max_bytes: int = 2**28,
                ties: str = "error") -> list[torch.Tensor]:
    """:func:`error_scan` for a list of weightings on the same draws (one tensor per weighting).

    Parameters
    ----------
    qs : list
        Weightings, each of a shape :func:`population_error` accepts.
    p : array
        Probabilities of the ``N`` tokens.
    labels : int array
        The classes ``f*(x)`` in ``0..M-1``, length ``N``.
    M : int
        Number of classes.
    d_grid : int array
        Increasing dimensions; embeddings are drawn at ``max(d_grid)``.
    seed : int
        Seed of the embedding draws.
    trials : int
        Number of embedding draws.
    kind : {"gaussian", "sphere"}
        Gaussian ``N(0, I/d)`` or uniform on the unit sphere.
    dtype : torch.dtype
        dtype of the result (the draw is float32 on the CPU, then converted).
    device : str or torch.device
        Device of the result.
    max_bytes : int
        Bound on the bytes of embeddings held at once (trials are drawn in chunks).
    ties : {"error", "first"}
        Rule for a tie between the true class and another (:func:`population_error`).
    """
    qs = _weight_list(qs)
    return _error_scans(qs, [f"qs[{i}]" for i in range(len(qs))], p, labels, M, d_grid, seed, trials=trials,
                        kind=kind, dtype=dtype, device=device, max_bytes=max_bytes, ties=ties)


def _error_scans(qs, names, p, labels, M, d_grid, seed, *, trials, kind, dtype, device, max_bytes, ties):
    """:func:`error_scans`, with ``names[i]`` the caller's name for ``qs[i]`` in error messages."""
    M = check.positive_int("M", M)
    seed = check.seed("seed", seed)
    trials = check.positive_int("trials", trials)
    max_bytes = check.positive_int("max_bytes", max_bytes)
    ties = check.choice("ties", ties, TIES)
    d_grid = check.int_array("d_grid", d_grid)
    N = _probabilities(p, normalised=False).size
    qs = [_weight_array(q, name) for q, name in zip(qs, names, strict=True)]
    for q, name in zip(qs, names, strict=True):  # the shape check of population_error, before any draw
        _weight_shape(q, name, N=N, trials=trials, n_grid=d_grid.size)
    D = int(d_grid.max())
    check.budget("trials", work=2.0 * trials * (N + M) * D * (M + len(qs) * d_grid.size),
                 formula="trials x (N + M) x d_max x (M + schemes x len(d_grid)) for the draws and products")
    bytes_per_trial = (N + M) * D * torch.empty((), dtype=dtype).element_size()
    chunk = max(1, max_bytes // bytes_per_trial)
    results = []
    for first in range(0, trials, chunk):
        size = min(chunk, trials - first)
        E, U = memory_embeddings(N, M, D, seed, trials=size, first_trial=first, kind=kind,
                                 dtype=dtype, device=device)
        chunk_qs = [q[first:first + size] if q.ndim >= 2 and q.shape[0] == trials and trials > 1 else q
                    for q in qs]
        results.append([err.cpu() for err in _population_errors(chunk_qs, names, p, labels, E, U, d_grid,
                                                                kind=kind, ties=ties)])
        del E, U
    return [torch.cat(per_q) for per_q in zip(*results, strict=True)]


@experiment("interference_error_vs_d")
def error_vs_d(N: int = 1000, M: int = 5, alpha: float = 2.0, scheme: str = "threshold", rho: float = 1.0,
               fraction: float = 1 / 8, d_min: int = 10, d_max: int = 1000, n_d: int = 20,
               trials: int = 100, seed: int = 0, kind: str = "gaussian", device: str = "cpu") -> list[dict]:
    """Error against ``d`` for one scheme, the paper's figure of chapter 2 (f*(x) = x mod M).

    One row per ``d`` of ``n_d`` log-spaced integers in ``[d_min, d_max]``: the mean and standard
    deviation of the error over ``trials`` nested embedding draws.

    Parameters
    ----------
    N : int
        Number of input tokens (the Zipf law's support).
    M : int
        Number of output classes; the target is ``f*(x) = x mod M``.
    alpha : float
        Zipf exponent of the input law.
    scheme : {"uniform", "power", "threshold"}
        The weighting ``q`` (:func:`scheme_weights`).
    rho : float
        Exponent of the ``"power"`` scheme, ``q = p**rho``.
    fraction : float
        The ``"threshold"`` scheme stores the ``floor(fraction * d)`` most frequent tokens (the paper's
        ``P = d/8``).
    d_min, d_max, n_d : int
        The range and number of the log-spaced dimensions (duplicates after rounding removed).
    trials : int
        Independent embedding draws.
    seed : int
        Seed of the embedding draws.
    kind : {"gaussian", "sphere"}
        Distribution of the embeddings.
    device : str
        Torch device of the computation.

    Returns
    -------
    list of dict
        One row per ``d``: ``d``, ``error_mean`` and ``error_std`` (over the trials).
    """
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    d_grid = log_grid(d_min, d_max, n_d, names=("d_min", "d_max", "n_d"))
    q = scheme_weights(scheme, p, d_grid, rho=rho, fraction=fraction)
    errors = error_scan(q, p, labels, M, d_grid, seed, trials=trials, kind=kind, device=device).cpu().numpy()
    return [{"d": int(d), "error_mean": float(errors[:, j].mean()), "error_std": float(errors[:, j].std())}
            for j, d in enumerate(d_grid)]


def log_grid(low: int, high: int, n: int, *, names: tuple[str, str, str] = ("low", "high", "n")) -> np.ndarray:
    """``n`` log-spaced integers from ``low`` to ``high`` (rounded; duplicates removed).

    Parameters
    ----------
    low, high, n : int
        The ends (``1 <= low <= high``) and the number of log-spaced values before rounding.
    names : tuple of str
        The caller's names for ``low``, ``high`` and ``n`` (e.g. ``("d_min", "d_max", "n_d")``), used in
        error messages.
    """
    low = check.positive_int(names[0], low)
    high = check.positive_int(names[1], high, minimum=low)
    n = check.positive_int(names[2], n)
    check.budget(names[2], nbytes=32.0 * n, formula="a few float64 arrays of n")
    return np.unique(np.round(np.geomspace(low, high, n)).astype(np.int64))


# --------------------------------------------------------------------------- internals

def _stored_rows(weights: torch.Tensor, labels: torch.Tensor, E: torch.Tensor, mixing: torch.Tensor):
    r"""The rows whose products with the :math:`e_r` a memory's scores are made of, and the input
    embeddings they multiply.

    ``weights`` ``(trials, ..., N)`` holds weight vectors :math:`w_k`; ``mixing`` (broadcast against
    ``weights.shape[:-1] + (M, M)``) the class mixing :math:`C_k` of each. Row :math:`(k, y)` is
    :math:`\sum_x C_k[y, f^*(x)]\, w_k(x)\, e_x`: with :math:`C = I` the class sums :math:`V_y`, with
    the output Gram matrix the class scores' rows :math:`\sum_{y'} (u_y^\top u_{y'}) V_{y'}`. Returned as
    token weights ``(trials, rows, n)``, restricted to the tokens with a non-zero weight when those
    are few (thresholds store ``P << N`` tokens)."""
    N = weights.shape[-1]
    support = torch.nonzero(weights.ne(0).flatten(0, -2).any(0)).squeeze(1)
    if support.numel() <= N // 2:
        # gathered along the token axis, contiguous in the coordinate-major layout of `embeddings`
        weights, labels = weights[..., support], labels[support]
        coordinates = E.transpose(1, 2)
        E = coordinates.gather(2, support.expand(*coordinates.shape[:2], -1)).transpose(1, 2)
    rows = mixing[..., labels] * weights[..., None, :]                   # (trials, ..., M, n)
    return rows.flatten(1, -2), E


def _class_sums(weights: torch.Tensor, labels: torch.Tensor, M: int, E: torch.Tensor) -> torch.Tensor:
    r""":math:`V_y = \sum_{x: f^*(x)=y} w(x) e_x` as one batched product, shape ``(trials, M, d)``."""
    one_hot = torch.eye(M, dtype=E.dtype, device=E.device)[:, labels]    # 1[f*(x) = y], (M, N)
    return (one_hot[None] * weights[:, None, :]) @ E


def _effective_weights(q: torch.Tensor, E: torch.Tensor, d_grid: list[int], kind: str) -> torch.Tensor:
    r"""Weights that absorb the renormalisation of truncated sphere embeddings:
    :math:`q_d(x) / \|e_x[:d]\|` (the norm of :math:`e_r` scales all of r's scores, so it is dropped).
    Gaussian rescaling is one factor for all scores and is dropped as well."""
    if kind == "gaussian":
        return q
    squared_norms, start = torch.zeros_like(E[:, :, 0]), 0
    inverse_norms = []
    for d in d_grid:
        squared_norms = squared_norms + torch.linalg.vector_norm(E[:, :, start:d], dim=-1) ** 2
        inverse_norms.append(squared_norms.rsqrt())
        start = d
    return q * torch.stack(inverse_norms, dim=1)


def _output_grams(U: torch.Tensor, d_grid: list[int], kind: str) -> torch.Tensor:
    r"""The output Gram matrices :math:`u_y^\top u_{y'}` at every ``d`` of the grid (leading coordinates;
    renormalised first for sphere embeddings), shape ``(trials, len(d_grid), M, M)``."""
    grams = []
    for d in d_grid:
        U_d = U[:, :, :d]
        if kind == "sphere":
            U_d = U_d / U_d.norm(dim=-1, keepdim=True)
        grams.append(U_d @ U_d.transpose(1, 2))
    return _finite(torch.stack(grams, dim=1))


def _weighted_misses(class_scores: torch.Tensor, labels: torch.Tensor, p: torch.Tensor,
                     ties: str = "error") -> torch.Tensor:
    r""":math:`\sum_r p(r)\,\mathbf{1}[s_{f^*(r)}(r) \le \max_{y \ne f^*(r)} s_y(r)]` for scores of
    shape ``(..., M, N)`` (``ties="error"``); with ``ties="first"`` a rival tied with the true class
    beats it only from a smaller class index, as ``argmax`` decides. Returns shape ``(...)`` in float64."""
    true_score = class_scores.gather(-2, labels.expand(*class_scores.shape[:-2], 1, -1))
    if ties == "error":
        missed = (class_scores >= true_score).sum(dim=-2) > 1     # the true class itself and a rival
    else:
        before = torch.arange(class_scores.shape[-2], device=labels.device)[:, None] < labels   # (M, N)
        missed = ((class_scores > true_score) | ((class_scores == true_score) & before)).any(dim=-2)
    return missed.to(torch.float64) @ p


def _check_embeddings(E, U) -> tuple[torch.Tensor, torch.Tensor]:
    for name, tensor in (("E", E), ("U", U)):
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of shape (trials, n, d), got {type(tensor).__name__}")
        if tensor.ndim != 3 or 0 in tensor.shape:
            raise ValueError(f"{name} must have shape (trials, n, d) with no empty axis, got {tuple(tensor.shape)}")
        _check_float_dtype(tensor.dtype, name=f"{name}.dtype")
    if E.shape[0] != U.shape[0] or E.shape[2] != U.shape[2]:
        raise ValueError(f"E and U must share trials and d: got E {tuple(E.shape)}, U {tuple(U.shape)}")
    if E.dtype != U.dtype or E.device != U.device:
        raise ValueError(f"E and U must share dtype and device, got {E.dtype}/{E.device} and {U.dtype}/{U.device}")
    return E, U


def _finite(class_scores: torch.Tensor) -> torch.Tensor:
    """Scores (or their factors) are checked instead of the much larger embeddings: a NaN or inf
    anywhere in E, U or q reaches them, and would otherwise be read as a silent miss or hit. The
    minimum and maximum (one pass, no boolean copy) are finite exactly when every entry is: a NaN
    propagates to both, an infinity to one."""
    if not torch.isfinite(torch.stack(torch.aminmax(class_scores))).all():
        raise ValueError("scores are not finite: E, U and q must be finite (and not overflow)")
    return class_scores


def _check_float_dtype(dtype, name: str = "dtype") -> None:
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"{name} must be torch.float32 or torch.float64, got {dtype}")


def _labels(labels, N: int, M: int, device) -> torch.Tensor:
    labels = check.int_array("labels", labels, minimum=0)
    if labels.size != N:
        raise ValueError(f"labels must have length N={N}, got {labels.size}")
    if labels.max() >= M:
        raise ValueError(f"labels must lie in [0, M-1] with M={M} output embeddings, got max {labels.max()}")
    return torch.as_tensor(labels, device=device)


def _probabilities(p, *, N: int | None = None, normalised: bool = True) -> np.ndarray:
    p = check.real_array("p", p)  # strings, None, NaN and empty arrays refused by name
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"p must be a non-empty 1-D array of probabilities, got shape {p.shape}")
    if N is not None and p.size != N:
        raise ValueError(f"p must have length N={N}, got {p.size}")
    if not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("p must contain finite non-negative values")
    if normalised and not np.isclose(p.sum(), 1.0):
        raise ValueError(f"p must sum to 1, got {p.sum()}")
    return p


def _counts(counts) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim == 0 or counts.size == 0:
        raise ValueError(f"counts must have a last axis of N tokens (and no empty axis), got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer) or counts.min() < 0:
        raise ValueError("counts must be non-negative integers")
    return counts


def _d_grid(d_grid, D: int) -> list[int]:
    if d_grid is None:
        return [D]
    d_grid = check.int_array("d_grid", d_grid)
    if d_grid.max() > D:
        raise ValueError(f"d_grid must not exceed the embedding dimension D={D}, got {d_grid.max()}")
    if np.any(np.diff(d_grid) <= 0):
        raise ValueError("d_grid must be strictly increasing")
    return [int(d) for d in d_grid]


def _weights(q, E: torch.Tensor, *, n_grid: int, name: str = "q") -> torch.Tensor:
    """``q`` as a tensor of shape ``(trials or 1, n_grid or 1, N)`` in E's dtype and device; errors name
    the caller's ``name`` for it."""
    trials, N = E.shape[0], E.shape[1]
    q = _weight_shape(q.cpu().numpy() if isinstance(q, torch.Tensor) else _weight_array(q, name), name,
                      N=N, trials=trials, n_grid=n_grid)
    if not np.isfinite(q).all():
        raise ValueError(f"{name} must be finite")
    return torch.as_tensor(q).to(dtype=E.dtype, device=E.device).expand(trials, -1, -1)


def _weight_array(q, name: str) -> np.ndarray:
    """A weighting as a float64 array (booleans read as 0/1), refused by ``name`` when it is not real."""
    if isinstance(q, torch.Tensor):
        q = q.detach().cpu().numpy()
    if isinstance(q, np.ndarray) and q.dtype == bool:
        q = q.astype(np.float64)
    return check.real_array(name, q)


def _weight_shape(q: np.ndarray, name: str, *, N: int, trials: int, n_grid: int) -> np.ndarray:
    """``q`` viewed as ``(trials or 1, n_grid or 1, N)``, or a ``ValueError`` naming ``name``."""
    if q.ndim == 1:
        q = q[None, None]
    elif q.ndim == 2:
        q = q[:, None]
    ok = (q.ndim == 3 and q.shape[-1] == N and q.shape[0] in (1, trials) and q.shape[1] in (1, n_grid))
    if not ok:
        raise ValueError(f"{name} must have shape (N,), (trials, N) or (trials, len(d_grid), N) with "
                         f"N={N}, trials={trials}, len(d_grid)={n_grid} (size-1 axes broadcast), "
                         f"got {tuple(q.shape)}")
    return q


def _weight_list(qs) -> list:
    """``qs`` as a list of weightings: a non-empty collection of them (an array is one weighting, not a
    list)."""
    if isinstance(qs, (np.ndarray, torch.Tensor, str, bytes)) or not hasattr(qs, "__iter__") \
            or not hasattr(qs, "__len__") or not len(qs):
        raise TypeError(f"qs must be a non-empty list of weightings (use population_error or error_scan for "
                        f"one), got {type(qs).__name__}")
    return list(qs)
