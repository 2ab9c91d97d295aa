r"""How much a d x d memory can hold: the bounds of [CDB24] and a counting prediction (chapter 7).

Three statements, all numpy/float64 and free of random draws:

- **Theorem 1 of [CDB24]** brackets the expected error of the additive memory
  :math:`W = \sum_x q(x)\, u_{f^*(x)} e_x^\top` with random embeddings by the mass of the tokens whose
  weight is too small against the *per-class* interference
  :math:`Q_\infty = \max_y \sum_{x:\, f^*(x) = y} q(x)^2` (:func:`class_interference`):
  :func:`theorem1_upper` and :func:`theorem1_lower`. Their constants are quoted from the paper's
  statement (the project's reference notes give only the shape); :func:`theorem1_shape` is the same
  set with every constant and log factor set to one, which is not a bound.
- **A minimax lower bound** for any algorithm that sees ``T`` samples and keeps ``B`` bits
  (:func:`minimax_lower_bound`): Fano's inequality per token, for labels drawn uniformly at random.
  It is stated and proved in the docstring; it is the form of [CDB24]'s minimax statement that this
  book can check exactly.
- **Counting** (:func:`counting_capacity`): the scores of a linear memory with fixed output
  embeddings are :math:`U W e_x`, so a trained memory is an ``M``-class linear classifier with
  :math:`\min(M-1, d)\, d` free parameters; Cover's count of two
  binary labels per parameter, divided by the :math:`\log_2 M` bits of a label, predicts how many
  associations it stores.
"""

from __future__ import annotations

import numpy as np
from scipy import optimize

from .. import _validate as check

__all__ = ["class_interference", "theorem1_upper", "theorem1_lower", "theorem1_shape",
           "minimax_lower_bound", "minimax_lower_bound_grid", "fano_phi", "counting_capacity",
           "free_parameters"]


def class_interference(q, labels, M: int | None = None) -> float:
    r"""The per-class interference :math:`Q_\infty = \max_y \sum_{x:\, f^*(x) = y} q(x)^2`.

    Parameters
    ----------
    q : array_like, shape ``(N,)``
        Weights of the additive memory.
    labels : array_like of int, shape ``(N,)``
        Classes :math:`f^*(x)` in ``0..M-1``.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).

    Returns
    -------
    float
    """
    q, labels = _weights(q, labels)
    M = int(labels.max()) + 1 if M is None else check.positive_int("M", M)
    if labels.max() >= M:
        raise ValueError(f"labels must lie in [0, M-1] with M={M}, got max {labels.max()}")
    return float(np.bincount(labels, weights=q**2, minlength=M).max())


def theorem1_upper(q, p, labels, d, M: int | None = None, *, gamma: float = 0.5,
                   a: float = 16.0, b: float = 8.0) -> np.ndarray:
    r"""Upper bound of [CDB24]'s Theorem 1 on :math:`\mathbb{E}_{e,u}[\mathcal{E}(q)]` (embeddings
    uniform on the sphere), for each ``d``:

    .. math::
        \mathbb{E}_{e,u}[\mathcal{E}(q)] \le
        p\Bigl(\Bigl\{x : d\, q(x)^2 \le a\, c_\gamma
        \Bigl(Q_\infty + \frac{b\, c_\gamma \|q\|_2^2}{d}\Bigr)\Bigr\}\Bigr) + \gamma,

        c_\gamma = \log M + \gamma^{-1} \log N .

    It holds for every :math:`\gamma \in (0, 1]`, so a caller may take the smallest value over a grid
    of :math:`\gamma` (the chapter does). The constants ``a = 16``, ``b = 8`` and the form of
    :math:`c_\gamma` are quoted from the paper; the log factor :math:`c_\gamma` makes the bound vacuous
    (``>= 1``) until ``d`` is large, which the chapter shows.

    Parameters
    ----------
    q, p, labels : array_like, shape ``(N,)``
        Weights, token probabilities and classes.
    d : int or sequence of int
        Dimensions.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).
    gamma : float
        The confidence parameter :math:`\gamma \in (0, 1]`.
    a, b : float
        The constants of the statement (quoted: 16 and 8).

    Returns
    -------
    numpy.ndarray
        One value per ``d`` (not clipped to 1).
    """
    q, labels = _weights(q, labels)
    p = _probabilities(p, q.size)
    M = int(labels.max()) + 1 if M is None else check.positive_int("M", M)
    gamma = check.real("gamma", gamma, low=0.0, high=1.0, low_open=True)
    a = check.real("a", a, low=0.0, low_open=True)
    b = check.real("b", b, low=0.0, low_open=True)
    d = _dimensions(d)
    c = np.log(M) + np.log(q.size) / gamma
    Q = class_interference(q, labels, M)
    threshold = a * c * (Q + b * c * (q**2).sum() / d)                      # (len(d),)
    lost = d[:, None] * q[None, :] ** 2 <= threshold[:, None]
    return lost @ p + gamma


