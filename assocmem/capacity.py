r"""How much a d x d memory holds: optimised linear memories against additive ones (chapter 7).

The additive memories of chapters 2–3 write :math:`W = \sum_x q(x)\, u_{f^*(x)} e_x^\top`. An
*optimised* memory is any :math:`W \in \mathbb{R}^{d\times d}` chosen for the task, with the same fixed
random embeddings. Its scores are :math:`s_y(x) = u_y^\top W e_x`. Writing :math:`U^\top = Q R` (thin QR,
``Q`` of size ``d x r``, :math:`r = \min(d, M)`), :math:`s_y(x) = a_y^\top Z e_x` with :math:`a_y` the
columns of ``R`` and :math:`Z = Q^\top W` an arbitrary ``r x d`` matrix (:math:`W = Q Z` reaches it).

- :func:`stores_exactly` decides exactly, by a linear program, whether some ``W`` recalls every one of
  ``N`` tokens: :math:`(a_{f^*(x)} - a_y)^\top Z e_x \ge 1` for all ``x`` and ``y != f*(x)`` (the
  margin 1 is no loss: a strictly feasible ``Z`` can be scaled), and returns the memory (a max-margin
  style certificate).
- :func:`largest_stored` finds the largest ``N`` whose first ``N`` tokens are all stored, by bisection
  (storage of a prefix is monotone: fewer tokens are fewer constraints).
- :func:`optimised_memory` trains ``W`` to convergence by full-batch cross-entropy on a weighting of the
  tokens (Adam, through :func:`assocmem.training.train`), for the error under a Zipf law.
- :func:`memory_heatmap` and :func:`learned_embeddings_vs_M` are two figures of [CDB24];
  :func:`phase_cell` scores every storage scheme of the book on one cell of the phase diagram.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import optimize, sparse

from . import _validate as check
from . import finite_sample, memory, training, zipf
from .sweep import experiment
from .theory import capacity as theory

__all__ = ["score_basis", "stores_exactly", "largest_stored", "largest_stored_experiment", "additive_largest_stored",
           "lp_memory_error", "optimised_memory", "theorem1_comparison", "minimax_comparison",
           "zipf_error_experiment", "memory_heatmap",
           "learned_embeddings_vs_M", "learned_experiment", "PHASE_SCHEMES", "phase_cell",
           "phase_experiment", "phase_winners", "overflow_agreement"]


# --------------------------------------------------------------------------- exact storage by LP

def score_basis(U: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    r"""The factorisation :math:`U^\top = Q R` behind the reduction :math:`s_y(x) = a_y^\top Z e_x`.

    Parameters
    ----------
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings of one memory.

    Returns
    -------
    Q : numpy.ndarray, shape ``(d, r)``
        Orthonormal basis of the span of the :math:`u_y` (:math:`r = \min(d, M)`).
    A : numpy.ndarray, shape ``(M, r)``
        Rows :math:`a_y` with :math:`u_y = Q a_y`.
    """
    U = _matrix("U", U)
    Q, R = np.linalg.qr(U.T)                         # U^T = Q R, Q (d, r), R (r, M)
    return Q, R.T


def stores_exactly(E: torch.Tensor, U: torch.Tensor, labels, *, tol: float = 1e-7) -> tuple[bool, np.ndarray]:
    r"""Whether some d x d memory recalls all ``N`` tokens, and the max-margin memory.

    Solves the bounded linear program (HiGHS) of the largest margin in the box :math:`|Z_{ij}| \le 1`,

    .. math:: t^* = \max_{Z,\ t \le 1} t \quad \text{s.t.} \quad
              (a_{f^*(x)} - a_y)^\top Z\, e_x \ge t \quad \forall x,\ \forall y \neq f^*(x),

    in the :math:`r d` unknowns of ``Z`` (:func:`score_basis`). Some ``W`` puts every true class strictly
    ahead exactly when :math:`t^* > 0` (scale any such ``Z`` into the box); the problem is always
    feasible (``Z = 0``, ``t = 0``), so the solver never has to certify infeasibility. Cost: an LP with
    :math:`N(M-1)` rows.

    Parameters
    ----------
    E : torch.Tensor, shape ``(N, d)``
        Input embeddings.
    U : torch.Tensor, shape ``(M, d)``
        Output embeddings.
    labels : array_like of int, shape ``(N,)``
        Classes :math:`f^*(x)`.
    tol : float
        Margins at or below ``tol`` count as not stored (solver precision).

    Returns
    -------
    stored : bool
    W : numpy.ndarray of shape ``(d, d)``
        The max-margin memory :math:`W = Q Z^*` (zero when ``t* <= tol``).
    """
    E, U = _matrix("E", E), _matrix("U", U)
    if E.shape[1] != U.shape[1]:
        raise ValueError(f"E and U must share d, got {E.shape} and {U.shape}")
    labels = check.labels("labels", labels, E.shape[0], U.shape[0])
    tol = check.real("tol", tol, low=0.0)
    N, d = E.shape
    M = U.shape[0]
    if M == 1:                                       # one class: every token is trivially right
        return True, np.zeros((d, d))
    Q, A = score_basis(torch.as_tensor(U))
    r = Q.shape[1]
    rivals = np.array([[y for y in range(M) if y != label] for label in labels])   # (N, M-1)
    diff = A[labels][:, None, :] - A[rivals]                                       # (N, M-1, r)
    # row (x, y): t - kron(a_f - a_y, e_x) . vec(Z) <= 0; unknowns (vec(Z), t), objective -t
    rows = (diff[:, :, :, None] * E[:, None, None, :]).reshape(N * (M - 1), r * d)
    constraints = sparse.hstack([-sparse.csr_array(rows), np.ones((N * (M - 1), 1))], format="csr")
    objective = np.zeros(r * d + 1)
    objective[-1] = -1.0
    result = optimize.linprog(objective, A_ub=constraints, b_ub=np.zeros(N * (M - 1)),
                              bounds=[(-1.0, 1.0)] * (r * d) + [(None, 1.0)], method="highs-ipm")
    if result.status != 0:
        raise RuntimeError(f"the storage LP did not finish: {result.message}")
    margin = -result.fun
    if margin <= tol:
        return False, np.zeros((d, d))
    return True, Q @ result.x[:-1].reshape(r, d)


def largest_stored(d: int, M: int, seed: int, *, N_max: int | None = None, kind: str = "gaussian") -> dict:
    r"""The largest ``N`` such that some d x d memory recalls the first ``N`` tokens exactly.

    One draw (``seed``) of :func:`assocmem.memory.memory_embeddings` for ``N_max`` tokens; labels
    :math:`f^*(x) = x \bmod M`; bisection on prefixes with :func:`stores_exactly` (a prefix of a
    storable set is storable, so the answer is exact for this draw).

    Parameters
    ----------
    d : int
        Dimension.
    M : int
        Number of classes.
    seed : int
        Embedding draw.
    N_max : int, optional
        Largest ``N`` tried (default twice :func:`assocmem.theory.capacity.counting_capacity`, plus 8).
    kind : {"gaussian", "sphere"}
        Embedding law.

    Returns
    -------
    dict
        ``N_star`` (the answer), ``censored`` (True when even ``N_max`` was stored), ``solves``.
    """
    d, M = check.positive_int("d", d), check.positive_int("M", M)
    seed = check.seed("seed", seed)
    kind = check.choice("kind", kind, memory.KINDS)
    if N_max is None:
        N_max = int(2 * theory.counting_capacity(d, max(M, 2))[0]) + 8
    N_max = check.positive_int("N_max", N_max)
    E, U = memory.memory_embeddings(N_max, M, d, seed, kind=kind, dtype=torch.float64)
    E, U = E[0].numpy(), U[0].numpy()
    labels = zipf.mod_labels(N_max, M)
    solves = 0

    def ok(n: int) -> bool:
        nonlocal solves
        solves += 1
        return stores_exactly(torch.as_tensor(E[:n]), torch.as_tensor(U), labels[:n])[0]

    if ok(N_max):
        return {"N_star": N_max, "censored": True, "solves": solves}
    low, high = 0, N_max                                # low stored (0 trivially), high not
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if ok(mid) else (low, mid)
    return {"N_star": low, "censored": False, "solves": solves}


@experiment("capacity_largest_stored")
def largest_stored_experiment(d: int = 16, M: int = 5, M_equals_d: bool = False, trials: int = 1, seed: int = 0,
                              kind: str = "gaussian") -> list[dict]:
    """The largest exactly stored ``N`` of :func:`largest_stored` for ``trials`` embedding draws.

    Parameters
    ----------
    d : int
        Dimension.
    M : int
        Number of classes (ignored when ``M_equals_d``).
    M_equals_d : bool
        Set ``M = d``: as many outputs as dimensions, the regime where the rank of ``UW`` is ``d``.
    trials : int
        Draws, seeds ``seed .. seed + trials - 1``.
    seed : int
        First seed.
    kind : {"gaussian", "sphere"}
        Embedding law.

    Returns
    -------
    list of dict
        One row per draw: ``trial``, ``classes`` (the ``M`` used), ``N_star``, ``censored``, ``solves``.
    """
    d, M = check.positive_int("d", d), check.positive_int("M", M)
    if not isinstance(M_equals_d, bool):
        raise TypeError(f"M_equals_d must be a bool, got {M_equals_d!r}")
    trials, seed = check.positive_int("trials", trials), check.seed("seed", seed)
    kind = check.choice("kind", kind, memory.KINDS)
    classes = d if M_equals_d else M
    return [{"trial": k, "classes": classes, **largest_stored(d, classes, seed + k, kind=kind)}
            for k in range(trials)]


def additive_largest_stored(d: int, M: int, seed: int, *, N_max: int | None = None,
                            kind: str = "gaussian") -> dict:
    r"""The additive memory's counterpart of :func:`largest_stored`: the largest ``N`` such that
    :math:`W_n = \sum_{x \le n} u_{f^*(x)} e_x^\top` (``q = 1`` on the first ``n`` tokens) recalls all ``n``
    of them for every ``n <= N``, on the draw of :func:`largest_stored` (same ``seed``).

    Scores of the prefix memory come from the Gram matrices, :math:`s_y(r) = \sum_{x \le n}
    (u_y^\top u_{f^*(x)})(e_x^\top e_r)`; a tie counts as a miss.

    Parameters
    ----------
    d, M : int
        Dimension and classes.
    seed : int
        Embedding draw.
    N_max : int, optional
        Largest ``N`` tried (default ``4 d + 8``).
    kind : {"gaussian", "sphere"}
        Embedding law.

    Returns
    -------
    dict
        ``N_star`` and ``censored`` (True when all ``N_max`` prefixes were recalled).
    """
    d, M = check.positive_int("d", d), check.positive_int("M", M)
    seed = check.seed("seed", seed)
    kind = check.choice("kind", kind, memory.KINDS)
    N_max = check.positive_int("N_max", 4 * d + 8 if N_max is None else N_max)
    E, U = memory.memory_embeddings(N_max, M, d, seed, kind=kind, dtype=torch.float64)
    E, U = E[0].numpy(), U[0].numpy()
    labels = zipf.mod_labels(N_max, M)
    rows = (U @ U.T)[:, labels] * 1.0                          # (M, N): u_y^T u_f(x)
    gram = E @ E.T
    for n in range(1, N_max + 1):
        scores = rows[:, :n] @ gram[:n, :n]                    # (M, n)
        true = scores[labels[:n], np.arange(n)]
        scores[labels[:n], np.arange(n)] = -np.inf
        if np.any(scores.max(0) >= true):
            return {"N_star": n - 1, "censored": False}
    return {"N_star": N_max, "censored": True}


def lp_memory_error(d: int, M: int, N: int, alpha: float, seed: int) -> dict:
    r"""Population error over ``N`` Zipf tokens of the LP memory that stores the longest storable
    prefix of the most frequent tokens exactly (:func:`largest_stored` on the same draw).

    The unstored tokens are scored by that memory as they fall (right about ``1/M`` of the time).

    Parameters
    ----------
    d, M, N : int
        Dimension, classes and tokens.
    alpha : float
        Zipf exponent.
    seed : int
        Embedding draw (the same as :func:`largest_stored` with ``N_max = N``).

    Returns
    -------
    dict
        ``N_star``, ``error``.
    """
    d, M, N = check.positive_int("d", d), check.positive_int("M", M), check.positive_int("N", N)
    alpha = check.real("alpha", alpha, low=0.0)
    found = largest_stored(d, M, seed, N_max=N)
    E, U = memory.memory_embeddings(N, M, d, seed, dtype=torch.float64)
    labels, p = zipf.mod_labels(N, M), zipf.zipf_probs(N, alpha)
    n = found["N_star"]
    W = stores_exactly(E[0, :n], U[0], labels[:n])[1] if n else np.zeros((d, d))
    scores = torch.as_tensor(U[0].numpy() @ W @ E[0].numpy().T)[None]     # (1, M, N)
    return {"N_star": n, "error": float(training.scores_error(scores, labels, p)[0])}


# --------------------------------------------------------------------------- cross-entropy memories

def optimised_memory(E: torch.Tensor, U: torch.Tensor, labels, weights, *, steps: int = 1000,
                     lr: float = 0.05) -> dict:
    r"""``R`` memories trained by full-batch cross-entropy on a weighting of the tokens.

    Minimises :math:`\sum_x w(x)\, \ell(x)`, :math:`\ell(x) = -\log \mathrm{softmax}_y(a_y^\top Z e_x)`,
    with Adam (torch's, default betas) from :math:`Z = 0` in the reduced coordinates of
    :func:`score_basis` (:math:`W = QZ` has the same scores, and ``Z`` is ``min(M, d) x d``). Runs are
    independent: the summed loss separates and Adam acts entry by entry. ``w = p`` gives the population
    loss, ``w`` uniform the loss of storing every token equally, ``w = n_x / T`` the empirical loss of
    ``T`` samples.

    Parameters
    ----------
    E, U : torch.Tensor, shapes ``(R, N, d)`` and ``(R, M, d)``
        Embeddings of each run.
    labels : array_like of int, shape ``(N,)``
        Classes.
    weights : array_like, shape ``(N,)`` or ``(R, N)``
        Non-negative token weights (one row per run, or one for all).
    steps : int
        Full-batch steps.
    lr : float
        Adam step size.

    Returns
    -------
    dict
        ``scores`` (R, M, N), ``W`` (R, d, d) and ``loss`` (R,) at the end.
    """
    if not (isinstance(E, torch.Tensor) and isinstance(U, torch.Tensor)) or E.ndim != 3 or U.ndim != 3 \
            or E.shape[0] != U.shape[0] or E.shape[2] != U.shape[2]:
        raise ValueError("E and U must be tensors of shapes (R, N, d) and (R, M, d)")
    E, U = check.tensor("E", E), check.tensor("U", U)
    R, N, d = E.shape
    M = U.shape[1]
    labels = torch.as_tensor(check.labels("labels", labels, N, M))
    steps = check.positive_int("steps", steps)
    lr = check.real("lr", lr, low=0.0, low_open=True)
    check.budget("steps, E, U", work=steps * (check.STEP_WORK + 6.0 * R * (min(M, d) + M) * d * N),
                 formula="steps x runs x (min(M, d) + M) x d x N")
    w = check.real_array("weights", weights)
    if w.shape not in ((N,), (1, N), (R, N)) or w.min() < 0:
        raise ValueError(f"weights must be finite and >= 0 with shape (N,) or (R, N) = ({R}, {N}), "
                         f"got shape {w.shape}")
    w = np.broadcast_to(w, (R, N))
    E, U = E.to(torch.float64), U.to(torch.float64)
    w = torch.as_tensor(w.copy())
    Q, Rm = torch.linalg.qr(U.transpose(1, 2))                          # U^T = Q R per run
    A = Rm.transpose(1, 2)                                               # (R, M, r)
    features = E.transpose(1, 2)                                         # (R, d, N)
    Z = torch.zeros(R, A.shape[2], d, dtype=torch.float64, requires_grad=True)
    adam = torch.optim.Adam([Z], lr=lr)
    index = labels.expand(R, 1, N)

    def losses():
        scores = A @ Z @ features                                        # (R, M, N)
        return scores, -(torch.log_softmax(scores, dim=1).gather(1, index)[:, 0] * w).sum(-1)

    for _ in range(steps):
        adam.zero_grad()
        losses()[1].sum().backward()
        adam.step()
    with torch.no_grad():
        scores, loss = losses()
        return {"scores": scores, "W": Q @ Z, "loss": loss}


@experiment("capacity_zipf_error")
def zipf_error_experiment(d: int = 16, ratio: int = 4, M: int = 5, alpha: float = 2.0, trials: int = 4,
                          seed: int = 0, steps: int = 2000, lr: float = 0.05) -> list[dict]:
    """Error under a Zipf law of ``N = ratio * d`` tokens for optimised and additive memories.

    The schemes: the cross-entropy memory trained on ``p`` (:func:`optimised_memory`), the LP memory of
    the most frequent tokens (:func:`lp_memory_error`), the best threshold (the ``P`` of a log grid of
    40 values in ``1..N`` with the smallest mean over these trials), ``q = p`` and ``q = 1``; all on the
    same embedding draws (seeds ``seed + k``), labels ``x mod M``.

    Parameters
    ----------
    d : int
        Dimension.
    ratio : int
        ``N / d``.
    M : int
        Number of classes.
    alpha : float
        Zipf exponent.
    trials : int
        Draws.
    seed : int
        First seed.
    steps : int
        Full-batch Adam steps of the cross-entropy memory.
    lr : float
        Its step size.

    Returns
    -------
    list of dict
        One row per trial and scheme: ``N``, ``trial``, ``scheme``, ``error`` (and ``N_star`` for the LP
        memory, ``P`` for the threshold).
    """
    d, M = check.positive_int("d", d), check.positive_int("M", M)
    ratio = check.positive_int("ratio", ratio)
    alpha = check.real("alpha", alpha, low=0.0)
    trials, seed = check.positive_int("trials", trials), check.seed("seed", seed)
    steps = check.positive_int("steps", steps)
    N = ratio * d
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    seeds = [seed + k for k in range(trials)]
    E, U = training.run_embeddings(seeds, N, M, d, dtype=torch.float64)
    trained = optimised_memory(E, U, labels, p, steps=steps, lr=lr)
    rows = [{"trial": k, "scheme": "optimised (cross-entropy)", "error": float(e)}
            for k, e in enumerate(training.scores_error(trained["scores"], labels, p).numpy())]
    rows += [{"trial": k, "scheme": "optimised (LP, top tokens)", **lp_memory_error(d, M, N, alpha, s)}
             for k, s in enumerate(seeds)]
    P_grid = memory.log_grid(1, N, 40)
    errors_P = torch.cat(memory.population_errors(list(memory.threshold_weights(N, P_grid)), p, labels, E, U),
                         dim=1).numpy()                                          # (trials, len(P_grid))
    best = int(errors_P.mean(0).argmin())
    rows += [{"trial": k, "scheme": "threshold (best P)", "error": float(e), "P": int(P_grid[best])}
             for k, e in enumerate(errors_P[:, best])]
    for name, q in (("q = p", p), ("q = 1", np.ones(N))):
        errors = memory.population_error(q, p, labels, E, U)[:, 0].numpy()
        rows += [{"trial": k, "scheme": name, "error": float(e)} for k, e in enumerate(errors)]
    return [{"N": N, **row} for row in rows]


# --------------------------------------------------------------------------- the theorems against measurement

def theorem1_comparison(*, N: int = 1000, M: int = 5, alpha: float = 2.0, d_grid=(10, 30, 100, 300, 1000),
                        rho: float = 0.5, fraction: float = 1 / 8, trials: int = 20, seed: int = 0,
                        gammas=None):
    r"""Theorem 1 of [CDB24] against the measured error of three additive schemes.

    Schemes: :math:`q = p`, :math:`q = p^\rho` and :math:`q = \mathbf 1[x \le \lfloor \text{fraction}
    \cdot d \rfloor]`, labels :math:`x \bmod M`. The error is measured with Gaussian embeddings (the
    setting of the lower bound) and on the sphere (the setting of the upper bound), ``trials`` nested
    draws each (:func:`assocmem.memory.error_scans`). The upper bound is the smallest over ``gammas``.

    Parameters
    ----------
    N, M : int
        Tokens and classes.
    alpha : float
        Zipf exponent.
    d_grid : sequence of int
        Increasing dimensions.
    rho : float
        Power of the middle scheme.
    fraction : float
        Threshold :math:`P = \min(\lfloor \text{fraction} \cdot d \rfloor, N)` (a threshold at or beyond
        ``N`` keeps every token).
    trials, seed : int
        Draws.
    gammas : sequence of float, optional
        Values of :math:`\gamma \in (0, 1]` over which the upper bound is minimised (default 20 evenly
        spaced from 0.05 to 1).

    Returns
    -------
    pandas.DataFrame
        One row per scheme and ``d``: ``gaussian_mean``, ``gaussian_se``, ``sphere_mean``,
        ``sphere_se``, ``lower``, ``upper``, ``shape`` (:func:`assocmem.theory.capacity.theorem1_shape`
        with ``c = 1``).
    """
    import pandas as pd

    from .theory import capacity as bounds

    N, M, trials, seed = (check.positive_int(n, v) if n != "seed" else check.seed(n, v)
                          for n, v in (("N", N), ("M", M), ("trials", trials), ("seed", seed)))
    alpha = check.real("alpha", alpha, low=0.0)
    rho = check.real("rho", rho, low=0.0, low_open=True)
    fraction = check.real("fraction", fraction, low=0.0, low_open=True)
    d_grid = check.int_array("d_grid", d_grid)
    if gammas is None:
        gammas = np.linspace(0.05, 1.0, 20)
    else:
        gammas = np.atleast_1d(check.real_array("gammas", gammas))
        if gammas.ndim != 1 or np.any((gammas <= 0) | (gammas > 1)):
            raise ValueError(f"gammas must be a 1-D sequence in (0, 1], got {check._short(gammas.tolist())}")
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    thresholds = np.minimum(np.floor(fraction * d_grid), N).astype(np.int64)   # P >= N stores every token
    schemes = {"q = p": p, f"q = p^{rho:g}": p ** rho,
               f"q = 1[x <= d/{1 / fraction:g}]": memory.threshold_weights(N, thresholds)}
    measured = {kind: memory.error_scans([q if q.ndim == 1 else q[None] for q in schemes.values()], p, labels, M,
                                         d_grid, seed, trials=trials, kind=kind)
                for kind in ("gaussian", "sphere")}
    rows = []
    for index, (name, q) in enumerate(schemes.items()):
        for j, d in enumerate(d_grid):
            q_d = q if q.ndim == 1 else q[j]
            row = {"scheme": name, "d": int(d)}
            for kind, errors in measured.items():
                e = errors[index][:, j].numpy()
                row[f"{kind}_mean"], row[f"{kind}_se"] = float(e.mean()), float(e.std(ddof=1) / np.sqrt(trials))
            row["lower"] = float(bounds.theorem1_lower(q_d, p, labels, [d], M)[0])
            row["upper"] = float(min(bounds.theorem1_upper(q_d, p, labels, [d], M, gamma=g)[0] for g in gammas))
            row["shape"] = float(bounds.theorem1_shape(q_d, p, labels, [d], M)[0])
            rows.append(row)
    return pd.DataFrame(rows)


def minimax_comparison(*, N: int = 1000, M: int = 5, alpha: float = 2.0, d_grid=(10, 20, 50, 100, 200),
                       T_grid=(10, 100, 1000, 10000), trials: int = 10, seed: int = 0):
    r"""The minimax lower bound against the best thresholded memory built from ``T`` samples.

    For each ``(d, T)``: the error of keeping the ``P`` most frequent seen tokens, at the ``P`` of a log
    grid with the smallest mean over ``trials`` (:func:`assocmem.finite_sample.threshold_error`), and
    :func:`assocmem.theory.capacity.minimax_lower_bound` for a memory of :math:`B = d \log_2 M` bits
    (room for ``d`` labels written verbatim).

    Parameters
    ----------
    N, M : int
        Tokens and classes.
    alpha : float
        Zipf exponent.
    d_grid, T_grid : sequence of int
        Dimensions (increasing) and sample sizes.
    trials, seed : int
        Draws.

    Returns
    -------
    pandas.DataFrame
        One row per ``(d, T)``: ``best_P``, ``error`` (mean at the best ``P``), ``bound``, ``ratio``.
    """
    import pandas as pd

    from .theory import capacity as bounds

    N, M = check.positive_int("N", N), check.positive_int("M", M)
    trials, seed = check.positive_int("trials", trials), check.seed("seed", seed)
    alpha = check.real("alpha", alpha, low=0.0)
    d_grid, T_grid = check.int_array("d_grid", d_grid), check.int_array("T_grid", T_grid)
    p = zipf.zipf_probs(N, alpha)
    P_grid = memory.log_grid(1, N, 25)
    rows = []
    for T in T_grid:
        errors = finite_sample.threshold_error(N, alpha, d_grid, P_grid, int(T), M=M, trials=trials, seed=seed)
        mean = errors.mean(0)                                            # (len(P_grid), len(d_grid))
        for j, d in enumerate(d_grid):
            best = int(mean[:, j].argmin())
            bound = bounds.minimax_lower_bound(p, M, int(T), float(d * np.log2(M)))
            rows.append({"d": int(d), "T": int(T), "best_P": int(P_grid[best]), "error": float(mean[best, j]),
                         "bound": bound, "ratio": float(mean[best, j] / bound)})
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- the two CDB24 figures

def memory_heatmap(*, N: int = 10, M: int = 5, d: int = 10, T: int = 1000, alpha: float = 1.0,
                   rho: float = 1.0, seed: int = 0) -> dict:
    r"""The memory heat map of [CDB24]: :math:`\mathrm{softmax}_y(u_y^\top W e_x)` for the memory
    :math:`W = \sum_x \hat p(x)^\rho\, u_{f^*(x)} e_x^\top` built from ``T`` samples, with the target.

    Parameters
    ----------
    N, M, d, T : int
        Tokens, classes, dimension and samples.
    alpha : float
        Zipf exponent.
    rho : float
        Power of the empirical frequencies (``rho = 0``: every seen token with weight 1).
    seed : int
        Seed of the samples and of the embeddings.

    Returns
    -------
    dict
        ``probabilities`` (M, N) softmax of the scores, ``target`` (M, N) one-hot of :math:`f^*`,
        ``q`` (N,) the weights, ``error`` the population error.
    """
    N, M, d = check.positive_int("N", N), check.positive_int("M", M), check.positive_int("d", d)
    T, seed = check.positive_int("T", T), check.seed("seed", seed)
    alpha = check.real("alpha", alpha, low=0.0)
    rho = check.real("rho", rho, low=0.0)
    counts = zipf.token_counts(zipf.sample_tokens(N, alpha, T, seed), N)
    q = finite_sample.empirical_power_weights(counts, rho)
    labels, p = zipf.mod_labels(N, M), zipf.zipf_probs(N, alpha)
    E, U = memory.memory_embeddings(N, M, d, seed, dtype=torch.float64)
    scores = memory.scores(q, labels, E, U)[0]                            # (M, N)
    target = np.zeros((M, N))
    target[labels, np.arange(N)] = 1.0
    return {"probabilities": torch.softmax(scores, dim=0).numpy(), "target": target, "q": q,
            "error": float(memory.population_error(q, p, labels, E, U)[0, 0])}


def learned_embeddings_vs_M(M: int, *, N: int = 100, d: int = 2, alpha: float = 2.0, lr: float = 0.1,
                            batch_size: int = 1000, epochs: int = 1000, trials: int = 1,
                            seed: int = 0) -> np.ndarray:
    r"""[CDB24]'s learned E, W, U at small ``d``: the final population error against the number of
    classes ``M``, for ``trials`` seeds.

    Each run draws :math:`E, U \sim \mathcal{N}(0, I/d)` and :math:`W_0 = 0`, and trains all three by
    Adam (default betas) at step ``lr`` on ``epochs`` batches of ``batch_size`` fresh Zipf samples, labels
    :math:`f^*(x) = x \bmod M`. With ``M = 1`` every prediction is right (the error is 0).

    Parameters
    ----------
    M : int
        Number of classes.
    N, d : int
        Tokens and dimension.
    alpha : float
        Zipf exponent.
    lr : float
        Adam step size.
    batch_size, epochs : int
        Samples per step and number of steps.
    trials : int
        Seeds ``seed .. seed + trials - 1``.
    seed : int
        First seed.

    Returns
    -------
    numpy.ndarray, shape ``(trials,)``

    Raises
    ------
    ValueError
        Before any work, when a size is beyond the cost bound (``assocmem._validate.budget``: tokens
        ``trials x batch_size x epochs``, work ``epochs x trials x (batch_size + N + M) x d x (M + d)``).
        After training, naming ``lr``, when a run diverged (non-finite scores: Adam moves every entry
        by about ``lr`` per step, so a huge ``lr`` overflows float32): a diverged memory has no
        error to report, and a number standing for it would be a silent lie.
    """
    M, N, d = check.positive_int("M", M), check.positive_int("N", N), check.positive_int("d", d)
    alpha = check.real("alpha", alpha, low=0.0)
    lr = check.real("lr", lr, low=0.0, low_open=True)
    batch_size, epochs = check.positive_int("batch_size", batch_size), check.positive_int("epochs", epochs)
    trials, seed = check.positive_int("trials", trials), check.seed("seed", seed)
    check.budget("M, N, d, batch_size, epochs, trials",
                 nbytes=16.0 * trials * batch_size * epochs + 32.0 * trials * (N + M + d) * d,
                 work=epochs * (check.STEP_WORK + 10.0 * trials * (batch_size + N + M) * d * (M + d)),
                 formula="int64 tokens of trials x batch_size x epochs; Adam on E, W, U per step")
    seeds = [seed + k for k in range(trials)]
    E, U = training.run_embeddings(seeds, N, M, d)
    tokens = np.stack([zipf.sample_tokens(N, alpha, batch_size * epochs, s) for s in seeds])
    trained = training.train(E, U, zipf.mod_labels(N, M), zipf.zipf_probs(N, alpha), lr=lr, tokens=tokens,
                             batch_size=batch_size, optimizer="adam", learn_embeddings=True)
    errors = trained.errors[:, -1]
    diverged = ~np.isfinite(errors)
    if diverged.any():
        raise ValueError(f"lr={lr:g}: training diverged (non-finite scores) in {int(diverged.sum())} of {trials} "
                         f"trial(s), seeds {[s for s, bad in zip(seeds, diverged, strict=True) if bad][:5]}; "
                         "use a smaller lr")
    return errors


@experiment("capacity_learned_vs_M")
def learned_experiment(M: int = 5, N: int = 100, d: int = 2, alpha: float = 2.0, lr: float = 0.1,
                       batch_size: int = 1000, epochs: int = 1000, trials: int = 4, seed: int = 0) -> list[dict]:
    """:func:`learned_embeddings_vs_M` as a sweep point.

    Parameters
    ----------
    M : int
        Number of classes.
    N, d : int
        Tokens and dimension.
    alpha : float
        Zipf exponent.
    lr : float
        Adam step size.
    batch_size, epochs : int
        Samples per step and number of steps.
    trials : int
        Seeds ``seed .. seed + trials - 1``.
    seed : int
        First seed.

    Returns
    -------
    list of dict
        One row per trial: ``trial``, ``error`` (final population error).
    """
    errors = learned_embeddings_vs_M(M, N=N, d=d, alpha=alpha, lr=lr, batch_size=batch_size, epochs=epochs,
                                     trials=trials, seed=seed)
    return [{"trial": k, "error": float(e)} for k, e in enumerate(errors)]


# --------------------------------------------------------------------------- the phase diagram

PHASE_SCHEMES = ("q = 1 (seen)", "p^0.25", "p^0.5", "p^1", "top P (P/d best)", "SGD", "sign descent",
                 "layer norm", "optimised W")
TOP_FRACTIONS = (1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0)


def phase_cell(*, N: int = 100, d: int = 10, T: int = 1024, alpha: float = 1.0, M: int = 5, trials: int = 4,
               seed: int = 0, lr: float = 10.0, batch_size: int = 16, opt_steps: int = 500) -> list[dict]:
    r"""Every storage scheme of the book on one cell ``(d, T, alpha)``, on shared draws.

    Trial ``k`` draws embeddings (:func:`assocmem.training.run_embeddings`, seed ``seed + k``) and ``T``
    Zipf samples (:func:`assocmem.zipf.sample_tokens`, same seed); every scheme uses them:

    - additive, from the counts: ``q = 1`` on seen tokens, :math:`\hat p^\rho` for
      :math:`\rho \in \{1/4, 1/2, 1\}`, and the ``P`` most frequent seen tokens with :math:`P/d` in
      :data:`TOP_FRACTIONS` (the row of each fraction is returned; :func:`phase_winners` keeps the best);
    - trained on one pass over the samples (:func:`assocmem.training.train`, :math:`W_0` with
      :math:`\mathcal N(0, 1/d)` entries as in the reference grid): SGD at step ``lr`` and batch
      ``batch_size``, sign descent at step ``lr / d`` (the reference's scaling), SGD with layer norm;
    - the optimised ``W``: full-batch Adam on the empirical loss :math:`\sum_x \hat p(x)\ell(x)`
      (:func:`optimised_memory`, ``opt_steps`` steps).

    Parameters
    ----------
    N, d, T, M : int
        Tokens, dimension, samples, classes (``T`` a multiple of ``batch_size``).
    alpha : float
        Zipf exponent.
    trials : int
        Draws.
    seed : int
        First seed.
    lr : float
        Step size of the one-pass runs.
    batch_size : int
        Their batch size.
    opt_steps : int
        Full-batch steps of the optimised memory.

    Returns
    -------
    list of dict
        One row per trial and scheme: ``trial``, ``scheme``, ``error`` (population error under ``p``),
        and ``fraction`` for the top-P rows.
    """
    N, d, T, M = (check.positive_int(n, v) for n, v in (("N", N), ("d", d), ("T", T), ("M", M)))
    alpha = check.real("alpha", alpha, low=0.0)
    trials, seed = check.positive_int("trials", trials), check.seed("seed", seed)
    lr = check.real("lr", lr, low=0.0, low_open=True)
    batch_size, opt_steps = check.positive_int("batch_size", batch_size), check.positive_int("opt_steps", opt_steps)
    if T % batch_size:
        raise ValueError(f"T={T} must be a multiple of batch_size={batch_size}")
    r = min(M, d)
    check.budget("N, d, T, M, trials, opt_steps",
                 nbytes=16.0 * trials * T + 8.0 * trials * (4 * (N + M) * d + 3 * M * N),
                 work=(3 * T // batch_size + opt_steps) * check.STEP_WORK
                 + trials * (12.0 * T * (M + d) * d + 6.0 * opt_steps * (r + M) * d * N + 20.0 * N * M * d),
                 formula="trials x (three one-pass runs over T samples + opt_steps full-batch steps over N tokens)")
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)
    seeds = [seed + k for k in range(trials)]
    E, U = training.run_embeddings(seeds, N, M, d, dtype=torch.float64)
    tokens = np.stack([zipf.sample_tokens(N, alpha, T, s) for s in seeds])
    counts = zipf.token_counts(tokens, N)
    rows = []

    def add(name: str, errors, **extra) -> None:
        rows.extend({"trial": k, "scheme": name, "error": float(e), **extra} for k, e in enumerate(errors))

    additive = [("q = 1 (seen)", memory.seen_weights(counts))]
    additive += [(f"p^{rho:g}", finite_sample.empirical_power_weights(counts, rho)) for rho in (0.25, 0.5, 1.0)]
    for name, q in additive:
        add(name, _additive_error(q, p, labels, E, U))
    for fraction in TOP_FRACTIONS:
        q = memory.top_seen_weights(counts, max(1, int(fraction * d)))
        add("top P (P/d best)", _additive_error(q, p, labels, E, U), fraction=fraction)
    W0 = training.initial_memory(seeds, d, init="random", dtype=torch.float64)
    one_pass = [("SGD", "sgd", lr, False), ("sign descent", "sign", lr / d, False), ("layer norm", "sgd", lr, True)]
    for name, optimizer, rate, layer_norm in one_pass:
        trained = training.train(E, U, labels, p, lr=rate, tokens=tokens, batch_size=batch_size,
                                 optimizer=optimizer, layer_norm=layer_norm, W0=W0)
        add(name, trained.errors[:, -1])
    optimised = optimised_memory(E, U, labels, counts / T, steps=opt_steps)
    add("optimised W", training.scores_error(optimised["scores"], labels, p).numpy())
    return rows


@experiment("capacity_phase")
def phase_experiment(N: int = 100, d: int = 10, T: int = 1024, alpha: float = 1.0, M: int = 5, trials: int = 4,
                     seed: int = 0, lr: float = 10.0, batch_size: int = 16, opt_steps: int = 500) -> list[dict]:
    """:func:`phase_cell` as a sweep point (one cell of the phase diagram).

    Parameters
    ----------
    N, d, T, M : int
        Tokens, dimension, samples and classes.
    alpha : float
        Zipf exponent.
    trials : int
        Draws.
    seed : int
        First seed.
    lr : float
        Step size of the one-pass runs.
    batch_size : int
        Their batch size.
    opt_steps : int
        Full-batch steps of the optimised memory.

    Returns
    -------
    list of dict
        The rows of :func:`phase_cell`: ``trial``, ``scheme``, ``error`` (and ``fraction``).
    """
    return phase_cell(N=N, d=d, T=T, alpha=alpha, M=M, trials=trials, seed=seed, lr=lr,
                      batch_size=batch_size, opt_steps=opt_steps)


def phase_winners(table, *, n_boot: int = 1000, seed: int = 0):
    r"""The winning scheme of each cell of a phase-diagram table and how sure the win is.

    For each cell (the columns ``d, T, alpha``), the top-P rows are reduced to the best fraction (by
    mean over trials), then the scheme with the smallest mean error wins. Schemes whose means equal the
    smallest exactly (for instance several at zero error) tie: the winner is then ``"tie"`` and
    ``tied`` lists them. ``confidence`` is the share of ``n_boot`` bootstrap resamples of the trials
    (the same resample for every scheme: the draws are shared) whose smallest mean is attained by the
    winner (by one of the tied schemes for a tie); a boundary between two cells is uncertain where either
    cell's confidence is low.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`phase_cell` with columns ``d, T, alpha, trial, scheme, error`` (and ``fraction``).
    n_boot : int
        Bootstrap resamples.
    seed : int
        Seed of the resampling.

    Returns
    -------
    pandas.DataFrame
        One row per cell: ``d, T, alpha, winner, tied, confidence, runner_up`` and ``gap`` (the best
        mean outside the winners minus the winner's mean).
    """
    import pandas as pd

    table = check.table("table", table, ("d", "T", "alpha", "trial", "scheme", "error"))
    n_boot, seed = check.positive_int("n_boot", n_boot), check.seed("seed", seed)
    # the resamples of one cell: indices and means, n_boot x (trials + schemes), trials x schemes <= rows
    check.budget("n_boot", nbytes=16.0 * n_boot * max(len(table), 1), work=2.0 * n_boot * max(len(table), 1),
                 formula="n_boot x rows of the table")
    rng = np.random.default_rng(seed)
    out = []
    for (d, T, alpha), cell in table.groupby(["d", "T", "alpha"], sort=True):
        top = cell[cell.scheme == "top P (P/d best)"]
        if len(top):
            best_fraction = top.groupby("fraction").error.mean().idxmin()
            cell = pd.concat([cell[cell.scheme != "top P (P/d best)"], top[top.fraction == best_fraction]])
        errors = cell.pivot_table(index="trial", columns="scheme", values="error")     # (trials, schemes)
        values, names = errors.to_numpy(), np.array(errors.columns)
        means = values.mean(0)
        best = means == means.min()
        others = np.where(best, np.inf, means)
        picks = rng.integers(0, values.shape[0], size=(n_boot, values.shape[0]))
        boot = values[picks].mean(1)                                                  # (n_boot, schemes)
        held = (boot[:, best].min(1) <= boot.min(1)).mean()
        out.append({"d": d, "T": T, "alpha": alpha, "winner": names[best][0] if best.sum() == 1 else "tie",
                    "tied": " = ".join(names[best]), "confidence": float(held),
                    "runner_up": names[int(others.argmin())] if np.isfinite(others).any() else "",
                    "gap": float(others.min() - means.min()) if np.isfinite(others).any() else 0.0})
    return pd.DataFrame(out)


def overflow_agreement(table, *, N: int, capacity: float = 1.3, n_boot: int = 1000, seed: int = 0):
    r"""Chapter 3's overflow prediction tested on the phase diagram: storing every seen token against
    thresholding.

    Keeps the rows ``"q = 1 (seen)"`` and ``"top P (P/d best)"`` of a :func:`phase_cell` table, finds the
    winner of each cell (:func:`phase_winners`), and predicts ``"q = 1 (seen)"`` when
    :math:`d \ge K(T)/c` (:func:`assocmem.theory.finite_sample.overflow_dimension`, ``c = capacity``),
    thresholding otherwise. A tie (thresholding at :math:`P = d` keeps every seen token) is consistent
    with the prediction "seen", since both then store the same tokens.

    Parameters
    ----------
    table : pandas.DataFrame
        Rows of :func:`phase_cell` (columns ``d, T, alpha, trial, scheme, error, fraction``).
    N : int
        Number of tokens of the table.
    capacity : float
        Equal-weight associations per dimension, ``c`` (chapter 3 measures about 1.3).
    n_boot, seed : int
        Bootstrap of :func:`phase_winners`.

    Returns
    -------
    pandas.DataFrame
        :func:`phase_winners`' columns plus ``d_star`` (the predicted boundary at that ``T``),
        ``predicted`` and ``consistent``.
    """
    from .theory import finite_sample as fs_theory

    table = check.table("table", table, ("d", "T", "alpha", "trial", "scheme", "error"))
    N = check.positive_int("N", N)
    capacity = check.real("capacity", capacity, low=0.0, low_open=True)
    pair = table[table.scheme.isin(["q = 1 (seen)", "top P (P/d best)"])]
    winners = phase_winners(pair, n_boot=n_boot, seed=seed)
    winners["d_star"] = [fs_theory.overflow_dimension(N, float(a), [int(T)], capacity=capacity)[0]
                         for a, T in zip(winners.alpha, winners["T"], strict=True)]
    winners["predicted"] = np.where(winners.d >= winners.d_star, "q = 1 (seen)", "top P (P/d best)")
    winners["consistent"] = (winners.winner == winners.predicted) | (
        (winners.winner == "tie") & (winners.predicted == "q = 1 (seen)"))
    return winners


# --------------------------------------------------------------------------- internals

def _additive_error(q: np.ndarray, p, labels, E: torch.Tensor, U: torch.Tensor) -> np.ndarray:
    """Population error of per-trial additive weights ``q`` (trials, N); an empty memory ties (error 1)."""
    errors = memory.population_error(q, p, labels, E, U)[:, 0].numpy()
    return np.where(q.any(axis=-1), errors, 1.0)


def _matrix(name: str, value) -> np.ndarray:
    if not isinstance(value, (torch.Tensor, np.ndarray)):
        raise TypeError(f"{name} must be a 2-D tensor or array, got {type(value).__name__}")
    array = value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)
    array = array.astype(np.float64)
    if array.ndim != 2 or 0 in array.shape or not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be a finite 2-D array with no empty axis, got shape {array.shape}")
    return array

