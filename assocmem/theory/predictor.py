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
   moments of :func:`assocmem.theory.interference.score_moments`, with the :math:`W_0` carrier), on the
   schedule of its counts (``c`` copies of a step per batch). Without layer norm a visit never turns a
   right token wrong (it raises the own class and lowers every other); with layer norm the step is
   :math:`h \mapsto \lambda h - \eta c\, r g` with :math:`\lambda = 1 + \eta c\, r^3 (h \cdot g)`, which keeps
   the argmax while :math:`\lambda > 0`. For sign descent the replay follows the steps with the mean-field
   batch norm :math:`\nu_t` and adds the sign noise of each step as it comes, so a visit corrects the
   noise before it.
5. **The last visit** (``_last_visit_steps``). A token seen :math:`n_x` times in one pass has its last
   visit at the latest of :math:`n_x` uniform times, step :math:`\lfloor S\,U^{1/n_x}\rfloor`, not at the
   pass's end. Its visits correct the interference :math:`\xi(L)` of the weights the others hold when the
   gradient of that step is taken, before the step, :math:`q(n_y (L-1)/S)`; what comes after is added at the
   end and nothing corrects it: the sign noise of the remaining steps and the interference of the others'
   growth from that step on (the batch's own updates included: they are simultaneous),
   :math:`\xi(S) = \beta\,\xi(L) + \varepsilon`
   with :math:`\beta = \mathrm{Cov}(\xi(S), \xi(L))/\mathrm{Var}\,\xi(L)` and
   :math:`\mathrm{Var}\,\varepsilon = \mathrm{Var}\,\xi(S) - \beta\,\mathrm{Cov}` (the variances are diagonal
   quadratic forms in the weights, so the covariance follows by polarisation). A token leaves the SGD
   replay once no step it has left can change its argmax and its margin exceeds six standard deviations of
   what the end adds.
6. **A full memory** (``_fitted_share``, the constant :data:`CAPACITY`). The replay lets every token
   correct its interference as if the memory had room for all of them. A linear memory of dimension ``d``
   does not: a gradient-trained ``W`` fits the scores of its most frequent tokens exactly, and fitting
   :math:`m < d - 1` tokens with embeddings :math:`E_m` is the minimum-norm solution
   :math:`S (E_m^\top E_m)^{-1} E_m^\top`. For any other token ``j`` that gives (means over Gaussian
   embeddings, :math:`E[(E_m^\top E_m)^{-1}] = d/(d-m-1)\,I`): interference of variance
   :math:`\sum_{i \le m} s_i^2/(d-m-1)` from the fitted tokens; its own signal and the other outsiders'
   updates projected off the fitted span, signal :math:`q_j (d-m)/d`, mutual interference
   :math:`q_y^2 (d-m)/d^2`; and :math:`W_0` and the sign noise projected alike. Relative to the outsider's
   signal this is exactly an outer-product memory of dimension :math:`d - m` in which the fitted tokens'
   weights are multiplied by :math:`d/\sqrt{(d-m)(d-m-1)}` and the carriers' variances by
   :math:`d/(d-m)`; the outsiders' visits are replayed in it. Which tokens are fitted, and how many, the
   derivation does not say: the :math:`m = \min(\lfloor c\,d \rfloor, d - 2)` most often seen (ties share
   the places left), with one constant ``c`` (:data:`CAPACITY`) fixed on the calibration half of
   chapter 8's grid only (:func:`calibration_half`, ``data/predictor/calibrate_capacity.py``). A token is
   fitted to the extent :math:`\rho` that the decoupled map has minimised its loss: the share of its
   own-class residual :math:`1 - s` gone, out of the share that can go (all of it without layer norm; with
   it the scores :math:`r h` lie in the unit ball and :math:`s` stops at
   :math:`s^\star = 1/(1 + (M-1)\,e^{-\sqrt{M/(M-1)}})`). When at most ``m`` tokens are seen (large ``d``)
   the term vanishes.

The counts are drawn ``samples`` times (seeded); each draw gives an expected error :math:`\bar{\mathcal E}_k`
and, since tokens are recalled independently given the weights, an embedding variance
:math:`\sum_x p(x)^2 \pi_x (1 - \pi_x)`. The prediction is the mean over draws; the variance of one
run's error is the variance across draws plus the mean embedding variance; the band is
:math:`\text{mean} \pm z\,\sqrt{\mathrm{Var}/\text{trials} + \mathrm{Var}_k/\text{samples}}` for the mean
of ``trials`` runs, cut at 0 and 1.

Where it is exact, and where it is not: with orthonormal embeddings (``d >= N``) and :math:`W_0 = 0`
every seen token is recalled, whatever the optimiser, and the error is the unseen mass
:math:`\sum_x p(x)(1-p(x))^T` (``embeddings="orthonormal"``). With random embeddings it ignores
(i) which tokens a full memory fits beyond the rule of item 6, and the corrections' feedback on the
interference below capacity, (ii) the correlations between tokens through the shared output embeddings,
(iii) for sign descent, everything beyond the Gaussian picture of the sign (the batch's structure at small
``B``, correlations of the noise across steps). Chapter 8 measures how much each costs, and
:func:`model_error` states what is left, per region, as a relative systematic error calibrated on the
calibration half; :func:`model_bias` estimates there the factor by which the centre is off per region, an
empirical correction (:func:`with_model_bias`) that chapter 8 validates on the other half.
:func:`predict_error` takes both (``bias=``, ``sigma=``) for a new cell, in the groups they were measured in.
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
           "grid_cells", "calibration", "calibration_half", "calibration_summary", "model_error", "with_model_error",
           "model_bias", "with_model_bias", "CAPACITY", "best_own_share"]

