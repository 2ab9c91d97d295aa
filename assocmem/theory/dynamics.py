r"""The decoupled dynamics of gradient descent on an associative memory (chapter 4).

When the embedding dimension ``d`` is large against the number of frequent tokens, the gradients of
different associations are quasi-orthogonal and SGD on the cross-entropy acts on each stored weight
separately: :math:`W_t \approx \sum_x q_t(x)\, u_{f_*(x)} e_x^\top`. One visit of ``x`` (a step of
size :math:`\gamma` on its loss alone) maps :math:`q \mapsto f(q)`,

.. math:: f(q) = q + \frac{\gamma}{1 + (M-1)^{-1} e^{q}},

since :math:`1 - \mathrm{softmax}_y = (M-1)/(M-1+e^{q})` when the ``M - 1`` wrong classes score 0.
After ``n`` visits, :math:`q = F(n) = f\circ\dots\circ f(0)`. With a mini-batch of ``B`` samples and
the mean loss, each step moves every token at once:
:math:`q \mapsto q + (\gamma / B)\,\mathrm{count}_B(x) / (1 + (M-1)^{-1} e^{q})`.

The map ``f`` follows the right class alone, as if the ``M - 1`` wrong classes kept score 0. The
same step also lowers each wrong class by :math:`\gamma (1 - \mathrm{softmax}_y) / (M - 1)`; with
orthogonal embeddings the softmax then sees the margin :math:`m = q + b`, which follows ``f`` with
step :math:`\gamma M / (M-1)`, while the right class holds :math:`q = (M-1) m / M`.
``form="symmetric"`` gives this exact orthogonal-embedding prediction; ``form="paper"`` the map ``f``.
Chapter 4 compares both with real SGD.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as check

__all__ = ["FORMS", "one_visit", "visits_map", "minibatch_q", "population_q"]

FORMS = ("paper", "symmetric")


def one_visit(q, lr: float, M: int) -> np.ndarray:
    r"""One gradient step on a single association: :math:`f(q) = q + \gamma / (1 + (M-1)^{-1} e^q)`.

    Parameters
    ----------
    q : array_like
        Current stored weights.
    lr : float
        The step size :math:`\gamma > 0`.
    M : int
        Number of output classes, ``M >= 2``.
    """
    lr = check.real("lr", lr, low=0.0, low_open=True)
    M = check.positive_int("M", M, minimum=2)
    q = check.real_array("q", q)
    return q + lr * _wrong_mass(q, M)


def visits_map(n, lr: float, M: int, *, form: str = "paper") -> np.ndarray:
    r"""The stored weight after ``n`` single-sample visits, :math:`F(n) = f^{\circ n}(0)`.

    ``n`` is an array of non-negative integers (e.g. the visit counts :math:`n_x` of every token);
    the result has the same shape. :math:`F` grows like :math:`\log n` once :math:`e^q \gg M`.
    ``form="symmetric"`` iterates the margin with step :math:`\gamma M/(M-1)` and returns
    :math:`(M-1)/M` of it (see the module's notes).

    Parameters
    ----------
    n : array of int
        Visit counts, non-negative integers, any shape.
    lr : float
        Step size :math:`\gamma > 0`.
    M : int
        Number of classes, :math:`\ge 2`.
    form : {"paper", "symmetric"}
        The map of the module's notes (see :func:`minibatch_q`).
    """
    check.choice("form", form, FORMS)
    lr = check.real("lr", lr, low=0.0, low_open=True)
    M = check.positive_int("M", M, minimum=2)
    n = np.asarray(n)
    if n.size and (not np.issubdtype(n.dtype, np.integer) or n.min() < 0):
        raise ValueError("n must contain non-negative integers")
    boost = M / (M - 1) if form == "symmetric" else 1.0
    top = int(n.max()) if n.size else 0
    check.budget("n", nbytes=8.0 * (top + 1), work=top * 1e5,
                 formula="max(n) sequential visits, each an interpreted step, and a float64 table of max(n)")
    values = np.zeros(top + 1)
    for k in range(top):
        values[k + 1] = one_visit(values[k], boost * lr, M)
    return values[n] / boost


def minibatch_q(counts, lr, M: int, batch_size: int, *, form: str = "paper") -> np.ndarray:
    r"""Decoupled prediction of the stored weights along mini-batch SGD from ``q = 0``.

    .. math:: q_{t+1}(x) = q_t(x) + \frac{\gamma_t}{B}\,
              \frac{\mathrm{count}_{B_t}(x)}{1 + (M-1)^{-1} e^{q_t(x)}}

    Parameters
    ----------
    counts : array_like, shape ``(..., steps, N)``
        How often each token appears in each batch (e.g. ``zipf.token_counts`` of the batches).
    lr : float or array_like of shape ``(...)`` or ``(..., steps)``
        Step size, constant or per step (a schedule), per run.
    M : int
        Number of classes.
    batch_size : int
        ``B``, the divisor of the mean loss.
    form : {"paper", "symmetric"}
        ``"paper"``: the map above. ``"symmetric"``: the margin follows it with step
        :math:`\gamma M/(M-1)` and the right class's score is :math:`(M-1)/M` of the margin
        (the exact dynamics for orthogonal embeddings).

    Returns
    -------
    numpy.ndarray, shape ``(..., steps + 1, N)``
        :math:`q_t` for ``t = 0..steps`` (row 0 is zero).
    """
    M = check.positive_int("M", M, minimum=2)
    B = check.positive_int("batch_size", batch_size)
    check.choice("form", form, FORMS)
    counts = check.real_array("counts", counts)
    if counts.ndim < 2 or counts.min(initial=0) < 0:
        raise ValueError("counts must have shape (..., steps, N) with non-negative entries")
    steps = counts.shape[-2]
    lr = check.positive_array("lr", lr)
    lr = np.broadcast_to(lr[..., None] if lr.ndim == counts.ndim - 2 else lr, counts.shape[:-1])
    boost = M / (M - 1) if form == "symmetric" else 1.0
    q = np.zeros(counts.shape[:-2] + (steps + 1, counts.shape[-1]))
    for t in range(steps):
        step = boost * lr[..., t, None] / B * counts[..., t, :]
        q[..., t + 1, :] = q[..., t, :] + step * _wrong_mass(q[..., t, :], M)
    return q / boost


def population_q(probs, lr: float, M: int, steps: int, *, form: str = "paper") -> np.ndarray:
    r"""The large-batch limit of :func:`minibatch_q`: ``count_B(x) / B`` replaced by ``p(x)``.

    For small :math:`\gamma t` this gives :math:`q_t(x) \approx \gamma t (M-1)/M \cdot p(x)`,
    the scheme :math:`q \propto p` of chapter 2. Returns shape ``(steps + 1, N)``.

    Parameters
    ----------
    probs : array, shape ``(N,)``
        The token probabilities :math:`p(x)`, non-negative.
    lr : float or array
        Step size :math:`\gamma`, constant or one per step, :math:`> 0`.
    M : int
        Number of classes, :math:`\ge 2`.
    steps : int
        Number of steps, :math:`\ge 1`.
    form : {"paper", "symmetric"}
        The map of the module's notes (see :func:`minibatch_q`).
    """
    probs = check.real_array("probs", probs)
    if probs.ndim != 1 or probs.min() < 0:
        raise ValueError("probs must be a 1-D array of probabilities")
    steps = check.positive_int("steps", steps)
    check.budget("steps, probs", nbytes=24.0 * (steps + 1) * probs.size, work=steps * (20.0 * probs.size + 1e5),
                 formula="the (steps + 1) x N trajectory and its per-step inputs, one interpreted step each")
    return minibatch_q(np.broadcast_to(probs, (steps, probs.size)), lr, M, 1, form=form)


def _wrong_mass(q: np.ndarray, M: int) -> np.ndarray:
    """``1 - softmax`` of the right class when it scores ``q`` and ``M - 1`` others score 0."""
    return 1.0 / (1.0 + np.exp(np.minimum(q, 700.0)) / (M - 1))
