r"""Predict the population error of a trained memory without training it (chapter 8).

Three pieces of the book, composed:

1. **Counts** (chapter 3). One pass over ``T`` fresh samples in ``S = T / B`` batches of ``B``: token
   ``x`` is seen :math:`n_x` times, :math:`n \sim \mathrm{Multinomial}(T, p)`.
2. **The decoupled map** (chapter 4). With quasi-orthogonal embeddings each token's scores move alone.
   For token ``x`` write its hidden vector :math:`h_x = W e_x` in the coordinates of the output
   embeddings: ``a`` on its class, ``b`` on each of the ``M - 1`` others (the symmetric form), and a
   residual of norm :math:`\rho` orthogonal to every :math:`u_y` (the part :math:`W_0 e_x` of a random
   initial memory, :math:`\rho_0 = 1`; 0 for :math:`W_0 = 0`). With layer norm the scores are
   :math:`r\,(a, b, \dots)`, :math:`r = (a^2 + (M-1) b^2 + \rho^2 + 10^{-6})^{-1/2}` (:math:`r = 1`
   without), the softmax residual is :math:`g = (-(1-s), (1-s)/(M-1), \dots)` and the gradient in
   :math:`h` is :math:`\partial h = r\,(g - r^2 h\,(h\cdot g))` (``g`` alone without layer norm).
   A batch with :math:`c` copies of ``x`` moves it by

   .. math::
       \text{SGD:}\quad \Delta h = -\frac{\gamma c}{B}\,\partial h, \qquad
       \text{Adam (paper's, sign descent at } \gamma/d):\quad
       \Delta h = -\gamma\kappa\,\phi_t\,\frac{c\,\partial h / B}{\nu_t},

   where, for sign descent, :math:`\nu_t` is the Frobenius norm of the batch's whole residual table
   :math:`\Gamma` (the batch's tokens pull against each other), :math:`\kappa = \sqrt{2/\pi}` is the
   correlation of :math:`\operatorname{sign}(G)` with a Gaussian :math:`G = U^\top \Gamma E`
   (:math:`E[\operatorname{sign}(G)\,X] = \sqrt{2/\pi}\,\mathrm{Cov}(G, X)/\sigma_G`), and
   :math:`\phi_t = \sigma_t / (\sigma_t + \epsilon)` with :math:`\sigma_t = \nu_t / d` the typical
   gradient entry shrinks the step of a saturated memory (Adam's :math:`\epsilon = 10^{-8}`). The rest of
   :math:`(\gamma/d)\operatorname{sign}(G)`, of squared norm :math:`\gamma^2\phi_t^2 (1 - \kappa^2)`, is
   noise; its rows are signs of combinations of the ``M`` output embeddings, so it lies mostly in their
   span, and it adds to every score a variance :math:`\gamma^2 (1-\kappa^2) \phi_t^2 / (M d)` per step,
   summed over the steps (a random walk; the replay of item 4 lets later visits correct it). Without layer norm and
   for SGD this is :func:`assocmem.theory.dynamics.minibatch_q` in its symmetric form (the tests check
   it). The stored weight of ``x`` is its learned margin :math:`q(x) = a - b`.

   The weight depends on the count :math:`n_x` and on when the visits come; the predictor spreads the
   ``n`` visits evenly over the ``S`` steps (:math:`\lfloor (t+1) n / S \rfloor - \lfloor t n / S\rfloor`
   at step ``t``) and, for sign descent, takes :math:`\nu_t` from mean-field tokens that receive
   :math:`B p(x)` copies per step.
3. **Gaussian interference** (chapter 2). Given the weights, the error averaged over embeddings is
   :func:`assocmem.theory.interference.token_error_probability` summed with ``p``. The scores of a random
   :math:`W_0` (variance :math:`1/d`) and the sign noise enter as one extra association per class, of
   weight :math:`w` with :math:`w^2 (1 + (M-1)/d)/d` equal to that variance (an association's
   interference, to leading order in :math:`1/d`).
4. **Visits that see the interference** (``_replayed_miss``). A static Gaussian picture puts the final
   weight :math:`q(n_x)` against the interference and lets a frequent token lose whenever the
   interference exceeds it. Gradient descent does not: every visit of ``x`` is a full ``M``-class step
   from its *current* scores, interference included, and it pushes down the wrong class the interference
   raised (the symmetric map spreads the push evenly). So every seen token's visits are replayed from a
   draw :math:`\xi \sim \mathcal N(0, \mathrm{diag}(\sigma_k^2, \sigma_y^2))` of its interference (the
   moments of :func:`assocmem.theory.interference.score_moments` for the final weights and the
   :math:`W_0` carrier), on the schedule of its counts (``c`` copies of a step per batch). Without layer
   norm a visit never turns a right token wrong (it raises the own class and lowers every other), so the
   replay stops once every token with visits left is right; with layer norm the step is
   :math:`h \mapsto \lambda h - \eta c\, r g` with :math:`\lambda = 1 + \eta c\, r^3 (h \cdot g)`, which keeps
   the argmax while :math:`\lambda > 0`, and the replay stops once that holds too. For sign descent the
   replay follows the ``S`` steps with the mean-field batch norm :math:`\nu_t` and adds the sign noise of
   each step as it comes, so visits after it correct it and only the noise after a token's last visit
   stays. What the replay still ignores: the interference is drawn once, in place at the first visit (it
   is, for the frequent tokens that carry it, once the step is large), and a token's corrections do not
   feed back into the interference on the others (the coupling that lets an optimised memory store more
   than an outer-product sum at small ``d``).

The counts are drawn ``samples`` times (seeded); each draw gives an expected error :math:`\bar{\mathcal E}_k`
and, since tokens are recalled independently given the weights, an embedding variance
:math:`\sum_x p(x)^2 \pi_x (1 - \pi_x)`. The prediction is the mean over draws; the variance of one
run's error is the variance across draws plus the mean embedding variance; the band is
:math:`\text{mean} \pm z\,\sqrt{\mathrm{Var}/\text{trials} + \mathrm{Var}_k/\text{samples}}` for the mean
of ``trials`` runs, cut at 0 and 1.

Where it is exact, and where it is not: with orthonormal embeddings (``d >= N``) and :math:`W_0 = 0`
every seen token is recalled, whatever the optimiser, and the error is the unseen mass
:math:`\sum_x p(x)(1-p(x))^T` (``embeddings="orthonormal"``). With random embeddings it ignores
(i) the coupled corrections of gradient descent: a token's corrections move the interference on the others,
and a trained ``W`` is then no outer-product sum (at small ``d`` it fits more tokens than the map says), (ii) the
correlations between tokens through the shared output embeddings, (iii) for sign descent, everything
beyond the Gaussian picture of the sign (the batch's structure at small ``B``, correlations of the noise
across steps). Chapter 8 measures how much each costs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import special, stats

from .. import _validate as check
from .. import finite_sample, zipf
from . import interference

__all__ = ["RULES", "OPTIMIZERS", "SCHEMES", "CELL_KEYS", "Prediction", "predict_error", "stored_margins",
           "grid_cells", "calibration", "calibration_summary"]

OPTIMIZERS = ("sgd", "adam")
SCHEMES = finite_sample.SCHEMES
RULES = OPTIMIZERS + SCHEMES
KAPPA = float(np.sqrt(2 / np.pi))
ADAM_EPS = 1e-8
LAYER_NORM_EPS = 1e-6
_GRID_POINTS = 160
REPLAY_DRAWS = 64


@dataclass(frozen=True)
class Prediction:
    r"""Predicted error of a trained memory at each dimension of ``d``.

    Attributes
    ----------
    d : numpy.ndarray of int, shape ``(G,)``
        The dimensions.
    mean : numpy.ndarray, shape ``(G,)``
        Expected population error (over samples and embeddings).
    sd : numpy.ndarray, shape ``(G,)``
        Standard deviation of the error of one run (counts and embeddings).
    low, high : numpy.ndarray, shape ``(G,)``
        The central band at ``level`` for the mean of ``trials`` runs.
    level : float
        Coverage the band is meant to have.
    trials : int
        Number of runs whose mean error the band is for.
    """

    d: np.ndarray
    mean: np.ndarray
    sd: np.ndarray
    low: np.ndarray
    high: np.ndarray
    level: float
    trials: int

    def inside(self, measured) -> np.ndarray:
        """Whether each measured mean error (shape ``(G,)``) lies in the band.

        Parameters
        ----------
        measured : array, shape ``(G,)``
            Measured mean errors over ``trials`` runs, one per ``d``.

        Returns
        -------
        numpy.ndarray of bool, shape ``(G,)``
            ``low <= measured <= high`` per ``d``.
        """
        measured = np.asarray(measured, dtype=np.float64)
        return (measured >= self.low) & (measured <= self.high)


def predict_error(rule: str, d, T: int, *, lr: float | None = None, batch_size: int | None = None,
                  N: int = 100, M: int = 5, alpha: float = 2.0, layer_norm: bool = False,
                  init: str = "random", embeddings: str = "gaussian", trials: int = 1, level: float = 0.9,
                  ratio: float = 12.0, rho: float = 1.0, samples: int = 16, seed: int = 0) -> Prediction:
    r"""Expected population error of a memory trained on ``T`` samples, with a band, without training.

    Data: ``N`` tokens of Zipf law :math:`p(x) \propto x^{-\alpha}`, labels :math:`f_*(x) = x \bmod M`,
    input and output embeddings :math:`\mathcal N(0, I/d)`; the memory scores
    :math:`u_y^\top \mathrm{LN}(W e_x)`. See the module's notes for the derivation.

    Parameters
    ----------
    rule : {"sgd", "adam", "seen", "top", "empirical"}
        ``"sgd"``: one pass of mini-batch SGD on the mean cross-entropy, :math:`W \leftarrow W - \gamma\nabla`;
        ``"adam"``: the paper's Adam, torch's Adam with betas ``(0, 0)`` at step :math:`\gamma/d`
        (sign descent, :math:`\epsilon = 10^{-8}`); the hand-set schemes of chapter 3 built from the counts:
        ``"seen"`` (:math:`q = 1[n_x > 0]`), ``"top"`` (the :math:`\lfloor d/\text{ratio}\rfloor` most
        frequent seen tokens), ``"empirical"`` (:math:`q = \hat p^\rho`).
    d : int or sequence of int
        Embedding dimensions (each ``>= 1``).
    T : int
        Number of training samples (one pass).
    lr : float
        The step size :math:`\gamma`, in :math:`(0, 10^{100}]` (``"sgd"``, ``"adam"`` only).
    batch_size : int
        ``B``, a divisor of ``T`` (``"sgd"``, ``"adam"`` only).
    N, M : int
        Tokens and classes (``M >= 2``).
    alpha : float
        Zipf exponent, ``alpha >= 0``.
    layer_norm : bool
        The reference layer norm :math:`h / \sqrt{\|h\|^2 + 10^{-6}}` on :math:`W e_x` (optimisers only; it
        changes the dynamics, never the argmax).
    init : {"random", "zero"}
        :math:`W_0` with i.i.d. :math:`\mathcal N(0, 1/d)` entries (the paper's grid) or :math:`W_0 = 0`.
    embeddings : {"gaussian", "orthonormal"}
        Random embeddings, or orthonormal ones (needs ``d >= N`` and ``init="zero"``, and a rule whose
        weights vanish exactly on unseen tokens: not ``"top"``): then the error is the unseen mass,
        exactly, with its exact variance.
    trials : int
        The band is for the mean error of this many independent runs.
    level : float
        Coverage of the band, in ``(0, 1)``.
    ratio, rho : float
        Parameters of ``"top"`` and ``"empirical"``.
    samples : int
        Draws of the counts.
    seed : int
        Seed of those draws.

    Returns
    -------
    Prediction
    """
    rule = check.choice("rule", rule, RULES)
    d = check.int_array("d", d)
    T = check.positive_int("T", T)
    N = check.positive_int("N", N)
    M = check.positive_int("M", M, minimum=2)
    alpha = check.real("alpha", alpha, low=0.0)
    init = check.choice("init", init, ("random", "zero"))
    embeddings = check.choice("embeddings", embeddings, ("gaussian", "orthonormal"))
    trials = check.positive_int("trials", trials)
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    ratio = check.real("ratio", ratio, low=0.0, low_open=True)
    rho = check.real("rho", rho, low=0.0)
    samples = check.positive_int("samples", samples, minimum=2)
    seed = check.seed("seed", seed)
    if not isinstance(layer_norm, (bool, np.bool_)):
        raise TypeError(f"layer_norm must be a bool, got {layer_norm!r}")
    if rule in OPTIMIZERS:
        if lr is None or batch_size is None:
            raise ValueError(f"rule={rule!r} needs lr and batch_size")
        # the margins grow in proportion to lr: beyond 1e100 their squares leave float64's range
        lr = check.real("lr", lr, low=0.0, low_open=True, high=1e100)
        batch_size = check.positive_int("batch_size", batch_size)
        if T % batch_size:
            raise ValueError(f"batch_size must divide T={T}, got batch_size={batch_size}")
    elif lr is not None or batch_size is not None or layer_norm:
        raise ValueError(f"rule={rule!r} is a hand-set scheme: lr, batch_size and layer_norm do not apply")
    z = float(special.ndtri(0.5 + level / 2))
    _predict_budget(rule, d.size, T, batch_size, N, M, samples, embeddings)
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)

    if embeddings == "orthonormal":
        if d.min() < N or init != "zero" or rule == "top":
            raise ValueError("embeddings='orthonormal' needs every d >= N, init='zero' and a rule other than "
                             f"'top'; got min(d)={d.min()}, init={init!r}, rule={rule!r}")
        mean, var = _unseen_mass_moments(p, T)
        half = z * np.sqrt(var / trials)
        ones = np.ones(d.size)
        return Prediction(d, mean * ones, np.sqrt(var) * ones, np.clip(mean - half, 0, 1) * ones,
                          np.clip(mean + half, 0, 1) * ones, level, trials)

    counts = np.random.default_rng(seed).multinomial(T, p, size=samples)
    w0 = np.zeros(d.size) if init == "zero" else 1.0 / d
    noise, schedule = w0, None
    if rule in OPTIMIZERS:
        n_grid, margins, extra, schedule = _decoupled(rule, lr, batch_size, T, d.astype(np.float64), N, M, alpha,
                                                      layer_norm, init, _GRID_POINTS)
        noise = w0 + extra
        weights = np.stack([np.stack([np.interp(c, n_grid, margins[j]) for c in counts]) for j in range(d.size)])
    else:
        q = finite_sample.count_weights(counts, rule, d, ratio=ratio, rho=rho)
        weights = np.moveaxis(q, 1, 0) if rule == "top" else np.broadcast_to(q, (d.size,) + q.shape)

    means, variances = np.empty((d.size, samples)), np.empty((d.size, samples))
    lab = np.concatenate([labels, np.arange(M)])  # one carrier association per class (W0, sign noise)
    for j, dj in enumerate(d):
        dj = int(dj)
        miss = np.stack([interference.token_error_probability(_with_carrier(weights[j, k], noise[j], dj, M), lab,
                                                              dj, M)[:N] for k in range(samples)])
        if rule in OPTIMIZERS:  # every seen token's visits replayed from its interference (module notes, 4.)
            start = np.stack([_with_carrier(weights[j, k], w0[j], dj, M) for k in range(samples)])
            steps = None if schedule is None else tuple(part[:, j] for part in schedule)
            replayed = _replayed_miss(start, lab, counts, dj, M, lr, batch_size, T // batch_size, layer_norm,
                                      init, np.random.default_rng([seed, 2, dj]), adam=steps)
            miss = np.where(counts > 0, replayed, miss)
        means[j] = miss @ p
        variances[j] = (miss * (1 - miss)) @ p ** 2
    mean = means.mean(1)
    between = means.var(1, ddof=1)
    var_run = between + variances.mean(1)
    half = z * np.sqrt(var_run / trials + between / samples)
    return Prediction(d, mean, np.sqrt(var_run), np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1),
                      level, trials)


def stored_margins(rule: str, lr: float, batch_size: int, T: int, d, *, N: int = 100, M: int = 5,
                   alpha: float = 2.0, layer_norm: bool = False, init: str = "random",
                   grid_points: int = _GRID_POINTS):
    r"""The decoupled weight :math:`q(n)` of a token seen ``n`` times, for ``n`` on a grid of ``[0, T]``.

    Iterates the map of the module's notes over the ``S = T / B`` steps, for every ``n`` of the grid at
    once (``n`` visits spread evenly over the steps) and, for ``"adam"``, for mean-field copies of the
    ``N`` tokens that set the batch norm :math:`\nu_t`.

    Parameters
    ----------
    rule : {"sgd", "adam"}
        The optimiser (see :func:`predict_error`).
    lr : float
        :math:`\gamma`.
    batch_size : int
        ``B`` (divides ``T``).
    T : int
        Samples in the pass.
    d : int or sequence of int
        Dimensions; only ``"adam"`` depends on them (through :math:`\epsilon` and the noise).
    N, M, alpha : int, int, float
        The data law (for the mean-field tokens of ``"adam"``).
    layer_norm : bool
        Whether the scores go through layer norm.
    init : {"random", "zero"}
        Residual :math:`\rho_0 = 1` (random :math:`W_0`) or 0.
    grid_points : int
        Number of log-spaced counts (plus ``n = 0``).

    Returns
    -------
    n_grid : numpy.ndarray, shape ``(K,)``
        Increasing counts, ``n_grid[0] = 0``.
    margins : numpy.ndarray, shape ``(len(d), K)``
        :math:`q(n) = a - b`, the learned margin.
    noise : numpy.ndarray, shape ``(len(d),)``
        Variance the update adds to every score (0 for SGD).
    """
    rule = check.choice("rule", rule, OPTIMIZERS)
    lr = check.real("lr", lr, low=0.0, low_open=True)
    B = check.positive_int("batch_size", batch_size)
    T = check.positive_int("T", T)
    if T % B:
        raise ValueError(f"batch_size must divide T={T}, got batch_size={B}")
    d = check.int_array("d", d).astype(np.float64)
    N = check.positive_int("N", N)
    M = check.positive_int("M", M, minimum=2)
    alpha = check.real("alpha", alpha, low=0.0)
    init = check.choice("init", init, ("random", "zero"))
    grid_points = check.positive_int("grid_points", grid_points, minimum=2)
    if not isinstance(layer_norm, (bool, np.bool_)):
        raise TypeError(f"layer_norm must be a bool, got {layer_norm!r}")
    K = min(grid_points, T) + 1 + (N if rule == "adam" else 0)
    D = d.size if rule == "adam" else 1
    schedule_bytes = 16.0 * (T // B) * D if rule == "adam" else 0.0
    check.budget("T, batch_size, grid_points, d, N, M", nbytes=64.0 * D * K * M + schedule_bytes + 24.0 * grid_points,
                 work=(T // B) * (check.STEP_WORK + 40.0 * D * K * M),
                 formula="T / batch_size steps of (grid_points + N) tokens x M classes x len(d)")
    n_grid, margins, noise, _ = _decoupled(rule, lr, B, T, d, N, M, alpha, bool(layer_norm), init, grid_points)
    return n_grid, margins, noise


def _decoupled(rule, lr, B, T, d, N, M, alpha, layer_norm, init, grid_points):
    r"""The iteration of :func:`stored_margins` on validated input; also returns, for ``"adam"``, the
    mean-field batch's squared norm (without the token's own row) and :math:`\phi_t` at each step,
    shapes ``(S, len(d))`` (``None`` for SGD), which the replay of the visits uses."""
    S = T // B
    n_grid = np.unique(np.concatenate([[0], np.round(np.geomspace(1, T, grid_points)).astype(np.int64)]))
    p = zipf.zipf_probs(N, alpha)
    adam = rule == "adam"
    D = d.size if adam else 1
    K = n_grid.size + (N if adam else 0)
    h = np.zeros((D, K, M))
    res = np.full((D, K), 1.0 if init == "random" else 0.0)
    second_moment = B * p * (1 - p) + (B * p) ** 2  # E[c^2] of a token's batch count
    batch_norm2, phis = (np.empty((S, D)), np.empty((S, D))) if adam else (None, None)
    for t in range(S):
        grid_counts = (t + 1) * n_grid // S - t * n_grid // S
        c = np.concatenate([grid_counts, B * p]) if adam else grid_counts.astype(np.float64)
        dh, dres = _gradient(h, res, layer_norm)
        if adam:
            row2 = (dh ** 2).sum(-1) + dres ** 2
            others = second_moment @ row2[:, -N:].T / B ** 2                   # (D,) mean-field batch
            nu = np.sqrt(others[:, None] + (c / B) ** 2 * row2)                # with the token's own row
            sigma = np.sqrt(others) / d
            phi = sigma / (sigma + ADAM_EPS)
            batch_norm2[t], phis[t] = others, phi
            scale = lr * KAPPA * phi[:, None] * c[None, :] / (B * np.maximum(nu, 1e-300))
        else:
            scale = (lr / B) * c[None, :]
        h -= scale[..., None] * dh
        res -= scale * dres
    margins = (h[..., 0] - h[..., 1])[:, :n_grid.size]
    if adam:
        noise = lr ** 2 * (1 - KAPPA ** 2) * (phis ** 2).sum(0) / (M * d)
        schedule = (batch_norm2, phis)
    else:
        margins = np.broadcast_to(margins, (d.size, n_grid.size))
        noise, schedule = np.zeros(d.size), None
    return n_grid, np.ascontiguousarray(margins), noise, schedule


CELL_KEYS = ("rule", "d", "T", "batch_size", "lr", "layer_norm")


def grid_cells(runs):
    r"""Mean measured error of each cell of a training grid, one row per cell.

    Parameters
    ----------
    runs : pandas.DataFrame
        One row per run, with the columns of :func:`assocmem.training.optimization_grid`'s rows and
        configuration: ``optimizer`` (``"sgd"``; ``"adam"``, the paper's Adam at the nominal ``lr`` as in
        :func:`assocmem.training.load_grid`; or ``"sign"`` run at ``lr = gamma / d``, the same rule),
        ``d``, ``T``, ``batch_size``, ``lr``, ``layer_norm``, ``error`` (``nan`` for a diverged run), and
        optionally ``model`` (only ``"W"`` rows are kept: the predictor is for a trained ``W``).

    Returns
    -------
    pandas.DataFrame
        Columns :data:`CELL_KEYS` (``rule`` is ``"sgd"`` or ``"adam"``, ``lr`` is :math:`\gamma`), ``error``
        (mean over the finite runs), ``error_sd`` (their standard deviation), ``trials`` (their number) and
        ``diverged`` (runs left out).
    """
    runs = check.table("runs", runs)
    missing = {"optimizer", "d", "T", "batch_size", "lr", "layer_norm", "error"} - set(runs.columns)
    if missing:
        raise ValueError(f"runs lacks the columns {sorted(missing)}")
    if "model" in runs.columns:
        runs = runs[runs["model"] == "W"]
    unknown = set(runs["optimizer"]) - {"sgd", "adam", "sign"}
    if unknown:
        raise ValueError(f"runs['optimizer'] must be 'sgd', 'adam' or 'sign', got {sorted(unknown)}")
    table = runs.assign(rule=runs["optimizer"].map({"sgd": "sgd", "adam": "adam", "sign": "adam"}),
                        lr=np.where(runs["optimizer"] == "sign", runs["lr"] * runs["d"], runs["lr"]))
    table["lr"] = table["lr"].round(12)
    finite = table["error"].notna()
    grouped = table[finite].groupby(list(CELL_KEYS))["error"]
    cells = grouped.agg(error="mean", error_sd="std", trials="count").reset_index()
    lost = (~finite).groupby([table[k] for k in CELL_KEYS]).sum().rename("diverged").reset_index()
    return cells.merge(lost, on=list(CELL_KEYS), how="left")


def calibration(cells, *, level: float = 0.9, samples: int = 8, seed: int = 0, **data):
    r"""Predict every cell of a measured grid and compare: the calibration table of chapter 8.

    Parameters
    ----------
    cells : pandas.DataFrame
        Output of :func:`grid_cells` (columns :data:`CELL_KEYS`, ``error``, ``trials``).
    level : float
        Coverage of the band (for the mean of each cell's ``trials`` runs).
    samples, seed : int
        Passed to :func:`predict_error`.
    **data
        ``N``, ``M``, ``alpha``, ``init`` of the grid (the defaults of :func:`predict_error` otherwise).

    Returns
    -------
    pandas.DataFrame
        ``cells`` with ``predicted``, ``predicted_sd``, ``low``, ``high``, ``inside`` (the measured mean lies
        in the band), ``samples`` and ``ratio`` (measured / predicted).
    """
    cells = check.table("cells", cells, ("rule", "d", "T", "batch_size", "lr", "layer_norm", "trials", "error"))
    out = []
    keys = ["rule", "T", "batch_size", "lr", "layer_norm", "trials"]
    for (rule, T, B, lr, ln, trials), group in cells.groupby(keys, sort=False):
        d = np.sort(group["d"].to_numpy())
        pred = predict_error(rule, d, int(T), lr=float(lr), batch_size=int(B), layer_norm=bool(ln),
                             trials=int(trials), level=level, samples=samples, seed=seed, **data)
        rows = group.set_index("d").loc[d].reset_index()
        out.append(rows.assign(predicted=pred.mean, predicted_sd=pred.sd, low=pred.low, high=pred.high,
                               inside=pred.inside(rows["error"].to_numpy()), samples=samples))
    table = pd.concat(out, ignore_index=True)
    table["ratio"] = table["error"] / table["predicted"]
    return table.sort_values(list(CELL_KEYS), ignore_index=True)


def calibration_summary(table, by=None):
    r"""Fraction of cells inside their band and median ratio measured / predicted, overall or per group.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`calibration`.
    by : str or list of str, optional
        Columns to group by (e.g. ``"d"`` or ``["rule", "d"]``).

    Returns
    -------
    pandas.DataFrame
        Columns ``cells``, ``inside`` (fraction), ``median_ratio`` (and the ``by`` columns).
    """
    table = check.table("table", table, ("inside", "ratio"))
    columns = [] if by is None else [by] if isinstance(by, str) else by
    if not isinstance(columns, list) or not all(isinstance(c, str) and c in table.columns for c in columns):
        raise ValueError(f"by must be None, a column of table or a list of them, got {check._short(by)}")
    if table.empty:
        raise ValueError("table has no cells")

    def summary(group):
        return pd.Series({"cells": len(group), "inside": group["inside"].mean(),
                                            "median_ratio": group["ratio"].median()})
    if by is None:
        return summary(table).to_frame().T
    return table.groupby(by).apply(summary, include_groups=False).reset_index()


def _with_carrier(q: np.ndarray, variance: float, d: int, M: int) -> np.ndarray:
    """The weights ``q`` followed by ``M`` carrier associations (one per class) whose interference has
    the given variance per score: weight :math:`w` with :math:`w^2 (1 + (M-1)/d)/d` equal to it."""
    return np.concatenate([q, np.full(M, np.sqrt(variance * d / (1 + (M - 1) / d)))])


def _replayed_miss(q, labels, counts, d: int, M: int, lr: float, B: int, S: int, layer_norm: bool, init: str, rng,
                   *, adam=None, draws: int = REPLAY_DRAWS) -> np.ndarray:
    r"""Miss probability of every token when its visits start from its interference (module notes, 4.).

    ``q`` (shape ``(samples, N + M)``, the final weights and the carriers, classes ``labels``) sets the
    interference :math:`\xi \sim \mathcal N(0, \mathrm{diag}(\sigma_k^2, \sigma_y^2))` of
    :func:`assocmem.theory.interference.score_moments`; ``draws`` Gaussian draws per token and count draw
    (``counts``, shape ``(samples, N)``), draw ``i`` at the ``(i + 1/2)/draws`` quantile of the squared norm
    :math:`n_u \sim \chi^2_d/d` of the true class's output embedding, which scales the variances and the
    token's own-class steps (the average over :math:`n_u` of the static model). Token ``x`` gets
    :math:`\min(n_x, S)` steps of ``c`` copies (its ``n_x`` visits spread evenly over the ``S`` steps).
    SGD (``adam=None``): each moves ``h`` by :math:`-(\gamma c / B)\,\partial h`; a token leaves the replay
    once no step it has left can change its argmax. Sign descent (``adam=(batch_norm2, phi)`` from
    :func:`_decoupled`, shapes ``(S,)``): the step of the map at the visit's step ``t``, with the token's own
    row in :math:`\nu_t`, after the sign noise of the steps since its last visit (variance
    :math:`\gamma^2 (1-\kappa^2)\phi_t^2 / (M d)` per score and step); the noise after its last visit is
    added at the end. Returns shape ``(samples, N)``: per token, the fraction
    of draws whose own class is not strictly first."""
    samples, N = counts.shape
    own = labels[:N]
    others = (own[:, None] + np.arange(1, M)[None, :]) % M
    # The squared norm n_u of the true class's output embedding, chi^2_d / d, one stratum per draw: it scales
    # the token's own-class steps, and the interference variances are quadratics in it (exact from 3 nodes).
    n_u = stats.gamma.ppf((np.arange(draws) + 0.5) / draws, d / 2, scale=2 / d)
    var = np.empty((3, samples, N, M))
    for node in range(3):
        for k in range(samples):
            _, var_true, var_wrong = interference.score_moments(q[k], labels, d, M, output_norm=float(node))
            var[node, k, :, 0] = var_true[:N]
            var[node, k, :, 1:] = np.take_along_axis(var_wrong[:N], others, 1)
    a = (var[2] - 2 * var[1] + var[0]) / 2
    b = var[1] - var[0] - a
    nu_ = n_u[None, :, None, None]
    sd = np.sqrt(np.maximum(a[:, None] * nu_ ** 2 + b[:, None] * nu_ + var[0][:, None], 0))
    seen = np.broadcast_to(counts[:, None, :] > 0, (samples, draws, N))
    k_idx, i_idx, x_idx = np.nonzero(seen)                  # one entry per (count draw, draw, seen token)
    h = rng.standard_normal((k_idx.size, M)) * sd[k_idx, i_idx, x_idx]
    res = np.full(k_idx.size, 1.0 if init == "random" else 0.0)
    gain = np.ones((k_idx.size, M))
    gain[:, 0] = n_u[i_idx]
    n = counts[k_idx, x_idx]
    K = np.minimum(n, S)                                    # steps with copies of the token, c copies each
    wrong = np.zeros(k_idx.size, dtype=bool)
    live = np.arange(k_idx.size)
    if adam is not None:
        batch_norm2, phi = adam
        cumulative = np.concatenate([[0.0], np.cumsum(lr ** 2 * (1 - KAPPA ** 2) * phi ** 2 / (M * d))])
        last = np.zeros(k_idx.size, dtype=np.int64)         # noise up to this step is already added
    for v in range(int(K.max(initial=0))):
        nv, Kv = n[live], K[live]
        c = (v + 1) * nv // Kv - v * nv // Kv
        hv, rv = h[live], res[live]
        if adam is not None:                                # the sign noise since the last visit, then the step
            t = np.where(nv >= S, v, ((v + 1) * S + nv - 1) // nv - 1)
            hv += np.sqrt(cumulative[t] - cumulative[last[live]])[:, None] * rng.standard_normal(hv.shape)
            last[live] = t
        dh, dres = _gradient(hv, rv, layer_norm)
        if adam is None:
            scale = (lr / B) * c
        else:
            nu = np.sqrt(batch_norm2[t] + (c / B) ** 2 * ((dh ** 2).sum(-1) + dres ** 2))
            scale = lr * KAPPA * phi[t] * c / (B * np.maximum(nu, 1e-300))
        hv -= scale[:, None] * gain[live] * dh
        rv -= scale * dres
        done = Kv <= v + 1
        if adam is None:                                    # no step left can change the argmax
            risky = hv[:, 1:].max(-1) >= hv[:, 0]
            if layer_norm:
                risky |= _stretch(hv, rv, (lr / B) * -(-nv // Kv)) <= 0
            done |= ~risky
        else:                                               # the noise after the last visit
            hv[done] += (np.sqrt(cumulative[S] - cumulative[t[done]])[:, None]
                         * rng.standard_normal((int(done.sum()), M)))
        h[live], res[live] = hv, rv
        wrong[live[done]] = hv[done, 1:].max(-1) >= hv[done, 0]
        live = live[~done]
        if not live.size:
            break
    miss = np.zeros((samples, draws, N))
    miss[k_idx, i_idx, x_idx] = wrong
    return miss.mean(1)


def _stretch(h, res, step):
    r"""The factor :math:`\lambda = 1 + s\, r^3 (h \cdot g)` that a layer-norm step of size ``step`` puts
    on ``h`` (module notes, 4.): the argmax survives the step while it is positive."""
    r = 1.0 / np.sqrt((h ** 2).sum(-1) + res ** 2 + LAYER_NORM_EPS)
    z = r[..., None] * h
    g = np.exp(z - z.max(-1, keepdims=True))
    g /= g.sum(-1, keepdims=True)
    g[..., 0] -= 1.0
    return 1.0 + step * r ** 3 * (h * g).sum(-1)


def _predict_budget(rule: str, D: int, T: int, B, N: int, M: int, samples: int, embeddings: str) -> None:
    """Refuse, before any work, a :func:`predict_error` call beyond the machine (``check.budget``)."""
    if embeddings == "orthonormal":
        check.budget("N", nbytes=48.0 * N * N, work=20.0 * N * N, formula="three N x N tables")
        return
    nbytes = 24.0 * D * samples * N + 64.0 * samples * N * M
    work = D * samples * (check.STEP_WORK + 400.0 * (N + M) * M)
    if rule in OPTIMIZERS:
        S = T // B
        K = min(_GRID_POINTS, T) + 1 + N
        nbytes += 64.0 * D * K * M + 16.0 * S * D + 64.0 * samples * REPLAY_DRAWS * N * M
        work += S * (check.STEP_WORK + 40.0 * D * K * M) + D * S * (check.STEP_WORK + 60.0 * samples
                                                                    * REPLAY_DRAWS * N * M)
    check.budget("T, batch_size, d, N, M, samples", nbytes=nbytes, work=work,
                 formula="T / batch_size steps of the map and of the replay of samples x N tokens")


def _gradient(h, res, layer_norm: bool):
    r"""Gradient of one token's cross-entropy in its hidden vector: ``h`` holds its ``M`` class coordinates
    (its own class first), ``res`` the norm of its part orthogonal to every :math:`u_y`. Returns
    :math:`r(g - r^2 h\,(h \cdot g))` and its residual component with layer norm, ``(g, 0)`` without."""
    r = 1.0 / np.sqrt((h ** 2).sum(-1) + res ** 2 + LAYER_NORM_EPS) if layer_norm else np.ones_like(res)
    z = r[..., None] * h
    g = np.exp(z - z.max(-1, keepdims=True))
    g /= g.sum(-1, keepdims=True)
    g[..., 0] -= 1.0
    if not layer_norm:
        return g, np.zeros_like(res)
    dot = (h * g).sum(-1)
    return r[..., None] * (g - (r * r * dot)[..., None] * h), -r ** 3 * res * dot


def _unseen_mass_moments(p: np.ndarray, T: int) -> tuple[float, float]:
    r"""Mean and variance of the unseen mass :math:`\sum_x p(x) 1[n_x = 0]` of a multinomial sample:
    :math:`\sum_x p_x (1-p_x)^T` and
    :math:`\sum_{x, y} p_x p_y [\mathbb P(n_x = n_y = 0) - \mathbb P(n_x = 0)\mathbb P(n_y = 0)]` with
    :math:`\mathbb P(n_x = n_y = 0) = (1 - p_x - p_y)^T` for :math:`x \ne y`."""
    unseen = (1 - p) ** T
    both = np.clip(1 - p[:, None] - p[None, :], 0, 1) ** T
    np.fill_diagonal(both, unseen)
    cov = both - np.outer(unseen, unseen)
    return float(p @ unseen), float(max(p @ cov @ p, 0.0))