def theorem1_lower(q, p, labels, d, M: int | None = None, *, factor: float = 1 / 20,
                   k: float = 3.0) -> np.ndarray:
    r"""Lower bound of [CDB24]'s Theorem 1 (Gaussian embeddings), for each ``d``:

    .. math:: \mathbb{E}_{e,u}[\mathcal{E}(q)] \ge \frac{1}{20}\,
              p\bigl(\{x : 3(d + 1)\, q(x)^2 \le Q_\infty\}\bigr).

    A token whose squared weight is below the per-class interference over ``3(d + 1)`` is lost with
    probability at least ``1/20``. ``factor = 1/20`` and ``k = 3`` are quoted from the paper.

    Parameters
    ----------
    q, p, labels : array_like, shape ``(N,)``
        Weights, token probabilities and classes.
    d : int or sequence of int
        Dimensions.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).
    factor, k : float
        The constants of the statement.

    Returns
    -------
    numpy.ndarray
        One value per ``d``.
    """
    q, labels = _weights(q, labels)
    p = _probabilities(p, q.size)
    factor = check.real("factor", factor, low=0.0, high=1.0)
    k = check.real("k", k, low=0.0, low_open=True)
    d = _dimensions(d)
    Q = class_interference(q, labels, M)
    lost = k * (d[:, None] + 1) * q[None, :] ** 2 <= Q
    return factor * (lost @ p)


def theorem1_shape(q, p, labels, d, M: int | None = None, *, c: float = 1.0) -> np.ndarray:
    r"""The set of Theorem 1 with every constant and log factor replaced by one constant ``c``:
    :math:`p(\{x : d\, q(x)^2 \le c\,(Q_\infty + \|q\|_2^2 / d)\})`. Not a bound: the shape that both
    bounds of :func:`theorem1_upper` and :func:`theorem1_lower` share, with a stated constant.

    Parameters
    ----------
    q, p, labels : array_like, shape ``(N,)``
        Weights, token probabilities and classes.
    d : int or sequence of int
        Dimensions.
    M : int, optional
        Number of classes.
    c : float
        The constant (stated wherever the curve is drawn).
    """
    q, labels = _weights(q, labels)
    p = _probabilities(p, q.size)
    c = check.real("c", c, low=0.0, low_open=True)
    d = _dimensions(d)
    Q = class_interference(q, labels, M)
    lost = d[:, None] * q[None, :] ** 2 <= c * (Q + (q**2).sum() / d)[:, None]
    return lost @ p


def fano_phi(P, M: int) -> np.ndarray:
    r"""The information a predictor needs to err with probability ``P`` on a uniform ``M``-ary label,
    :math:`\varphi(P) = \log M - h(P) - P \log(M - 1)` nats (``h`` the binary entropy), for
    :math:`P \in [0, 1 - 1/M]`: decreasing and convex from :math:`\log M` to 0 (Fano's inequality).

    Parameters
    ----------
    P : array_like
        Error probabilities in ``[0, 1 - 1/M]``.
    M : int
        Number of classes, ``M >= 2``.
    """
    M = check.positive_int("M", M, minimum=2)
    P = check.real_array("P", P)
    if not np.all(np.isfinite(P)) or P.min(initial=0.0) < 0 or P.max(initial=0.0) > 1 - 1 / M + 1e-12:
        raise ValueError(f"P must lie in [0, 1 - 1/M] = [0, {1 - 1 / M}]")
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(P > 0, P * np.log(P), 0.0) - np.where(P < 1, (1 - P) * np.log1p(-P), 0.0)
    return np.log(M) - entropy - P * np.log(M - 1)


