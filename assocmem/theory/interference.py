r"""Interference in outer-product memories: exponents, the threshold rule and a Gaussian predictor.

Chapter 2 of the book. The memory :math:`W = \sum_x q(x) u_{f^*(x)} e_x^\top` with random embeddings
in :math:`\mathbb{R}^d` scores token :math:`r` for class :math:`y` as

.. math:: s_y(r) = \sum_{c=1}^{M} (u_y^\top u_c)\, S_c(r), \qquad
          S_c(r) = \sum_{x: f^*(x) = c} q(x)\, e_x^\top e_r,

a signal :math:`q(r)\|e_r\|^2` inside :math:`S_{f^*(r)}` plus interference whose variance is of order
:math:`\|q\|^2/d`. Everything here is numpy/float64 and needs no random draw.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .. import _validate as check

__all__ = ["SCHEMES", "scheme_exponent", "threshold_rule_error", "score_moments", "predicted_error",
           "token_error_probability"]

SCHEMES = ("uniform", "power", "threshold")

# Quadrature for the standardised true score z ~ N(0, 1): node i carries the normal mass of its cell.
_Z = np.linspace(-8.0, 8.0, 201)
_Z_EDGES = np.concatenate([[-np.inf], (_Z[1:] + _Z[:-1]) / 2, [np.inf]])
_Z_WEIGHTS = np.diff(special.ndtr(_Z_EDGES))


def scheme_exponent(scheme: str, alpha: float, rho: float = 1.0) -> float:
    r"""Predicted exponent :math:`\gamma` of :math:`\mathcal{E} \asymp d^{\gamma}` (infinite data, ``N = inf``).

    - ``"uniform"`` (:math:`q = 1`): 0, no decay until :math:`d \gtrsim N`;
    - ``"power"`` (:math:`q = p^\rho`): :math:`-(\alpha-1)/(2\rho\alpha)` when :math:`2\rho\alpha > 1`,
      else 0 (:math:`\|q\|^2` diverges with ``N``: no decay in ``d`` at ``N = inf``);
      ``rho = 1`` gives :math:`-(\alpha-1)/(2\alpha)`, i.e. :math:`-1/4` at :math:`\alpha = 2`;
    - ``"threshold"`` (:math:`q = \mathbf{1}[x \le P]`, :math:`P \propto d`): :math:`-(\alpha - 1)`.

    Why: token :math:`x` is lost when :math:`d\,q(x)^2 \lesssim \|q\|^2`; for :math:`q = p^\rho` that is
    :math:`x \gtrsim d^{1/(2\rho\alpha)}`, whose Zipf tail mass is :math:`d^{-(\alpha-1)/(2\rho\alpha)}`.

    Parameters
    ----------
    scheme : {"uniform", "power", "threshold"}
        The weighting scheme :math:`q`.
    alpha : float
        Zipf exponent, :math:`> 1`.
    rho : float
        Power :math:`\rho > 0` of the ``"power"`` scheme (ignored by the others).

    Returns
    -------
    float
        The exponent :math:`\gamma \le 0`.
    """
    scheme = check.choice("scheme", scheme, SCHEMES)
    alpha = check.real("alpha", alpha, low=1.0, low_open=True)
    rho = check.real("rho", rho, low=0.0, low_open=True)
    if scheme == "uniform":
        return 0.0
    if scheme == "threshold":
        return -(alpha - 1)
    return -(alpha - 1) / (2 * rho * alpha) if 2 * rho * alpha > 1 else 0.0


def threshold_rule_error(q, p, d_grid, c: float = 1.0) -> np.ndarray:
    r"""The threshold rule :math:`p(\{x : d\, q(x)^2 < c\, \|q\|^2\})` for each ``d`` of ``d_grid``.

    ``q`` is ``(N,)`` or ``(len(d_grid), N)`` (one weight vector per ``d``). It is the heuristic
    behind the exponents: a token is recalled when its signal :math:`q(x)` beats interference of
    standard deviation :math:`\|q\|/\sqrt{d}`.

    Parameters
    ----------
    q : array, shape ``(N,)`` or ``(len(d_grid), N)``
        The association weights :math:`q(x)` (one vector for every ``d``, or one per ``d``).
    p : array, shape ``(N,)``
        The token probabilities :math:`p(x)`.
    d_grid : int or array of int
        Embedding dimensions.
    c : float
        Constant :math:`c > 0` of the rule.

    Returns
    -------
    numpy.ndarray, shape ``(len(d_grid),)``
        The lost mass per ``d``.
    """
    p, d_grid = _probabilities(p), _grid(d_grid)
    q = _weights_per_d(q, p.size, d_grid.size)
    c = check.real("c", c, low=0.0, low_open=True)
    lost = d_grid[:, None] * q**2 < c * (q**2).sum(-1, keepdims=True)
    return (lost * p).sum(-1)


def score_moments(q, labels, d: int, M: int | None = None, *, kind: str = "gaussian",
                  output_norm: float = 1.0) -> tuple:
    r"""Mean and variances of every token's scores in the random-embedding model at dimension ``d``,
    given the squared norm :math:`n_u = \|u_{f^*(r)}\|^2` of the true class's output embedding.

    With :math:`Q_c = \sum_{x: f^*(x)=c} q(x)^2`, :math:`k = f^*(r)`, :math:`\|e_r\|^2` set to its mean 1
    (it scales signal and noise together) and :math:`m_4 = E\|u_y\|^4` (:math:`1 + 2/d` Gaussian,
    1 sphere):

    .. math::
        E[s_k] = n_u q(r), \quad
        \operatorname{Var} s_k = n_u^2\,\frac{Q_k - q(r)^2}{d} + n_u\,\frac{\|q\|^2 - Q_k}{d^2},

        E[s_y] = 0, \quad
        \operatorname{Var} s_y = \frac{m_4 Q_y}{d} + \frac{n_u}{d}\Bigl(q(r)^2 + \frac{Q_k - q(r)^2}{d}\Bigr)
        + \frac{\|q\|^2 - Q_k - Q_y}{d^2}.

    The term :math:`n_u q(r)^2/d` is the signal leaking into class ``y`` through
    :math:`u_y^\top u_k \neq 0`. All scores of one token are uncorrelated (every cross moment is odd in
    some embedding). Returns ``(mean, var_true, var_wrong)`` of shapes ``(N,)``, ``(N,)``, ``(N, M)``
    (``var_wrong[r, f*(r)]`` is 0 and unused).

    Parameters
    ----------
    q : array, shape ``(N,)``
        The association weights :math:`q(x)`, finite.
    labels : array of int, shape ``(N,)``
        The classes :math:`f^*(x)`, integers in :math:`[0, M-1]`.
    d : int
        Embedding dimension, :math:`\ge 1`.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).
    kind : {"gaussian", "sphere"}
        Law of the embeddings: :math:`\mathcal N(0, I/d)` or uniform on the unit sphere.
    output_norm : float
        :math:`n_u \ge 0`, the squared norm of the true class's output embedding.
    """
    d = check.positive_int("d", d)
    kind = check.choice("kind", kind, ("gaussian", "sphere"))
    output_norm = check.real("output_norm", output_norm, low=0.0)
    q = check.real_array("q", q)
    labels = check.int_array("labels", labels, minimum=0)
    M = int(labels.max()) + 1 if M is None else check.positive_int("M", M)
    if q.ndim != 1 or q.size != labels.size or not np.all(np.isfinite(q)):
        raise ValueError(f"q must be a finite 1-D array of length {labels.size} (one weight per token)")
    if labels.max() >= M:
        raise ValueError(f"labels must lie in [0, M-1] with M={M}")
    check.budget("q, M", nbytes=32.0 * labels.size * M, formula="three float64 arrays of N x M")
    m4 = 1 + 2 / d if kind == "gaussian" else 1.0
    n_u = output_norm
    try:
        with np.errstate(over="ignore", invalid="ignore"):
            class_q2 = np.bincount(labels, weights=q**2, minlength=M)
            total, own = class_q2.sum(), class_q2[labels]
            var_true = n_u**2 * (own - q**2) / d + n_u * (total - own) / d**2
            var_wrong = (m4 * class_q2[None, :] + n_u * (q**2 + (own - q**2) / d)[:, None]) / d \
                + (total - own[:, None] - class_q2[None, :]) / d**2
    except OverflowError:  # n_u**2 of a Python float
        var_true = var_wrong = np.full(1, np.inf)
    if not (np.all(np.isfinite(var_true)) and np.all(np.isfinite(var_wrong))):
        raise ValueError(f"q, output_norm: the score variances exceed the float64 range (about 1.8e308) for "
                         f"output_norm={output_norm} and max |q| = {np.abs(q).max():.3g}")
    var_wrong[np.arange(labels.size), labels] = 0.0
    return n_u * q, np.maximum(var_true, 0.0), np.maximum(var_wrong, 0.0)


def predicted_error(q, p, labels, d_grid, M: int | None = None, *, kind: str = "gaussian",
                    norm_nodes: int = 8) -> np.ndarray:
    r"""Expected population error from the Gaussian model of interference, for each ``d`` of ``d_grid``.

    Given the true class's output norm :math:`n_u`, each token's scores are modelled as independent
    Gaussians with the moments of :func:`score_moments`, :math:`s_k \sim \mathcal{N}(n_u q(r), \sigma_k^2)`,
    :math:`s_y \sim \mathcal{N}(0, \sigma_y^2)`; the positive factor :math:`n_u` is then averaged over its
    exact law (:math:`\chi^2_d/d` for Gaussian embeddings, by Gauss-Laguerre quadrature with
    ``norm_nodes`` nodes; 1 on the sphere), because a Gaussian stand-in would let the signal change sign:

    .. math::
        P(f_W(r) = f^*(r)) = E_{n_u} \int \varphi(z) \prod_{y \neq k}
        \Phi\!\left(\frac{n_u q(r) + \sigma_k z}{\sigma_y}\right) dz,
        \qquad \mathcal{E} \approx \sum_r p(r)\,\bigl(1 - P(f_W(r) = f^*(r))\bigr).

    A tie (e.g. all scores 0) counts as an error, as in :func:`assocmem.memory.population_error`.
    ``q`` is ``(N,)`` or ``(len(d_grid), N)``. No embedding is drawn; chapter 2 compares it with
    simulation across ``d``, ``alpha`` and schemes.

    Parameters
    ----------
    q : array, shape ``(N,)`` or ``(len(d_grid), N)``
        The association weights :math:`q(x)` (one vector for every ``d``, or one per ``d``).
    p : array, shape ``(N,)``
        The token probabilities :math:`p(x)`.
    labels : array of int, shape ``(N,)``
        The classes :math:`f^*(x)`, integers in :math:`[0, M-1]`.
    d_grid : int or array of int
        Embedding dimensions.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).
    kind : {"gaussian", "sphere"}
        Law of the embeddings: :math:`\mathcal N(0, I/d)` or uniform on the unit sphere.
    norm_nodes : int
        Gauss-Laguerre nodes for the average over :math:`n_u` (Gaussian embeddings), :math:`\ge 1`.

    Returns
    -------
    numpy.ndarray, shape ``(len(d_grid),)``
        :math:`\mathcal E` per ``d``.
    """
    p, d_grid = _probabilities(p), _grid(d_grid)
    q = _weights_per_d(q, p.size, d_grid.size)
    kind = check.choice("kind", kind, ("gaussian", "sphere"))
    labels = check.int_array("labels", labels, minimum=0)
    _quadrature_budget(check.positive_int("norm_nodes", norm_nodes), p.size, labels, M, d_grid.size, kind)
    return np.array([p @ token_error_probability(q[j], labels, int(d), M, kind=kind, norm_nodes=norm_nodes)
                     for j, d in enumerate(d_grid)])


def token_error_probability(q, labels, d: int, M: int | None = None, *, kind: str = "gaussian",
                            norm_nodes: int = 8) -> np.ndarray:
    r"""Per-token probability of a wrong recall at dimension ``d`` in the Gaussian model of
    :func:`predicted_error` (shape ``(N,)``); :func:`predicted_error` is its ``p``-weighted sum.

    Parameters
    ----------
    q : array, shape ``(N,)``
        The association weights :math:`q(x)`.
    labels : array of int, shape ``(N,)``
        The classes :math:`f^*(x)`, integers in :math:`[0, M-1]`.
    d : int
        Embedding dimension, :math:`\ge 1`.
    M : int, optional
        Number of classes (default ``max(labels) + 1``).
    kind : {"gaussian", "sphere"}
        Law of the embeddings: :math:`\mathcal N(0, I/d)` or uniform on the unit sphere.
    norm_nodes : int
        Gauss-Laguerre nodes for the average over :math:`n_u` (Gaussian embeddings), :math:`\ge 1`.
    """
    labels = check.int_array("labels", labels, minimum=0)
    norm_nodes = check.positive_int("norm_nodes", norm_nodes)
    d = check.positive_int("d", d)
    kind = check.choice("kind", kind, ("gaussian", "sphere"))
    _quadrature_budget(norm_nodes, labels.size, labels, M, 1, kind)
    correct = 0.0
    for n_u, weight in zip(*_output_norm_law(d, kind, norm_nodes), strict=True):
        mean, var_true, var_wrong = score_moments(q, labels, d, M, kind=kind, output_norm=n_u)
        correct = correct + weight * _probability_correct(mean, var_true, var_wrong, labels)
    return 1 - correct


def _quadrature_budget(nodes: int, N: int, labels: np.ndarray, M, grid_points: int, kind: str) -> None:
    """Refuse, naming ``norm_nodes``, a quadrature whose eigenproblem or score sums are beyond the bounds."""
    nodes = nodes if kind == "gaussian" else 1
    classes = int(labels.max()) + 1 if M is None else check.positive_int("M", M)
    check.budget("norm_nodes", nbytes=24.0 * nodes**2 + 16.0 * N * classes,
                 work=grid_points * (10.0 * nodes**3 + nodes * N * classes * 4.0 * _Z.size),
                 formula="a norm_nodes x norm_nodes eigenproblem, and per node N x M x quadrature points")


def _output_norm_law(d: int, kind: str, nodes: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Nodes and weights for :math:`E f(\|u\|^2)`: Gauss-Laguerre for :math:`\chi^2_d/d`, a
    Gamma(d/2, 2/d) law (Golub-Welsch, so the weights stay finite for large d); the node 1 on the sphere."""
    if kind == "sphere":
        return np.ones(1), np.ones(1)
    shape, k = d / 2, np.arange(1, nodes)
    jacobi = np.diag(2 * np.arange(nodes) + shape) + np.diag(np.sqrt(k * (k + shape - 1)), 1)
    x, vectors = np.linalg.eigh(jacobi, UPLO="U")
    return 2 * x / d, vectors[0] ** 2