OPTIMIZERS = ("sgd", "adam")
SCHEMES = finite_sample.SCHEMES
RULES = OPTIMIZERS + SCHEMES
KAPPA = float(np.sqrt(2 / np.pi))
ADAM_EPS = 1e-8
LAYER_NORM_EPS = 1e-6
_GRID_POINTS = 160
REPLAY_DRAWS = 64
#: The constant ``c`` of a full memory, :math:`m = \min(\lfloor c\,d\rfloor, d - 2)` fitted tokens (module notes,
#: 6.), fixed on the calibration half of chapter 8's grid by ``data/predictor/calibrate_capacity.py``.
CAPACITY = 1.0
_FRACTION_POINTS = 16


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
                  ratio: float = 12.0, rho: float = 1.0, samples: int = 16, seed: int = 0,
                  capacity: float | None = None, bias=None, sigma=None) -> Prediction:
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
    capacity : float, optional
        The constant ``c`` of a full memory, :math:`m = \min(\lfloor c\,d\rfloor, d - 2)` fitted tokens
        (module notes, 6.; optimisers only; 0 switches the term off). Default :data:`CAPACITY`, fixed on the
        calibration half of chapter 8's grid.
    bias : pandas.DataFrame, optional
        Factors of the centre from :func:`model_bias` (grouped by columns of :data:`CELL_KEYS`): the mean,
        ``sd`` and the band are multiplied by the factor of this cell's group, the empirical correction of
        chapter 8. A group it lacks is an error: no factor was measured there.
    sigma : pandas.DataFrame, optional
        Relative errors of the model from :func:`model_error` (grouped likewise, estimated on tables
        corrected by ``bias`` when that is given): the band becomes
        :math:`\hat{\mathcal E} \pm z\sqrt{s^2 + \sigma^2 \hat{\mathcal E}^2}` (``s`` the standard deviation
        of the band above), as :func:`with_model_error` widens a table's.

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
    capacity = CAPACITY if capacity is None else check.real("capacity", capacity, low=0.0)
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
    cell = pd.DataFrame({"rule": rule, "d": d, "T": T, "batch_size": batch_size, "lr": lr,
                         "layer_norm": bool(layer_norm)})
    factor = np.ones(d.size) if bias is None else _cell_values(cell, bias, "bias", "model_bias", positive=True)
    width = np.zeros(d.size) if sigma is None else _cell_values(cell, sigma, "sigma", "model_error", positive=False)
    z = float(special.ndtri(0.5 + level / 2))
    _predict_budget(rule, d.size, T, batch_size, N, M, samples, embeddings)
    p, labels = zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M)

    def prediction(mean, sd, spread):      # spread: the standard deviation of the band, for the mean of trials
        mean, sd, spread = factor * mean, factor * sd, factor * spread
        low, high = _widened_band(mean, spread, width, z)
        return Prediction(d, mean, sd, low, high, level, trials)

    if embeddings == "orthonormal":
        if d.min() < N or init != "zero" or rule == "top":
            raise ValueError("embeddings='orthonormal' needs every d >= N, init='zero' and a rule other than "
                             f"'top'; got min(d)={d.min()}, init={init!r}, rule={rule!r}")
        mean, var = _unseen_mass_moments(p, T)
        ones = np.ones(d.size)
        return prediction(mean * ones, np.sqrt(var) * ones, np.sqrt(var / trials) * ones)

    counts = np.random.default_rng(seed).multinomial(T, p, size=samples)
    w0 = np.zeros(d.size) if init == "zero" else 1.0 / d
    noise, schedule = w0, None
    if rule in OPTIMIZERS:
        n_grid, margins, extra, schedule, progress = _decoupled(rule, lr, batch_size, T, d.astype(np.float64), N, M,
                                                                alpha, layer_norm, init, _GRID_POINTS)
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
            steps = None if schedule is None else tuple(part[:, j] for part in schedule)
            replayed = _replayed_miss(n_grid, margins[j], w0[j], lab, counts, dj, M, lr, batch_size,
                                      T // batch_size, layer_norm, init, np.random.default_rng([seed, 2, dj]),
                                      adam=steps)
            replayed = _full_memory_miss(replayed, capacity, progress[j], n_grid, margins[j], w0[j], lab, counts,
                                         dj, M, lr, batch_size, T // batch_size, layer_norm, init,
                                         np.random.default_rng([seed, 3, dj]), adam=steps)
            miss = np.where(counts > 0, replayed, miss)
        means[j] = miss @ p
        variances[j] = (miss * (1 - miss)) @ p ** 2
    between = means.var(1, ddof=1)
    var_run = between + variances.mean(1)
    return prediction(means.mean(1), np.sqrt(var_run), np.sqrt(var_run / trials + between / samples))


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
    n_grid, margins, noise, _, _ = _decoupled(rule, lr, B, T, d, N, M, alpha, bool(layer_norm), init, grid_points)
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
    # how far each token's loss is minimised: the share of its own-class residual 1 - s gone since h = 0, out of
    # the share that can go (all of it without layer norm; with it the scores are bounded)
    r = 1.0 / np.sqrt((h ** 2).sum(-1) + res ** 2 + LAYER_NORM_EPS) if layer_norm else np.ones_like(res)
    z = r[..., None] * h
    s_own = 1.0 / np.exp(z - z[..., :1]).sum(-1)
    progress = (_residual_gone(s_own, M) / _residual_gone(best_own_share(M, layer_norm), M))[:, :n_grid.size]
    if adam:
        noise = lr ** 2 * (1 - KAPPA ** 2) * (phis ** 2).sum(0) / (M * d)
        schedule = (batch_norm2, phis)
    else:
        margins = np.broadcast_to(margins, (d.size, n_grid.size))
        progress = np.broadcast_to(progress, (d.size, n_grid.size))
        noise, schedule = np.zeros(d.size), None
    return n_grid, np.ascontiguousarray(margins), noise, schedule, np.ascontiguousarray(progress)


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