def minimax_lower_bound(p, M: int, T, bits: float) -> float:
    r"""A lower bound on the error of *any* algorithm that sees ``T`` samples and keeps ``bits`` bits.

    **Statement.** Let the labels :math:`f^*(x)` be i.i.d. uniform on ``M`` classes, the ``T`` tokens
    i.i.d. from ``p`` (independent of the labels), and let an algorithm, possibly randomised, map the
    samples :math:`(x_t, f^*(x_t))` to a state ``s`` of at most ``B = bits`` bits and predict
    :math:`\hat f(x) = g(s, x)`. Then for every :math:`\lambda \ge 0`

    .. math::
        \sup_{f^*} \mathbb{E}[\mathcal{E}(\hat f)] \ge
        \sum_x \Bigl[(1 - p_x)^T \Bigl(1 - \frac{1}{M}\Bigr) p_x + \bigl(1 - (1 - p_x)^T\bigr) m_\lambda(x)\Bigr]
        - \lambda B \log 2, \qquad
        m_\lambda(x) = \min_{P \in [0, 1 - 1/M]} p_x P + \lambda \varphi(P),

    with :math:`\varphi` of :func:`fano_phi`; this function returns the maximum over :math:`\lambda`.

    **Proof.** The supremum over :math:`f^*` exceeds the average over uniform labels. Condition on the
    tokens, with ``S`` the set seen. A token outside ``S`` has a label independent of ``s``: it is
    missed with probability at least :math:`1 - 1/M`. For the others, the labels are independent, so
    :math:`\sum_{x \in S} I(f^*(x); s) \le I(f^*; s) \le H(s) \le B \log 2`, and Fano's inequality gives
    :math:`I(f^*(x); s) \ge \varphi(P_x)` for the miss probability :math:`P_x`. Minimising
    :math:`\sum_{x\in S} p_x P_x` under :math:`\sum_{x\in S} \varphi(P_x) \le B\log 2` is bounded below
    by its Lagrangian at any :math:`\lambda \ge 0` (weak duality); averaging over ``S``
    (:math:`P(x \notin S) = (1 - p_x)^T`) gives the display. The minimiser of :math:`m_\lambda` is the
    soft threshold :math:`P^* = (M-1)e^{-p_x/\lambda} / (1 + (M-1)e^{-p_x/\lambda})`.

    The memory term behaves like the tail beyond the :math:`K = B/\log_2 M` most frequent tokens and the
    data term is :math:`(1 - 1/M)` times the unseen mass: the form
    :math:`K^{-(\alpha-1)} + T^{-(1-1/\alpha)}` of [CDB24]'s minimax statement for Zipf laws.

    Parameters
    ----------
    p : array_like, shape ``(N,)``
        Token probabilities (summing to 1).
    M : int
        Number of classes, ``M >= 2``.
    T : int or float
        Number of samples (``numpy.inf`` for infinite data).
    bits : float
        The memory's size in bits, ``B >= 0``.

    Returns
    -------
    float
    """
    p = _probabilities(p, None)
    M = check.positive_int("M", M, minimum=2)
    T = _samples(T)
    bits = check.real("bits", bits, low=0.0, high=np.inf)
    seen = 1.0 if np.isinf(T) else -np.expm1(T * np.log1p(-p))              # P(x in S)
    unseen_term = float(((1 - seen) * (1 - 1 / M) * p).sum())
    budget = bits * np.log(2)

    def dual(log_lam: float) -> float:
        lam = np.exp(log_lam)
        P = _soft_threshold(p, lam, M)
        return unseen_term + float((seen * (p * P + lam * fano_phi(P, M))).sum()) - lam * budget

    if budget == 0:
        return unseen_term + float((seen * (1 - 1 / M) * p).sum())
    # the dual is concave in lambda; search log(lambda) over a range that covers every p_x
    scale = np.log(p[p > 0])
    low, high = scale.min() - 20.0, scale.max() + 20.0
    best = optimize.minimize_scalar(lambda t: -dual(t), bounds=(low, high), method="bounded",
                                    options={"xatol": 1e-10})
    return max(unseen_term, dual(best.x))


def minimax_lower_bound_grid(p, M: int, T_grid, bits_grid) -> np.ndarray:
    """:func:`minimax_lower_bound` on a grid, shape ``(len(T_grid), len(bits_grid))``.

    Parameters
    ----------
    p : array_like, shape ``(N,)``
        Token probabilities.
    M : int
        Number of classes.
    T_grid : sequence of int or float
        Sample sizes.
    bits_grid : sequence of float
        Memory sizes in bits.
    """
    p = _probabilities(p, None)
    M = check.positive_int("M", M, minimum=2)
    T_grid = np.array([_samples(T, "T_grid") for T in _grid("T_grid", T_grid)])
    bits_grid = np.array([check.real("bits_grid", float(B), low=0.0) for B in _grid("bits_grid", bits_grid)])
    check.budget("T_grid, bits_grid", work=T_grid.size * bits_grid.size * (100.0 * 10 * p.size + 1e5),
                 formula="len(T_grid) x len(bits_grid) bounded searches of about 100 evaluations of N terms")
    return np.array([[minimax_lower_bound(p, M, T, float(B)) for B in bits_grid] for T in T_grid])