def _probability_correct(mean, var_true, var_wrong, labels) -> np.ndarray:
    r""":math:`E_z \prod_{y \ne k} \Phi((\mu + \sigma_k z)/\sigma_y)` per token (quadrature on ``_Z``).

    Tokens sharing their moments (e.g. all unstored tokens of one class) are computed once."""
    moments = np.column_stack([labels, mean, var_true, var_wrong])
    unique, inverse = np.unique(moments, axis=0, return_inverse=True)
    labels, mean, var_true, var_wrong = unique[:, 0].astype(np.int64), unique[:, 1], unique[:, 2], unique[:, 3:]
    true_scores = mean[:, None] + np.sqrt(var_true)[:, None] * _Z[None, :]          # (tokens, Z)
    product = np.ones_like(true_scores)
    sigma_wrong = np.sqrt(var_wrong)
    for y in range(var_wrong.shape[1]):
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = true_scores / sigma_wrong[:, y][:, None]
        ratio = np.nan_to_num(ratio, nan=-np.inf)                                   # 0/0: a tie, lost
        product *= np.where((labels == y)[:, None], 1.0, special.ndtr(ratio))
    return (product @ _Z_WEIGHTS)[inverse.ravel()]


def _probabilities(p) -> np.ndarray:
    p = check.real_array("p", p)
    if p.ndim != 1 or p.size == 0 or not np.all(np.isfinite(p)) or p.min() < 0:
        raise ValueError("p must be a non-empty 1-D array of finite non-negative probabilities")
    return p


def _grid(d_grid) -> np.ndarray:
    return check.int_array("d_grid", d_grid).astype(np.float64)


def _weights_per_d(q, N: int, G: int) -> np.ndarray:
    q = check.real_array("q", q)
    if q.ndim == 3 and q.shape[0] == 1:
        q = q[0]
    if q.ndim == 1:
        q = np.broadcast_to(q, (G, q.size))
    if q.shape != (G, N) or not np.all(np.isfinite(q)):
        raise ValueError(f"q must be finite with shape (N,) or (len(d_grid), N) = ({G}, {N}), got {q.shape}")
    return q