def calibration_half(cells) -> np.ndarray:
    r"""The calibration half of a grid of cells, fixed in advance (chapter 8): the cells whose step size and
    batch size sit on the even squares of a checkerboard over :math:`\gamma \in \{0.1, 1, 10, 100\}`
    and :math:`B \in \{16, 64, 256, 1024\}` (the sum of their indices is even). Every ``d``, ``T``,
    optimiser and layer-norm setting is in both halves. The predictor's free constants (:data:`CAPACITY`,
    :func:`model_error`) are fixed on this half; the other half is the validation.

    Parameters
    ----------
    cells : pandas.DataFrame
        With columns ``lr`` (:math:`\gamma`) and ``batch_size``, values on those grids.

    Returns
    -------
    numpy.ndarray of bool
        True for the calibration half.
    """
    lrs, batches = (0.1, 1.0, 10.0, 100.0), (16, 64, 256, 1024)
    if not isinstance(cells, pd.DataFrame) or not {"lr", "batch_size"} <= set(cells.columns):
        raise TypeError("cells must be a pandas DataFrame with columns 'lr' and 'batch_size'")
    lr = np.asarray(cells["lr"], dtype=np.float64)
    batch = np.asarray(cells["batch_size"])
    i = np.searchsorted(lrs, lr * (1 + 1e-9))
    k = np.searchsorted(batches, batch)
    if not (np.all(np.isclose(np.take(lrs, np.minimum(i - 1, 3)), lr)) and np.isin(batch, batches).all()):
        raise ValueError("cells['lr'] and cells['batch_size'] must lie on the grids (0.1, 1, 10, 100) and "
                         "(16, 64, 256, 1024)")
    return (i - 1 + k) % 2 == 0


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
        ``N``, ``M``, ``alpha``, ``init`` of the grid and ``capacity`` (the defaults of :func:`predict_error`
        otherwise).

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