def _grid(name: str, values) -> np.ndarray:
    """A scalar or non-empty 1-D sequence of real numbers (inf allowed), as float64; refused by name."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers, got {values!r:.60}")
    arr = np.atleast_1d(np.asarray(values))
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a number or a 1-D sequence of numbers, got {values!r:.60}")
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a number or a non-empty 1-D sequence, got shape {arr.shape}")
    return arr.astype(np.float64)


def free_parameters(d, M: int) -> np.ndarray:
    r"""Free parameters of the decisions of a d x d memory with fixed outputs ``U`` (``M x d``, in
    general position): :math:`F = \min(M - 1, d)\, d`.

    The scores are :math:`V e_x` with :math:`V = UW`, which reaches every ``M x d`` matrix whose columns
    lie in the column space of ``U``: all of them when ``M <= d`` (:math:`Md` numbers), a space of
    dimension :math:`d^2` when ``M > d``. The argmax does not change when the same vector is added to
    every row of ``V``; that removes ``d`` parameters when ``M <= d`` (the all-ones vector is then in the
    column space of ``U``) and none otherwise. For ``M = 2`` this is ``d``: a linear classifier.

    Parameters
    ----------
    d : int or sequence of int
        Dimensions.
    M : int
        Number of classes.
    """
    d = _dimensions(d)
    M = check.positive_int("M", M)
    return np.minimum(d, M - 1) * d


def counting_capacity(d, M: int) -> np.ndarray:
    r"""Counting prediction of the number of associations a trained d x d memory stores exactly:

    .. math:: N^*(d, M) = \frac{2 F}{\log_2 M}, \qquad F = \min(M - 1, d)\, d .

    ``F`` is the number of free parameters of the decisions (:func:`free_parameters`). Cover's count
    gives a capacity of exactly 2 binary labels per free parameter for ``M = 2`` (a linear classifier in
    :math:`\mathbb{R}^d`: ``2d`` points in general position); an ``M``-ary label carries
    :math:`\log_2 M` bits, hence the division. This is order ``d`` at fixed ``M <= d`` and order
    :math:`d^2 / \log M` once ``M >= d``, the regime where linear memories store of order :math:`d^2`
    facts (Nichani, Lee & Bietti 2024). It is exact only for ``M = 2``; for ``M > 2`` it is a heuristic
    whose constant 2 is stated, not derived.

    Parameters
    ----------
    d : int or sequence of int
        Dimensions.
    M : int
        Number of classes, ``M >= 2``.
    """
    M = check.positive_int("M", M, minimum=2)
    return 2.0 * free_parameters(d, M) / np.log2(M)


# --------------------------------------------------------------------------- internals

def _soft_threshold(p: np.ndarray, lam: float, M: int) -> np.ndarray:
    """The minimiser of ``p P + lam phi(P)`` on ``[0, 1 - 1/M]``, computed without overflow."""
    z = np.log(M - 1) - p / lam
    return np.exp(z - np.logaddexp(0.0, z))                  # (M-1)e^{-p/lam} / (1 + (M-1)e^{-p/lam})


def _weights(q, labels) -> tuple[np.ndarray, np.ndarray]:
    q = check.real_array("q", q)
    if q.ndim != 1 or q.size == 0 or not np.all(np.isfinite(q)):
        raise ValueError(f"q must be a finite non-empty 1-D array of weights, got shape {q.shape}")
    labels = check.int_array("labels", labels, minimum=0)
    if labels.size != q.size:
        raise ValueError(f"labels must have one class per token (N={q.size}), got {labels.size}")
    return q, labels


def _probabilities(p, N: int | None) -> np.ndarray:
    p = check.real_array("p", p)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("p must be a non-empty 1-D array of finite non-negative probabilities")
    if N is not None and p.size != N:
        raise ValueError(f"p must have length N={N}, got {p.size}")
    return p


def _dimensions(d) -> np.ndarray:
    d = np.atleast_1d(np.asarray(d))
    if d.ndim != 1 or not (np.issubdtype(d.dtype, np.integer) or np.issubdtype(d.dtype, np.floating)) \
            or not np.all(np.isfinite(d)) or d.min() <= 0:
        raise ValueError(f"d must be positive dimensions (a number or a 1-D sequence), got {d!r}")
    return d.astype(np.float64)


def _samples(T, name: str = "T") -> float:
    if isinstance(T, bool):
        raise TypeError(f"{name} must be a non-negative number of samples, got {T!r}")
    try:
        T = float(T)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a non-negative number of samples, got {T!r}") from None
    if np.isnan(T) or T < 0 or (np.isfinite(T) and T != int(T)):
        raise ValueError(f"{name} must be a non-negative integer or inf, got {T}")
    return T