def model_error(table, by, *, level: float = 0.9):
    r"""The predictor's relative systematic error per group, from a calibration table (chapter 8).

    The band of :func:`predict_error` is for the spread over samples and embeddings only. A cell whose
    prediction is off by a relative error :math:`\delta` of the model itself lies in the band widened to
    :math:`\hat{\mathcal E} \pm z\sqrt{s^2 + \sigma^2\hat{\mathcal E}^2}` (``s`` the band's standard
    deviation of the mean, :math:`s = (\text{high} - \hat{\mathcal E})/z`) once :math:`\sigma \ge \sigma_i`,

    .. math::
        \sigma_i = \frac{\sqrt{\max\bigl((\mathcal E_i - \hat{\mathcal E}_i)^2/z^2 - s_i^2,\ 0\bigr)}}
        {\hat{\mathcal E}_i},

    so the :math:`k`-th smallest of a group's :math:`n` values :math:`\sigma_i`, :math:`k = \lceil (n+1)\,
    \text{level}\rceil`, is the finite-sample quantile of split conformal calibration: estimated on cells
    disjoint from those it is validated on, it puts a new cell exchangeable with them inside with probability
    at least ``level``. A group of fewer than :math:`\text{level}/(1-\text{level})` cells (9 at 0.9) cannot
    give that guarantee; it gets its largest :math:`\sigma_i`.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`calibration` (columns ``error``, ``predicted``, ``high`` and the ``by`` columns).
    by : str or list of str
        Columns that define the groups (e.g. ``["rule", "d"]``).
    level : float
        Coverage of the band the table was made with, and the coverage the widened band is calibrated for.

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``sigma`` and ``cells`` (the group's number of cells).
    """
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    _check_table("table", table, ("error", "predicted", "high"))
    by = _group_columns(table, by)
    z = float(special.ndtri(0.5 + level / 2))
    s = (table["high"] - table["predicted"]) / z
    excess = np.sqrt(np.maximum(((table["error"] - table["predicted"]) / z) ** 2 - s ** 2, 0))
    predicted = table["predicted"]
    # a cell predicted exactly 0 (every token seen and right) needs no sigma if measured inside, any otherwise
    need = excess / predicted.where(predicted > 0, 1.0)
    need = need.where(predicted > 0, np.where(excess > 0, np.inf, 0.0))
    grouped = need.groupby([table[k] for k in by])

    def conformal(values):
        rank = min(int(np.ceil((values.size + 1) * level)), values.size)   # the k-th smallest, k >= 1
        return np.sort(values.to_numpy())[rank - 1]
    return pd.DataFrame({"sigma": grouped.apply(conformal), "cells": grouped.size()}).reset_index()


def with_model_error(table, sigma, *, level: float = 0.9):
    r"""A calibration table with its bands widened by the model's systematic error (:func:`model_error`).

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`calibration`.
    sigma : pandas.DataFrame
        Output of :func:`model_error`: its columns other than ``sigma`` and ``cells`` are the groups, and
        every group of ``table`` must be there.
    level : float
        Coverage of the band the table was made with.

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``low``, ``high`` (:math:`\hat{\mathcal E} \pm z\sqrt{s^2 + \sigma^2\hat{\mathcal E}^2}`,
        cut at 0 and 1), ``inside`` recomputed and the group's ``sigma``.
    """
    level = check.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    _check_table("table", table, ("error", "predicted", "high"))
    out = _with_group_values(table, sigma, "sigma", "model_error", positive=False)
    z = float(special.ndtri(0.5 + level / 2))
    s = (out["high"] - out["predicted"]) / z
    out["low"], out["high"] = _widened_band(out["predicted"], s, out["sigma"], z)
    out["inside"] = (out["error"] >= out["low"]) & (out["error"] <= out["high"])
    return out


def model_bias(table, by):
    r"""The predictor's systematic factor per group: the median ratio measured / predicted (chapter 8).

    :func:`with_model_bias` multiplies a prediction and its band by it. That is an empirical correction of
    the centre, not part of the derivation: estimated on the cells of one table (the calibration half) and
    applied to others (the validation half), it moves their median ratio to 1 as far as the groups are
    alike. A cell predicted or measured exactly 0 has no finite, nonzero ratio and is left out; a group
    with no other cell gets the factor 1.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`calibration` (columns ``error``, ``predicted``, ``high`` and the ``by`` columns).
    by : str or list of str
        Columns that define the groups (e.g. ``["rule", "layer_norm", "d"]``).

    Returns
    -------
    pandas.DataFrame
        The ``by`` columns, ``bias`` (the median of :math:`\mathcal E_i / \hat{\mathcal E}_i`) and ``cells``
        (the group's cells with a ratio).
    """
    _check_table("table", table, ("error", "predicted", "high"))
    by = _group_columns(table, by)
    usable = (table["predicted"] > 0) & (table["error"] > 0)
    ratio = (table["error"] / table["predicted"].where(usable, 1.0)).where(usable)
    grouped = ratio.groupby([table[k] for k in by])
    out = pd.DataFrame({"bias": grouped.median(), "cells": grouped.count()}).reset_index()
    out["bias"] = out["bias"].fillna(1.0)
    return out


def with_model_bias(table, bias):
    r"""A calibration table with each prediction and its band multiplied by its group's factor
    (:func:`model_bias`), the band cut at 0 and 1.

    Parameters
    ----------
    table : pandas.DataFrame
        Output of :func:`calibration`.
    bias : pandas.DataFrame
        Output of :func:`model_bias`: its columns other than ``bias`` and ``cells`` are the groups, and every
        group of ``table`` must be there.

    Returns
    -------
    pandas.DataFrame
        ``table`` with ``predicted``, ``predicted_sd`` (where present), ``low`` and ``high`` multiplied,
        ``ratio`` and ``inside`` recomputed, and the group's ``bias``.
    """
    _check_table("table", table, ("error", "predicted", "low", "high"))
    out = _with_group_values(table, bias, "bias", "model_bias", positive=True)
    factor = out["bias"]
    for column in ("predicted", "predicted_sd", "low", "high"):
        if column in out.columns:
            out[column] = out[column] * factor
    out["low"], out["high"] = out["low"].clip(0, 1), out["high"].clip(0, 1)
    out["ratio"] = out["error"] / out["predicted"]
    out["inside"] = (out["error"] >= out["low"]) & (out["error"] <= out["high"])
    return out


def _widened_band(mean, spread, sigma, z: float):
    r"""The band :math:`\hat{\mathcal E} \pm z\sqrt{s^2 + \sigma^2\hat{\mathcal E}^2}` cut at 0 and 1: the
    spread ``s`` of the mean ``mean`` and the model's relative error ``sigma`` (:func:`model_error`)."""
    half = z * np.sqrt(spread ** 2 + (sigma * mean) ** 2)
    return np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)


def _group_columns(table, by) -> list:
    """``by`` as a list of columns of ``table``: a column name or a non-empty list of them."""
    by = [by] if isinstance(by, str) else by
    if not isinstance(by, (list, tuple)) or not by or not all(isinstance(k, str) for k in by):
        raise TypeError(f"by must be a column name or a non-empty list of column names, got {by!r}")
    missing = set(by) - set(table.columns)
    if missing:
        raise ValueError(f"table lacks the columns {sorted(missing)} of by")
    return list(by)


def _with_group_values(table, groups, column: str, source: str, *, positive: bool, of: str = "table"):
    """``table`` with the ``column`` of its group in ``groups`` (the output of ``source``: the group columns,
    ``column`` and ``cells``), every value finite and ``> 0`` (``positive``) or ``>= 0``; a group column
    ``table`` lacks (or holds no value of), a group ``groups`` holds twice, or a group of ``table`` that
    ``groups`` lacks, is an error naming it (``of`` names ``table`` in the message)."""
    if not isinstance(groups, pd.DataFrame) or column not in groups.columns:
        raise TypeError(f"{column} must be a pandas DataFrame with a column {column!r} (the output of {source})")
    values = groups[column].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or np.any(values <= 0 if positive else values < 0):
        raise ValueError(f"{column}[{column!r}] must be finite and {'>' if positive else '>='} 0")
    by = [c for c in groups.columns if c not in (column, "cells")]
    unknown = [c for c in by if c not in table.columns or table[c].isna().all()]
    if not by or unknown:
        raise ValueError(f"{column} must be grouped by columns {of} has, got {by} ({unknown} missing)")
    twice = groups.loc[groups.duplicated(by), by].drop_duplicates().values.tolist()
    if twice:   # a merge would repeat the rows of those groups
        raise ValueError(f"{column} holds these groups more than once: {twice}")
    out = table.drop(columns=[column], errors="ignore").merge(groups[by + [column]], on=by, how="left")
    if out[column].isna().any():
        lacking = out.loc[out[column].isna(), by].drop_duplicates().values.tolist()
        raise ValueError(f"{column} lacks groups of {of}: {lacking}")
    return out


def _cell_values(cell, groups, column: str, source: str, *, positive: bool) -> np.ndarray:
    """The ``column`` of the group of each row of ``cell`` (one cell per ``d``) in ``groups``, the output of
    ``source``: :func:`_with_group_values` for one cell, in the order of its rows."""
    return _with_group_values(cell, groups, column, source, positive=positive,
                              of="the cell")[column].to_numpy(dtype=np.float64)


def _check_table(name: str, table, columns) -> None:
    """A calibration table: a non-empty DataFrame with ``columns``, finite, ``predicted >= 0``."""
    check.table(name, table, columns)
    if table.empty:
        raise ValueError(f"{name} has no cells")
    values = table[list(columns)].to_numpy(dtype=np.float64)
    if not np.all(np.isfinite(values)) or (table["predicted"] < 0).any():
        raise ValueError(f"{name}: {list(columns)} must be finite and 'predicted' >= 0")


def _with_carrier(q: np.ndarray, variance: float, d: int, M: int) -> np.ndarray:
    """The weights ``q`` followed by ``M`` carrier associations (one per class) whose interference has
    the given variance per score: weight :math:`w` with :math:`w^2 (1 + (M-1)/d)/d` equal to it."""
    return np.concatenate([q, np.full(M, np.sqrt(variance * d / (1 + (M - 1) / d)))])


def _full_memory_miss(replayed, capacity: float, progress, n_grid, margins, w0: float, labels, counts, d: int,
                      M: int, lr: float, B: int, S: int, layer_norm: bool, init: str, rng, *,
                      adam=None) -> np.ndarray:
    r"""The replay's per-token miss ``replayed`` (shape ``(samples, N)``) once the memory is full (module
    notes, 6.): of the :math:`m = \min(\lfloor c\,d\rfloor, d - 2)` most seen tokens (``c`` =
    ``capacity``, :func:`_fitted_share`) each is fitted to the extent :math:`\rho` that its loss is
    minimised (``progress`` on ``n_grid``: the share of its own-class residual gone, out of the share that can
    go, :func:`best_own_share`; 0 for an outer-product sum, 1 at the fit), and keeps ``replayed`` in that
    proportion; the others' visits are replayed (:func:`_replayed_miss`, the other arguments) in the
    outer-product memory of dimension
    :math:`d - m_\rho`, :math:`m_\rho = \sum \rho` rounded, in which the fitted tokens' weights are multiplied
    by :math:`1 + \rho\,(d/\sqrt{(d-m_\rho)(d-m_\rho-1)} - 1)` and the carriers' variances by
    :math:`d/(d-m_\rho)`. Unchanged when no count draw sees more than ``m`` tokens."""
    m = min(int(np.floor(capacity * d)), d - 2)
    if m < 1 or not ((counts > 0).sum(1) > m).any():
        return replayed
    share = _fitted_share(counts, m) * np.clip(np.interp(counts, n_grid, progress), 0, 1)
    fitted = int(np.rint(share.sum(1).mean()))
    if fitted < 1:
        return replayed
    rest = d - fitted
    scale = share * d / np.sqrt(rest * (rest - 1)) + (1 - share)
    outside = _replayed_miss(n_grid, margins, w0, labels, counts, rest, M, lr, B, S, layer_norm, init, rng,
                             adam=adam, weight_scale=scale, noise_scale=d / rest)
    return share * replayed + (1 - share) * outside


def _fitted_share(counts, m: int) -> np.ndarray:
    r"""Share of each token in the ``m`` places of a full memory (module notes, 6.): 1 for the tokens seen more
    often than the ``m``-th most seen one, the places left split evenly among those tied with it (no
    information but the counts), 0 below; every seen token has a place when at most ``m`` are seen.
    ``counts`` has shape ``(samples, N)``; so has the result."""
    ordered = -np.sort(-counts, axis=1)
    boundary = ordered[:, m - 1:m]
    above, tied = counts > boundary, counts == boundary
    left = m - above.sum(1, keepdims=True)
    share = np.where(above, 1.0, np.where(tied, left / np.maximum(tied.sum(1, keepdims=True), 1), 0.0))
    return np.where((counts > 0).sum(1, keepdims=True) <= m, (counts > 0).astype(np.float64), share)


def _replayed_miss(n_grid, margins, w0: float, labels, counts, d: int, M: int, lr: float, B: int, S: int,
                   layer_norm: bool, init: str, rng, *, adam=None, weight_scale=None, noise_scale: float = 1.0,
                   draws: int = REPLAY_DRAWS) -> np.ndarray:
    r"""Miss probability of every token when its visits start from its interference (module notes, 4. and 5.).

    ``margins`` (shape ``(len(n_grid),)``, the decoupled margin :math:`q(n)` on ``n_grid``), the count draws
    ``counts`` (shape ``(samples, N)``) and the :math:`W_0` carrier's variance ``w0`` set the interference.
    Every seen token's last visit comes at step :math:`L - 1 = \lfloor S\,U^{1/n_x} \rfloor` (the latest
    of its :math:`n_x` visit times, each uniform over the pass; one draw per token and draw). The
    interference it can correct is drawn from the moments of
    :func:`assocmem.theory.interference.score_moments` for the weights the other tokens hold when the
    gradient of step :math:`L - 1` is taken, :math:`q(n_y (L-1) / S)` (before that step's updates), plus the
    carrier; the interference built from then on, from the growth :math:`q(n_y) - q(n_y (L-1)/S)` of the
    others' weights, and (sign descent) the sign noise of step :math:`L - 1` and the steps after it are added
    at the end: nothing corrects them. ``draws`` Gaussian draws per token and count draw,
    draw ``i`` at the ``(i + 1/2)/draws`` quantile of the squared norm :math:`n_u \sim \chi^2_d/d` of the
    true class's output embedding, which scales the variances and the token's own-class steps. Token ``x``
    gets :math:`\min(n_x, L)` steps of ``c`` copies (its visits spread evenly over the first ``L`` steps).
    SGD (``adam=None``): each moves ``h`` by :math:`-(\gamma c / B)\,\partial h`; a token leaves the replay
    once no step it has left can change its argmax and its margin exceeds six standard deviations of what
    is added at the end. Sign descent (``adam=(batch_norm2, phi)`` from :func:`_decoupled`, shapes
    ``(S,)``): the step of the map at the visit's step ``t``, with the token's own row in :math:`\nu_t`,
    after the sign noise of the steps since its last visit (variance
    :math:`\gamma^2 (1-\kappa^2)\phi_t^2 / (M d)` per score and step). ``weight_scale`` (shape
    ``(samples, N)``) multiplies the other tokens' weights and ``noise_scale`` the carrier's variance (the
    full memory's outsiders, :func:`_full_memory_miss`). Returns shape ``(samples, N)``: per token, the
    fraction of draws whose own class is not strictly first."""
    samples, N = counts.shape
    own = labels[:N]
    others = (own[:, None] + np.arange(1, M)[None, :]) % M
    n_u = stats.gamma.ppf((np.arange(draws) + 0.5) / draws, d / 2, scale=2 / d)
    seen = np.broadcast_to(counts[:, None, :] > 0, (samples, draws, N))
    k_idx, i_idx, x_idx = np.nonzero(seen)                  # one entry per (count draw, draw, seen token)
    n = counts[k_idx, x_idx]
    L = _last_visit_steps(n, S, rng)
    # Interference moments on a grid of the fraction f = (L - 1) / S of the pass done at the last visit, for the
    # weights then (q(n_y f), with the W0 carrier), at the end (q(n_y)) and their covariance (by polarisation:
    # the variances are diagonal quadratic forms in the weights); all quadratics in n_u (exact from 3 nodes),
    # interpolated linearly in f.
    fractions = np.unique(np.concatenate([[0.0], np.geomspace(1.0 / S, 1.0, _FRACTION_POINTS)]))
    scale = 1.0 if weight_scale is None else weight_scale
    final = np.interp(counts, n_grid, margins) * scale
    early = np.stack([np.interp(counts * f, n_grid, margins) * scale for f in fractions])   # (F, samples, N)
    carrier = np.broadcast_to(_with_carrier(np.zeros(0), w0 * noise_scale, d, M), early.shape[:2] + (M,))
    tables = [_variance_table(np.concatenate([weights, scale * carrier], -1), labels, d, M, others)
              for weights, scale in ((early, 1), (np.broadcast_to(final, early.shape), 1), (early + final, 2))]
    f = (L - 1) / S                  # the last visit's gradient is taken before its step's updates
    pos = np.clip(np.searchsorted(fractions, f, side="right") - 1, 0, fractions.size - 1)
    nxt = np.minimum(pos + 1, fractions.size - 1)
    span = fractions[nxt] - fractions[pos]
    frac = np.where(span > 0, (f - fractions[pos]) / np.where(span > 0, span, 1.0), 0.0)[:, None]
    nu_ = n_u[i_idx][:, None]

    def rows(table):
        v = [(1 - frac) * table[node, pos, k_idx, x_idx] + frac * table[node, nxt, k_idx, x_idx] for node in range(3)]
        a = (v[2] - 2 * v[1] + v[0]) / 2
        return a * nu_ ** 2 + (v[1] - v[0] - a) * nu_ + v[0]

    var_last, var_end, var_sum = (np.maximum(rows(t), 0) for t in tables)
    cov = (var_sum - var_last - var_end) / 2
    # At the end: xi(S) = beta xi(L) + eps, so the replay's start xi(L) gets (beta - 1) xi(L) + eps added
    beta = np.where(var_last > 0, cov / np.where(var_last > 0, var_last, 1.0), 0.0)
    end_var = np.maximum(var_end - beta * cov, 0)
    h = rng.standard_normal((k_idx.size, M)) * np.sqrt(var_last)
    end_shift = (beta - 1) * h
    if adam is not None:
        batch_norm2, phi = adam
        cumulative = np.concatenate([[0.0], np.cumsum(lr ** 2 * (1 - KAPPA ** 2) * phi ** 2 / (M * d))])
        end_var = end_var + (cumulative[S] - cumulative[L - 1])[:, None]
        last = np.zeros(k_idx.size, dtype=np.int64)         # noise up to this step is already added
    late = end_shift ** 2 + end_var
    safe2 = 36.0 * (late[:, 0] + late[:, 1:].max(-1))      # margin^2 the end's additions cannot undo
    res = np.full(k_idx.size, 1.0 if init == "random" else 0.0)
    gain = np.ones((k_idx.size, M))
    gain[:, 0] = n_u[i_idx]
    K = np.minimum(n, L)                                    # steps with copies of the token, c copies each
    wrong = np.zeros(k_idx.size, dtype=bool)
    live = np.arange(k_idx.size)
    for v in range(int(K.max(initial=0))):
        nv, Kv, Lv = n[live], K[live], L[live]
        c = (v + 1) * nv // Kv - v * nv // Kv
        hv, rv = h[live], res[live]
        if adam is not None:                                # the sign noise since the last visit, then the step
            t = np.where(nv >= Lv, v, ((v + 1) * Lv + nv - 1) // nv - 1)
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
            gap = hv[:, 0] - hv[:, 1:].max(-1)
            risky = (gap <= 0) | (gap ** 2 <= safe2[live])
            if layer_norm:
                risky |= _stretch(hv, rv, (lr / B) * -(-nv // Kv)) <= 0
            done |= ~risky
        # what nothing corrects: the interference built after the last visit, and its sign noise
        ended = live[done]
        hv[done] += end_shift[ended] + np.sqrt(end_var[ended]) * rng.standard_normal((ended.size, M))
        h[live], res[live] = hv, rv
        wrong[live[done]] = hv[done, 1:].max(-1) >= hv[done, 0]
        live = live[~done]
        if not live.size:
            break
    miss = np.zeros((samples, draws, N))
    miss[k_idx, i_idx, x_idx] = wrong
    return miss.mean(1)


def _last_visit_steps(n, S: int, rng) -> np.ndarray:
    r"""Steps up to and including the last visit of tokens seen ``n`` times (each ``>= 1``) in a pass of ``S``
    steps: the latest of ``n`` visit times uniform over the pass, :math:`\max_i U_i \overset{d}{=} U^{1/n}`,
    at step :math:`\lfloor S\,U^{1/n}\rfloor`; returns :math:`L = \lfloor S\,U^{1/n}\rfloor + 1` in
    ``[1, S]``, one draw of ``rng`` per entry. (Positions in one pass are drawn without replacement; the
    continuous law is exact for one visit and within :math:`O(n/T)` otherwise.)"""
    return np.minimum(np.floor(S * rng.uniform(size=n.size) ** (1.0 / n)).astype(np.int64) + 1, S)


def _variance_table(weights, labels, d: int, M: int, others) -> np.ndarray:
    r"""Score variances of every token for each weight vector of ``weights`` (shape ``(F, samples, N + M)``,
    the tokens then ``M`` carriers, classes ``labels``) at the output norms :math:`n_u \in \{0, 1, 2\}`:
    shape ``(3, F, samples, N, M)``, the own class first, then the classes ``others`` (shape ``(N, M-1)``),
    from :func:`assocmem.theory.interference.score_moments`."""
    F, samples, _ = weights.shape
    N = others.shape[0]
    table = np.empty((3, F, samples, N, M))
    for node in range(3):
        for g in range(F):
            for k in range(samples):
                _, var_true, var_wrong = interference.score_moments(weights[g, k], labels, d, M,
                                                                    output_norm=float(node))
                table[node, g, k, :, 0] = var_true[:N]
                table[node, g, k, :, 1:] = np.take_along_axis(var_wrong[:N], others, 1)
    return table


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


def _residual_gone(s_own, M: int):
    r"""Share :math:`1 - (1 - s)\,M/(M-1)` of the own-class residual gone at own-class probability ``s``
    (0 at the uniform :math:`s = 1/M`, 1 at :math:`s = 1`)."""
    return 1 - (1 - s_own) * M / (M - 1)


def best_own_share(M: int, layer_norm: bool) -> float:
    r"""The largest own-class probability a token's scores can reach, against which a full memory measures how
    far a token is fitted (module notes, 6.).

    Without layer norm the margin is unbounded and the share reaches 1. With it the scores :math:`z = r h` lie
    in the unit ball, and the symmetric form :math:`(a, b, \dots, b)` with :math:`a^2 + (M-1) b^2 \le 1` has
    the largest margin :math:`a - b = \sqrt{M/(M-1)}`, so

    .. math::
        s^\star = \frac{1}{1 + (M-1)\,e^{-\sqrt{M/(M-1)}}} \qquad (0.433 \text{ for } M = 5).

    Parameters
    ----------
    M : int
        Classes, ``M >= 2``.
    layer_norm : bool
        Whether the scores go through layer norm.

    Returns
    -------
    float
        :math:`s^\star`, or 1 without layer norm.
    """
    M = check.positive_int("M", M, minimum=2)
    if not isinstance(layer_norm, (bool, np.bool_)):
        raise TypeError(f"layer_norm must be a bool, got {layer_norm!r}")
    return float(1.0 / (1 + (M - 1) * np.exp(-np.sqrt(M / (M - 1))))) if layer_norm else 1.0


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
