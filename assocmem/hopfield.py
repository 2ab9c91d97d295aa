r"""Hopfield networks and their energies (chapter 5, *Hopfield energy*).

Four memories that go beyond the :math:`d \times d` outer-product matrix, and the energies that
explain their retrieval:

- **classical** Hopfield networks: :math:`\pm 1` patterns, Hebbian weights, sign updates and the
  energy :math:`-\tfrac12 s^\top W s` (capacity :math:`0.138\,d`);
- **dense** associative memories [KH16]: energy :math:`-\sum_\mu F(\xi_\mu^\top s)`,
  :math:`F(x) = x^a`, capacity :math:`\propto d^{a-1}`;
- the **thresholded (ReLU) memory** of the talk,
  :math:`g(x)_y = u_y^\top \sum_{x'} q(x')\, u_{f^*(x')}\,\mathrm{ReLU}(e_{x'}^\top e_x - \eta)`;
- **modern** Hopfield networks [R20]: the log-sum-exp energy, the update
  :math:`\xi \leftarrow X\,\mathrm{softmax}(\beta X^\top \xi)` (one attention step), separation and
  fixed points; and the **layer energy** of [NBDH24],
  :math:`E(x) = -\log\sum_i e^{-\|x - \rho_i\|^2}`, with the global energy of a stack of layers.

Conventions: stored patterns are the *rows* of a tensor ``patterns`` of shape ``(..., N, d)`` (the
book's :math:`X` has them as columns); states or queries have shape ``(..., Q, d)``; leading batch
dimensions (typically independent trials) broadcast. Capacity experiments draw every trial at once
and run one tensor program over trials, probes and stored patterns.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from . import _validate as check
from .sweep import experiment
from .theory import hopfield as theory
from .zipf import mod_labels

__all__ = [
    "FIXED_POINT_KINDS", "random_sign_patterns", "sphere_patterns", "clustered_patterns", "flip_bits",
    "hebbian_weights", "classical_energy", "classical_update",
    "dense_energy", "dense_update", "SignRetrieval", "sign_retrieval", "dense_capacity",
    "thresholded_memory_scores", "thresholded_memory_error", "thresholded_memory_capacity",
    "modern_energy", "modern_update", "Trajectory", "modern_retrieve", "separation",
    "hopfield_attention", "effective_patterns", "fixed_point_kind", "fixed_point_census",
    "one_step_retrieval", "modern_retrieval_failure", "modern_capacity",
    "layer_energy", "nearest_neighbour_energy", "layer_update", "layer_majorizer", "global_energy",
    "dense_capacity_experiment", "modern_capacity_experiment",
]

SYNCHRONOUS, ASYNCHRONOUS = "synchronous", "asynchronous"
_SEED_STRIDE = 7919  # each dimension of a capacity curve draws from its own seed
FIXED_POINT_KINDS = ("single pattern", "metastable", "global average")


# --------------------------------------------------------------------------------------- patterns
def random_sign_patterns(K: int, d: int, *, trials: int = 1, seed=0, device=None,
                         dtype=torch.float64) -> torch.Tensor:
    r"""``trials`` independent sets of ``K`` random patterns :math:`\xi_\mu \in \{-1, +1\}^d`.

    Returns a tensor of shape ``(trials, K, d)``; ``seed`` is an int or a ``torch.Generator``.

    Parameters
    ----------
    K : int
        Number of patterns per set, :math:`\ge 1`.
    d : int
        Dimension (number of units), :math:`\ge 1`.
    trials : int
        Number of independent sets, :math:`\ge 1`.
    seed : int or torch.Generator
        Seed of the draw (a non-negative int), or a generator to draw from.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    dtype : torch.dtype
        Floating dtype of the returned patterns.
    """
    K, d, trials = check.positive_int("K", K), check.positive_int("d", d), check.positive_int("trials", trials)
    check.budget("K, d, trials", nbytes=16.0 * trials * K * d, formula="int64 bits and float64 patterns")
    gen = _generator(seed, device)
    bits = torch.randint(0, 2, (trials, K, d), generator=gen, device=gen.device)
    return (2 * bits - 1).to(device=device, dtype=dtype)


def sphere_patterns(N: int, d: int, *, radius: float = 1.0, trials: int = 1, seed=0, device=None,
                    dtype=torch.float64) -> torch.Tensor:
    r"""``trials`` sets of ``N`` patterns drawn uniformly on the sphere of radius ``radius`` in
    :math:`\mathbb{R}^d`; shape ``(trials, N, d)``.

    Parameters
    ----------
    N : int
        Number of patterns per set, :math:`\ge 1`.
    d : int
        Dimension, :math:`\ge 1`.
    radius : float
        Radius of the sphere, :math:`> 0`.
    trials : int
        Number of independent sets, :math:`\ge 1`.
    seed : int or torch.Generator
        Seed of the draw (a non-negative int), or a generator to draw from.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    """
    N, d, trials = check.positive_int("N", N), check.positive_int("d", d), check.positive_int("trials", trials)
    radius = check.real("radius", radius, low=0.0, low_open=True)
    check.budget("N, d, trials", nbytes=24.0 * trials * N * d, formula="a float64 draw and its normalised copy")
    if dtype not in (torch.float32, torch.float64):
        raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    gen = _generator(seed, device)
    g = torch.randn((trials, N, d), generator=gen, device=gen.device, dtype=dtype)
    return (radius * g / g.norm(dim=-1, keepdim=True)).to(device)


def clustered_patterns(clusters: int, per_cluster: int, d: int, *, spread: float = 0.3, radius: float = 1.0,
                       seed=0, device=None, dtype=torch.float64) -> torch.Tensor:
    r"""``clusters * per_cluster`` patterns of norm ``radius``: random unit centres on the sphere,
    each perturbed by Gaussian noise of relative size ``spread`` and projected back to the sphere.
    Similar patterns make the metastable fixed points of the modern Hopfield network visible.
    Returns ``(clusters * per_cluster, d)``, cluster by cluster.

    Parameters
    ----------
    clusters : int
        Number of cluster centres, :math:`\ge 1`.
    per_cluster : int
        Patterns per cluster, :math:`\ge 1`.
    d : int
        Dimension, :math:`\ge 1`.
    spread : float
        Relative size of the perturbation, :math:`\ge 0`: each point is
        :math:`c + \mathrm{spread}\, g/\sqrt d` before normalisation, :math:`g` standard Gaussian.
    radius : float
        Norm of every returned pattern, :math:`> 0`.
    seed : int or torch.Generator
        Seed of the draw (a non-negative int), or a generator to draw from.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    dtype : torch.dtype
        ``torch.float32`` or ``torch.float64``.
    """
    clusters, per_cluster = check.positive_int("clusters", clusters), check.positive_int("per_cluster", per_cluster)
    d, spread = check.positive_int("d", d), check.real("spread", spread, low=0.0)
    radius = check.real("radius", radius, low=0.0, low_open=True)
    check.budget("clusters, per_cluster, d", nbytes=24.0 * clusters * per_cluster * d, formula="float64 points")
    gen = _generator(seed, device)
    centres = sphere_patterns(clusters, d, seed=gen, device=device, dtype=dtype)[0]
    noise = torch.randn((clusters, per_cluster, d), generator=gen, device=gen.device, dtype=dtype).to(centres.device)
    points = (centres[:, None, :] + spread * noise / math.sqrt(d)).reshape(-1, d)
    return radius * points / points.norm(dim=-1, keepdim=True)


def flip_bits(states: torch.Tensor, fraction: float, *, seed=0) -> torch.Tensor:
    """Flip each :math:`\\pm 1` entry of ``states`` independently with probability ``fraction``.

    Parameters
    ----------
    states : array or tensor
        :math:`\\pm 1` states, any shape with at least one dimension.
    fraction : float
        Flip probability of each entry, in :math:`[0, 1]`.
    seed : int or torch.Generator
        Seed of the draw (a non-negative int), or a generator to draw from.
    """
    states = _tensor("states", states, min_dim=1)
    fraction = check.real("fraction", fraction, low=0.0, high=1.0)
    gen = _generator(seed, states.device)
    flips = torch.rand(states.shape, generator=gen, device=gen.device).to(states.device) < fraction
    return torch.where(flips, -states, states)


# ----------------------------------------------------------------------------- classical network
def hebbian_weights(patterns) -> torch.Tensor:
    r"""Hebbian weights :math:`W = \frac1d \sum_\mu \xi_\mu \xi_\mu^\top` with zero diagonal.

    ``patterns`` has shape ``(..., K, d)``; returns ``(..., d, d)``.

    Parameters
    ----------
    patterns : array or tensor, shape ``(..., K, d)``
        The stored patterns :math:`\xi_\mu`.
    """
    patterns = _tensor("patterns", patterns, min_dim=2)
    K, d = patterns.shape[-2:]
    weights = patterns.transpose(-1, -2) @ patterns / d
    return weights - (K / d) * torch.eye(d, dtype=weights.dtype, device=weights.device)


def classical_energy(states, weights) -> torch.Tensor:
    r"""Energy :math:`E(s) = -\tfrac12 s^\top W s` of states ``(..., Q, d)`` under weights
    ``(..., d, d)``; returns ``(..., Q)``.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    weights : array or tensor, shape ``(..., d, d)``
        The weight matrix :math:`W` (e.g. :func:`hebbian_weights`).
    """
    states, weights = _pair("states", states, "weights", weights)
    return -0.5 * ((states @ weights) * states).sum(-1)


def classical_update(states, weights, *, mode: str = SYNCHRONOUS, order=None) -> torch.Tensor:
    r"""One sweep of sign updates :math:`s_i \leftarrow \mathrm{sign}(\sum_j W_{ij} s_j)` (a zero
    field keeps :math:`s_i`).

    ``mode="synchronous"`` updates every unit at once; ``"asynchronous"`` updates them one after
    another in ``order`` (a permutation of ``range(d)``, default ``0..d-1``), which never increases
    :func:`classical_energy` for symmetric weights with zero diagonal.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    weights : array or tensor, shape ``(..., d, d)``
        The weight matrix :math:`W`.
    mode : {"synchronous", "asynchronous"}
        Update every unit at once, or one after another in ``order``.
    order : sequence of int, optional
        Order of the asynchronous updates: a permutation of ``range(d)`` (default ``0, ..., d-1``);
        ignored in synchronous mode.
    """
    states, weights = _pair("states", states, "weights", weights)
    mode = check.choice("mode", mode, {SYNCHRONOUS, ASYNCHRONOUS})
    if mode == SYNCHRONOUS:
        return _keep_on_tie(states @ weights, states)
    rows, single = _rows(states)
    for i in _order(order, rows.shape[-1]):
        field = (rows * weights[..., :, i].unsqueeze(-2)).sum(-1)
        rows[..., i] = _keep_on_tie(field, rows[..., i])
    return rows.squeeze(-2) if single else rows


# ------------------------------------------------------------------------- dense associative memory
def dense_energy(states, patterns, a: int) -> torch.Tensor:
    r"""Energy :math:`E(s) = -\sum_\mu F(\xi_\mu^\top s)` with :math:`F(x) = x^a` [KH16].

    ``states`` ``(..., Q, d)``, ``patterns`` ``(..., K, d)``; returns ``(..., Q)``.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    patterns : array or tensor, shape ``(..., K, d)``
        The stored patterns; batch dimensions broadcast with those of ``states``.
    a : int
        Power of the interaction function :math:`F(x) = x^a`, an integer :math:`\ge 2` (:math:`a = 2`: the
        classical network).
    """
    (states, patterns), a = _pair("states", states, "patterns", patterns), _power(a)
    return _finite(-(_overlaps(states, patterns) ** a).sum(-1), "a")


def dense_update(states, patterns, a: int, *, mode: str = SYNCHRONOUS, order=None) -> torch.Tensor:
    r"""One sweep of the dense-memory update [KH16]: each unit takes the sign of lower energy,

    .. math:: s_i \leftarrow \operatorname{sign}\sum_\mu \bigl[F(\xi_{\mu i} + r_{\mu i})
              - F(-\xi_{\mu i} + r_{\mu i})\bigr], \quad r_{\mu i} = \sum_{j \ne i}\xi_{\mu j}s_j

    (a tie keeps :math:`s_i`). Flipping unit :math:`i` changes the energy by
    :math:`\sum_\mu A_\mu + s_i \sum_\mu B_\mu \xi_{\mu i}` with :math:`m_\mu = \xi_\mu^\top s`,
    :math:`A = F(m) - \tfrac12(F(m-2) + F(m+2))` and :math:`B = \tfrac12(F(m+2) - F(m-2))`, so every
    unit's decision costs one matrix product and no :math:`d \times d` matrix is formed. For
    :math:`a = 2` the update is exactly the classical one with Hebbian weights. The asynchronous mode
    never increases :func:`dense_energy`.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The :math:`\pm 1` states to update.
    patterns : array or tensor, shape ``(..., K, d)``
        The stored patterns; batch dimensions broadcast with those of ``states``.
    a : int
        Power of the interaction function :math:`F(x) = x^a`, an integer :math:`\ge 2` (:math:`a = 2`: the
        classical network).
    mode : {"synchronous", "asynchronous"}
        Update every unit at once, or one after another in ``order``.
    order : sequence of int, optional
        Order of the asynchronous updates: a permutation of ``range(d)`` (default ``0, ..., d-1``);
        ignored in synchronous mode.
    """
    (states, patterns), a = _pair("states", states, "patterns", patterns), _power(a)
    mode = check.choice("mode", mode, {SYNCHRONOUS, ASYNCHRONOUS})
    if mode == SYNCHRONOUS:
        return _dense_step(states, patterns, a)
    rows, single = _rows(states)
    overlaps = _overlaps(rows, patterns)
    for i in _order(order, rows.shape[-1]):
        xi_i = patterns[..., :, i].unsqueeze(-2)
        constant, linear = _flip_gain_terms(overlaps, a)
        s_i = rows[..., i : i + 1]
        flip = constant + s_i * (linear * xi_i).sum(-1, keepdim=True) < 0
        overlaps = overlaps - 2 * flip * s_i * xi_i
        rows[..., i] = torch.where(flip.squeeze(-1), -rows[..., i], rows[..., i])
    return rows.squeeze(-2) if single else rows


@dataclass(frozen=True)
class SignRetrieval:
    """Retrieval of stored :math:`\\pm 1` patterns, per trial and per number of stored patterns ``K``.

    ``wrong_bits[t, k]``: fraction of wrong bits after the updates, over the probed patterns;
    ``exact[t, k]``: fraction of probed patterns recovered with every bit right.
    """

    K: np.ndarray
    wrong_bits: np.ndarray
    exact: np.ndarray


def sign_retrieval(K, d: int, *, a: int = 2, steps: int = 1, noise: float = 0.0, trials: int = 8,
                   probes: int = 32, seed: int = 0, device=None) -> SignRetrieval:
    r"""Store ``K`` random patterns in a dense memory (:math:`a = 2`: the classical network), start
    from stored patterns with a fraction ``noise`` of flipped bits, run ``steps`` synchronous updates
    (stopping early at a fixed point) and measure what is left wrong.

    ``K`` is one count or a grid; the patterns are nested (``K`` smaller uses the first rows of the
    largest draw) and the first ``probes`` patterns of each trial (all of them if fewer) are probed.
    With ``steps=1`` and ``noise=0`` this is the one-step stability of stored patterns that
    :func:`assocmem.theory.hopfield.dense_bit_error` predicts. Every trial and probe runs in one
    tensor program.

    Parameters
    ----------
    K : int or sequence of int
        Number(s) of stored patterns.
    d : int
        Dimension, :math:`\ge 1`.
    a : int
        Power of the interaction function :math:`F(x) = x^a`, an integer :math:`\ge 2` (:math:`a = 2`: the
        classical network).
    steps : int
        Maximum number of synchronous updates, :math:`\ge 1`.
    noise : float
        Fraction of bits flipped in the starting states, in :math:`[0, 0.5]`.
    trials : int
        Independent pattern draws, :math:`\ge 1`.
    probes : int
        Number of stored patterns probed per trial, :math:`\ge 1` (capped at ``max(K)``).
    seed : int
        Seed of the patterns (the flips use ``seed + 1``).
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    K, seed = check.int_array("K", K), check.seed("seed", seed)
    d, a = check.positive_int("d", d), _power(a)
    steps, trials = check.positive_int("steps", steps), check.positive_int("trials", trials)
    probes = min(check.positive_int("probes", probes), int(K.max()))
    noise = check.real("noise", noise, low=0.0, high=0.5)
    patterns = random_sign_patterns(int(K.max()), d, trials=trials, seed=seed, device=device)
    starts = flip_bits(patterns[:, :probes], noise, seed=seed + 1) if noise > 0 else patterns[:, :probes]
    wrong, exact = [], []
    for k in K:
        targets = patterns[:, : min(probes, k)]
        states = _iterate_dense(starts[:, : min(probes, k)], patterns[:, :k], a, steps)
        errors = (states != targets).double().mean(-1)
        wrong.append(errors.mean(-1))
        exact.append((errors == 0).double().mean(-1))
    as_numpy = lambda rows: torch.stack(rows, dim=-1).cpu().numpy()  # noqa: E731
    return SignRetrieval(K=K, wrong_bits=as_numpy(wrong), exact=as_numpy(exact))


def dense_capacity(d, a: int = 2, *, error: float = 0.01, trials: int = 8, probes: int = 32,
                   points: int = 13, seed: int = 0, device=None) -> np.ndarray:
    r"""Measured capacity of the dense memory: the number of stored patterns at which the one-step
    bit error of stored patterns reaches ``error``.

    For each ``d`` the bit error is measured on a geometric grid of ``points`` values of ``K`` around
    the prediction :func:`~assocmem.theory.hopfield.dense_capacity_at_error` (from a quarter to four
    times it) and the crossing is interpolated on log-log axes, per trial. Returns an array of shape
    ``(trials, len(d))``, ready for :func:`assocmem.fitting.fit_power_law` (slope
    :math:`\approx a - 1`).

    Parameters
    ----------
    d : int or sequence of int
        Dimensions, each :math:`\ge 2`.
    a : int
        Power of the interaction function :math:`F(x) = x^a`, an integer :math:`\ge 2` (:math:`a = 2`: the
        classical network).
    error : float
        Target one-step bit error, in :math:`(0, 0.5)`.
    trials : int
        Independent pattern draws per dimension.
    probes : int
        Stored patterns probed per trial.
    points : int
        Number of grid values of ``K`` per dimension, :math:`\ge 2`.
    seed : int
        Base seed; dimension ``i`` uses ``seed + 7919 * i``.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    d, a, seed = check.int_array("d", d, minimum=2), _power(a), check.seed("seed", seed)
    error = check.real("error", error, low=0.0, high=0.5, low_open=True, high_open=True)
    points = check.positive_int("points", points, minimum=2)
    columns = []
    trials, probes = check.positive_int("trials", trials), check.positive_int("probes", probes)
    for i, dim in enumerate(d):
        predicted = float(theory.dense_capacity_at_error(dim, a, error))
        if predicted < 1:
            raise ValueError(f"d, a, error: the predicted capacity at d={int(dim)}, a={a}, error={error} is "
                             f"{predicted:.3g} patterns, below one; nothing to measure")
        check.budget("points, d, a, trials, probes", nbytes=16.0 * points + 32.0 * trials * 4 * predicted * dim,
                     work=points * (8.0 * trials * probes * 4 * predicted * dim + 1e5),
                     formula="points values of K up to 4x the prediction, trials x probes x K x d each")
        grid = np.unique(np.geomspace(max(predicted / 4, 1), predicted * 4, points).round().astype(np.int64))
        measured = sign_retrieval(grid, int(dim), a=a, trials=trials, probes=probes,
                                  seed=seed + _SEED_STRIDE * i, device=device)
        columns.append([_crossing(grid, row, error, "error", f"d={int(dim)}, a={a}, trials={trials}, "
                                  f"probes={probes}, seed={seed}") for row in measured.wrong_bits])
    return np.asarray(columns).T


# ------------------------------------------------------------------------ thresholded (ReLU) memory
def thresholded_memory_scores(queries, input_embeddings, output_embeddings, labels, *, weights=None,
                              eta: float = 0.0, activation: str = "relu") -> torch.Tensor:
    r"""Scores of the thresholded memory of the talk,

    .. math:: g(x)_y = u_y^\top \sum_{x'} q(x')\, u_{f^*(x')}\, \phi(e_{x'}^\top e_x - \eta),

    with :math:`\phi = \mathrm{ReLU}` (``activation="relu"``) or the identity (``"linear"``, which
    with :math:`\eta = 0` is the outer-product memory :math:`u_y^\top W e_x`,
    :math:`W = \sum_{x'} q(x') u_{f^*(x')} e_{x'}^\top`, of chapter 2).

    ``queries`` ``(..., Q, d)`` are the :math:`e_x`, ``input_embeddings`` ``(..., N, d)`` the stored
    :math:`e_{x'}`, ``output_embeddings`` ``(..., M, d)`` the :math:`u_y`, ``labels`` ``(N,)`` the
    :math:`f^*(x')` and ``weights`` ``(N,)`` the :math:`q(x')` (default 1). Returns ``(..., Q, M)``.

    Parameters
    ----------
    queries : array or tensor, shape ``(..., Q, d)``
        The query embeddings :math:`e_x`.
    input_embeddings : array or tensor, shape ``(..., N, d)``
        The stored input embeddings :math:`e_{x'}`.
    output_embeddings : array or tensor, shape ``(..., M, d)``
        The output embeddings :math:`u_y`.
    labels : sequence of int, shape ``(N,)``
        The stored labels :math:`f^*(x')`, integers in :math:`[0, M-1]`.
    weights : array or tensor, shape ``(N,)``, optional
        The association weights :math:`q(x')` (default 1 each).
    eta : float
        Threshold :math:`\eta` of the ReLU; must be 0 with ``activation="linear"``.
    activation : {"relu", "linear"}
        :math:`\phi`: the ReLU or the identity.
    """
    outputs, inputs = _pair("output_embeddings", output_embeddings, "input_embeddings", input_embeddings,
                            min_dim_a=2)
    queries, inputs = _pair("queries", queries, "input_embeddings", inputs)
    outputs = outputs.to(inputs.dtype)
    N, M = inputs.shape[-2], outputs.shape[-2]
    labels = torch.as_tensor(check.int_array("labels", labels, minimum=0), device=inputs.device)
    if labels.numel() != N or int(labels.max()) >= M:
        raise ValueError(f"labels must hold {N} integers in [0, {M - 1}], got {labels.numel()} "
                         f"with max {int(labels.max())}")
    weights = torch.ones(N, dtype=inputs.dtype, device=inputs.device) if weights is None else \
        _tensor("weights", weights, min_dim=1).to(device=inputs.device, dtype=inputs.dtype)
    if weights.shape != (N,):
        raise ValueError(f"weights must have shape ({N},), got {tuple(weights.shape)}")
    eta = check.real("eta", eta)
    activation = check.choice("activation", activation, {"relu", "linear"})
    if activation == "linear" and eta != 0.0:
        raise ValueError("eta must be 0 with activation='linear' (the outer-product memory)")
    similarity = queries @ inputs.transpose(-1, -2)
    gated = torch.relu(similarity - eta) if activation == "relu" else similarity
    label_scores = outputs[..., labels, :] @ outputs.transpose(-1, -2)
    return gated @ (weights[:, None] * label_scores)


def thresholded_memory_error(N, d: int, *, M: int = 5, eta: float = 0.5, activation: str = "relu",
                             trials: int = 4, seed: int = 0, chunk: int = 512, device=None) -> np.ndarray:
    r"""Fraction of ``N`` stored associations :math:`x \mapsto f^*(x) = x \bmod M` recalled wrongly.

    Input and output embeddings are uniform on the unit sphere of :math:`\mathbb{R}^d`, every
    association has weight :math:`q = 1`, and each stored :math:`e_x` is queried
    (:func:`thresholded_memory_scores`, queries in chunks of ``chunk``). ``N`` is one count or a grid
    (nested draws: smaller memories hold the first associations of the largest). Returns
    ``(trials, len(N))``. Outer product (``"linear"``): errors once :math:`N \gtrsim d`. ReLU with
    threshold :math:`\eta`: another association interferes only inside a spherical cap of
    probability :func:`~assocmem.theory.hopfield.cap_probability`, so the capacity grows
    exponentially in ``d``.

    Parameters
    ----------
    N : int or sequence of int
        Number(s) of stored associations.
    d : int
        Dimension, :math:`\ge 1`.
    M : int
        Number of output classes, :math:`\ge 2`.
    eta : float
        Threshold :math:`\eta` (see :func:`thresholded_memory_scores`).
    activation : {"relu", "linear"}
        The activation :math:`\phi`.
    trials : int
        Independent embedding draws.
    seed : int
        Seed of the embeddings.
    chunk : int
        Queries scored at once (memory bound), :math:`\ge 1`.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    N = check.int_array("N", N)
    d, M = check.positive_int("d", d), check.positive_int("M", M, minimum=2)
    chunk, trials = check.positive_int("chunk", chunk), check.positive_int("trials", trials)
    _thresholded_budget("N, M, d, trials, chunk", N, d, M, trials, chunk)
    gen = _generator(seed, device)
    inputs = sphere_patterns(int(N.max()), d, trials=trials, seed=gen, device=device)
    outputs = sphere_patterns(M, d, trials=trials, seed=gen, device=device)
    errors = []
    for n in N:
        labels = mod_labels(int(n), M)
        targets = torch.as_tensor(labels, device=inputs.device)
        wrong = torch.zeros(inputs.shape[0], dtype=torch.float64, device=inputs.device)
        for start in range(0, n, chunk):
            queries = inputs[:, start : min(start + chunk, n)]
            scores = thresholded_memory_scores(queries, inputs[:, :n], outputs, labels, eta=eta,
                                               activation=activation)
            wrong += (scores.argmax(-1) != targets[start : start + chunk]).double().sum(-1)
        errors.append(wrong / n)
    return torch.stack(errors, dim=-1).cpu().numpy()


def thresholded_memory_capacity(d, *, eta: float = 0.5, activation: str = "relu", error: float = 0.01,
                                max_patterns: int = 2**12, M: int = 5, trials: int = 4, seed: int = 0,
                                device=None) -> np.ndarray:
    r"""Measured capacity of :func:`thresholded_memory_error`: per trial and dimension, the number of
    associations at which the error reaches ``error`` (interpolated on a grid of powers of
    :math:`\sqrt 2` up to ``max_patterns``). Returns ``(trials, len(d))``.

    Parameters
    ----------
    d : int or sequence of int
        Dimensions, each :math:`\ge 2`.
    eta : float
        Threshold :math:`\eta` (see :func:`thresholded_memory_scores`).
    activation : {"relu", "linear"}
        The activation :math:`\phi`.
    error : float
        Target recall error at which the capacity is read off.
    max_patterns : int
        Largest number of associations on the grid.
    M : int
        Number of output classes, :math:`\ge 2`; also the grid's first value.
    trials : int
        Independent embedding draws per dimension.
    seed : int
        Base seed (one seed per dimension is derived from it).
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    d, seed = check.int_array("d", d, minimum=2), check.seed("seed", seed)
    grid = _doubling_grid(max_patterns, start=check.positive_int("M", M, minimum=2), start_name="M")
    for dim in d:
        _thresholded_budget("max_patterns, M, d, trials", grid, int(dim), M, check.positive_int("trials", trials),
                            512)
    settings = f"eta={eta}, activation={activation!r}, M={M}, trials={trials}, seed={seed}"
    return _capacity(d, grid, error, "error", lambda dim, s: thresholded_memory_error(
        grid, dim, M=M, eta=eta, activation=activation, trials=trials, seed=s, device=device), seed, settings)


# ------------------------------------------------------------------------- modern Hopfield network
def modern_energy(states, patterns, beta: float) -> torch.Tensor:
    r"""Energy of the modern Hopfield network [R20],

    .. math:: E(\xi) = -\beta^{-1}\log\sum_{i=1}^N e^{\beta x_i^\top\xi} + \tfrac12\xi^\top\xi
              + \beta^{-1}\log N + \tfrac12 M^2, \qquad M = \max_i\|x_i\|.

    ``states`` ``(..., Q, d)``, ``patterns`` ``(..., N, d)``; returns ``(..., Q)``, always
    :math:`\ge 0`.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns :math:`x_i`.
    beta : float
        Inverse temperature :math:`\beta > 0` of the softmax.
    """
    states, patterns = _pair("states", states, "patterns", patterns)
    beta = _beta(beta)
    N = patterns.shape[-2]
    radius_sq = (patterns**2).sum(-1).amax(-1, keepdim=True)
    scores = states @ patterns.transpose(-1, -2)
    top = scores.amax(-1, keepdim=True)  # lse / beta = top + lse(beta (x - top)) / beta: finite for any beta
    lse = top.squeeze(-1) + torch.logsumexp(beta * (scores - top), dim=-1) / beta
    return -lse + 0.5 * (states**2).sum(-1) + math.log(N) / beta + 0.5 * radius_sq


def modern_update(states, patterns, beta: float) -> torch.Tensor:
    r"""The modern Hopfield update :math:`\xi \leftarrow X\,\mathrm{softmax}(\beta X^\top\xi)`: a
    concave-convex step that never increases :func:`modern_energy`. Same shapes as the energy.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns, the columns of :math:`X`.
    beta : float
        Inverse temperature :math:`\beta > 0` of the softmax.
    """
    states, patterns = _pair("states", states, "patterns", patterns)
    return _softmax_weights(states, patterns, _beta(beta)) @ patterns


@dataclass(frozen=True)
class Trajectory:
    """States ``(steps + 1, ..., Q, d)`` and energies ``(steps + 1, ..., Q)`` along an update rule."""

    states: torch.Tensor
    energies: torch.Tensor


def modern_retrieve(states, patterns, beta: float, *, steps: int = 1) -> Trajectory:
    """Apply :func:`modern_update` ``steps`` times, recording states and :func:`modern_energy`.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The starting states.
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns.
    beta : float
        Inverse temperature :math:`\\beta > 0` of the softmax.
    steps : int
        Number of updates, :math:`\\ge 1`.

    Returns
    -------
    Trajectory
        ``steps + 1`` states (the start first) and their energies.
    """
    steps, beta = check.positive_int("steps", steps), _beta(beta)
    start, patterns = _pair("states", states, "patterns", patterns)
    single = start.dim() == 1 and patterns.dim() > 2  # one state against a batch of pattern sets
    start = start.unsqueeze(0) if single else start
    rows = start.shape[:-1] if start.dim() >= 2 else ()
    try:  # the shape of every update: the states' rows under the batch dimensions of both
        shape = (*torch.broadcast_shapes(rows[:-1], patterns.shape[:-2]), *rows[-1:], start.shape[-1])
    except RuntimeError:
        raise ValueError(f"states {tuple(start.shape)} and patterns {tuple(patterns.shape)} must have batch "
                         f"dimensions that broadcast") from None
    size = math.prod(shape)
    check.budget("steps, states, patterns", nbytes=2.0 * (steps + 1) * size * start.element_size(),
                 work=steps * (4.0 * size * patterns.shape[-2] + 1e5), formula="steps x (states x patterns)")
    states = [start.expand(shape)]
    for _ in range(steps):
        states.append(_softmax_weights(states[-1], patterns, beta) @ patterns)
    states = torch.stack(states)
    energies = modern_energy(states, patterns, beta)
    if single:
        states, energies = states.squeeze(-2), energies.squeeze(-1)
    return Trajectory(states=states, energies=energies)


def separation(patterns) -> torch.Tensor:
    r"""Separation :math:`\Delta_i = x_i^\top x_i - \max_{j \ne i} x_i^\top x_j` of each stored pattern;
    ``patterns`` ``(..., N, d)`` with :math:`N \ge 2`, returns ``(..., N)``.

    Parameters
    ----------
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns :math:`x_i`, :math:`N \ge 2`.
    """
    patterns = _tensor("patterns", patterns, min_dim=2)
    if patterns.shape[-2] < 2:
        raise ValueError("patterns must hold at least 2 patterns to define a separation")
    gram = patterns @ patterns.transpose(-1, -2)
    self_overlap = gram.diagonal(dim1=-2, dim2=-1)
    eye = torch.eye(gram.shape[-1], dtype=torch.bool, device=gram.device)
    return self_overlap - gram.masked_fill(eye, -math.inf).amax(-1)


def hopfield_attention(queries, keys, values, beta: float | None = None) -> torch.Tensor:
    r"""Attention as one Hopfield update: :math:`\mathrm{softmax}(\beta\, Q K^\top)\, V`.

    With :math:`K = V = X` (the stored patterns) this is :func:`modern_update`; with
    :math:`\beta = 1/\sqrt{d_k}` (the default) it equals
    ``torch.nn.functional.scaled_dot_product_attention(queries, keys, values)``.

    Parameters
    ----------
    queries : array or tensor, shape ``(..., Q, d_k)``
        The queries :math:`Q` (one per row).
    keys : array or tensor, shape ``(..., N, d_k)``
        The keys :math:`K`.
    values : array or tensor, shape ``(..., N, d_v)``
        The values :math:`V`, one row per key.
    beta : float, optional
        Inverse temperature :math:`\beta > 0` (default :math:`1/\sqrt{d_k}`).

    Returns
    -------
    torch.Tensor, shape ``(..., Q, d_v)``
        The attended values.
    """
    queries, keys = _pair("queries", queries, "keys", keys, min_dim_a=2)
    values = _tensor("values", values, min_dim=2)
    dtype = torch.promote_types(keys.dtype, values.dtype)
    queries, keys, values = queries.to(dtype), keys.to(dtype), values.to(device=keys.device, dtype=dtype)
    if values.shape[-2] != keys.shape[-2]:
        raise ValueError(f"values must have one row per key ({keys.shape[-2]}), got {values.shape[-2]}")
    beta = 1.0 / math.sqrt(keys.shape[-1]) if beta is None else _beta(beta)
    return _softmax_weights(queries, keys, beta) @ values


def effective_patterns(states, patterns, beta: float) -> torch.Tensor:
    r"""Number of patterns a state mixes: :math:`\exp(H(p))` for :math:`p = \mathrm{softmax}(\beta
    X^\top\xi)`, from 1 (one pattern) to :math:`N` (the uniform average). Returns ``(..., Q)``.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)`` or ``(d,)``
        The network states (queries).
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns, the columns of :math:`X`.
    beta : float
        Inverse temperature :math:`\beta > 0` of the softmax.
    """
    states, patterns = _pair("states", states, "patterns", patterns)
    p = _softmax_weights(states, patterns, _beta(beta))
    entropy = -(p * torch.log(p.clamp_min(torch.finfo(p.dtype).tiny))).sum(-1)
    return entropy.exp()


def fixed_point_kind(states, patterns, beta: float) -> np.ndarray:
    r"""Classify (approximate) fixed points by :func:`effective_patterns` :math:`n_{\mathrm{eff}}`:
    ``"single pattern"`` when :math:`n_{\mathrm{eff}} < 1.5`, ``"global average"`` when
    :math:`n_{\mathrm{eff}} > N/2`, ``"metastable"`` (the average of a subset) in between.

    Parameters
    ----------
    states : array or tensor, shape ``(..., Q, d)``
        The (approximate) fixed points to classify.
    patterns : array or tensor, shape ``(..., N, d)``
        The stored patterns.
    beta : float
        Inverse temperature :math:`\beta > 0` of the softmax.

    Returns
    -------
    numpy.ndarray of str, shape ``(..., Q)``
        One of ``"single pattern"``, ``"metastable"``, ``"global average"`` per state.
    """
    n_eff = effective_patterns(states, patterns, beta).cpu().numpy()
    N = _tensor("patterns", patterns, min_dim=2).shape[-2]
    kinds = np.full(n_eff.shape, FIXED_POINT_KINDS[1], dtype=object)
    kinds[n_eff < 1.5] = FIXED_POINT_KINDS[0]
    kinds[n_eff > N / 2] = FIXED_POINT_KINDS[2]
    return kinds


def fixed_point_census(patterns, betas, *, queries: int = 200, steps: int = 100, seed: int = 0) -> dict:
    r"""Where the modern Hopfield update goes, as :math:`\beta` varies.

    ``queries`` random Gaussian starts (scaled to the patterns' mean norm) are updated ``steps``
    times for each :math:`\beta` in ``betas``; returns ``{"beta": array, kind: fraction array}`` for
    the three kinds of :func:`fixed_point_kind`, plus ``"effective_patterns"`` (median over starts).
    Small :math:`\beta`: everything flows to the global average; large :math:`\beta`: to single
    patterns; in between, metastable averages of similar patterns.

    Parameters
    ----------
    patterns : array or tensor, shape ``(N, d)``
        The stored patterns.
    betas : sequence of float
        Inverse temperatures to scan, each :math:`> 0`.
    queries : int
        Number of random starts, :math:`\ge 1`.
    steps : int
        Updates per start, :math:`\ge 1`.
    seed : int or torch.Generator
        Seed of the starts.
    """
    patterns = _tensor("patterns", patterns, min_dim=2)
    if patterns.dim() != 2:
        raise ValueError(f"patterns must have shape (N, d), got {tuple(patterns.shape)}")
    betas = check.real_array("betas", betas).reshape(-1)
    if np.any(betas <= 0):
        raise ValueError(f"betas must all be > 0, got min {betas.min()}")
    steps, queries = check.positive_int("steps", steps), check.positive_int("queries", queries)
    N, d = patterns.shape
    check.budget("queries, steps, betas", nbytes=2.0 * (steps + 1) * queries * d * patterns.element_size(),
                 work=betas.size * steps * (4.0 * queries * N * d + 1e5),
                 formula="len(betas) x steps x queries x N x d, the trajectory of every start kept")
    gen = _generator(seed, patterns.device)
    starts = torch.randn((queries, patterns.shape[-1]), generator=gen, device=gen.device,
                         dtype=patterns.dtype).to(patterns.device)
    starts = starts / starts.norm(dim=-1, keepdim=True) * patterns.norm(dim=-1).mean()
    census = {"beta": betas, **{kind: [] for kind in FIXED_POINT_KINDS}, "effective_patterns": []}
    for beta in betas:
        final = modern_retrieve(starts, patterns, float(beta), steps=steps).states[-1]
        kinds = fixed_point_kind(final, patterns, float(beta))
        for kind in FIXED_POINT_KINDS:
            census[kind].append(float(np.mean(kinds == kind)))
        census["effective_patterns"].append(float(effective_patterns(final, patterns, float(beta)).median()))
    return {key: np.asarray(value) for key, value in census.items()}


def one_step_retrieval(patterns, beta: float, *, noise: float = 0.1, seed: int = 0) -> dict:
    r"""One update from a noisy copy of each stored pattern, against the bound of [R20] (Theorem 5).

    Each query is :math:`\xi = x_i + \sigma M g/\sqrt d` with :math:`g` standard Gaussian,
    :math:`\sigma` = ``noise`` and :math:`M = \max\|x_j\|`. Returns numpy arrays (one entry per stored
    pattern): ``"error"`` :math:`\|f(\xi) - x_i\|`, ``"bound"``
    :math:`2(N-1)M e^{-\beta(\Delta_i - 2M\|\xi - x_i\|)}`, ``"separation"`` :math:`\Delta_i` and
    ``"distance"`` :math:`\|\xi - x_i\|`.

    Parameters
    ----------
    patterns : array or tensor, shape ``(N, d)``
        The stored patterns :math:`x_i`, :math:`N \ge 2`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    noise : float
        Relative noise level :math:`\sigma \ge 0` of the queries.
    seed : int or torch.Generator
        Seed of the noise.
    """
    patterns = _tensor("patterns", patterns, min_dim=2)
    beta = _beta(beta)
    noise = check.real("noise", noise, low=0.0)
    N, d = patterns.shape[-2:]
    radius = float(patterns.norm(dim=-1).max())
    gen = _generator(seed, patterns.device)
    g = torch.randn(patterns.shape, generator=gen, device=gen.device, dtype=patterns.dtype)
    queries = patterns + noise * radius * g.to(patterns.device) / math.sqrt(d)
    distance = (queries - patterns).norm(dim=-1)
    if not bool(torch.isfinite(distance).all()):
        raise ValueError(f"noise={noise}: the noisy queries overflow {patterns.dtype} for these patterns")
    error = (modern_update(queries, patterns, beta) - patterns).norm(dim=-1)
    delta = separation(patterns)
    try:
        bound = theory.retrieval_error_bound(N, radius, beta, delta.cpu().numpy(), distance.cpu().numpy())
    except ValueError as overflow:
        raise ValueError(f"beta={beta}, noise={noise}: {overflow}") from None
    return {"error": error.cpu().numpy(), "bound": bound, "separation": delta.cpu().numpy(),
            "distance": distance.cpu().numpy()}


def modern_retrieval_failure(N, d: int, *, beta: float = 1.0, K: float = 1.0, tolerance: float = 0.1,
                             trials: int = 4, probes: int = 64, seed: int = 0, device=None) -> np.ndarray:
    r"""Fraction of stored patterns *not* retrieved in one update from the pattern itself.

    Patterns are uniform on the sphere of radius :math:`M = K\sqrt{d-1}` (the setting of [R20],
    Theorem 3); pattern :math:`x_i` counts as retrieved when :math:`\|f(x_i) - x_i\| \le`
    ``tolerance`` :math:`\cdot M`. ``N`` is one count or a grid (nested draws); the first ``probes``
    patterns (or all, if fewer) are probed against all ``N`` stored ones. Returns ``(trials, len(N))``.

    Parameters
    ----------
    N : int or sequence of int
        Number(s) of stored patterns, each :math:`\ge 2`.
    d : int
        Dimension, :math:`\ge 2`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    K : float
        Radius factor :math:`K > 0`: the patterns have norm :math:`K\sqrt{d-1}`.
    tolerance : float
        Retrieval tolerance relative to :math:`M`, :math:`> 0`.
    trials : int
        Independent pattern draws.
    probes : int
        Patterns probed per trial, :math:`\ge 1`.
    seed : int
        Seed of the patterns.
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    N = check.int_array("N", N, minimum=2)
    d = check.positive_int("d", d, minimum=2)
    K = check.real("K", K, low=0.0, low_open=True)
    tolerance = check.real("tolerance", tolerance, low=0.0, low_open=True)
    probes = check.positive_int("probes", probes)
    _retrieval_budget("N, d, trials, probes", N, d, check.positive_int("trials", trials), probes)
    radius = K * math.sqrt(d - 1)
    patterns = sphere_patterns(int(N.max()), d, radius=radius, trials=trials, seed=seed, device=device)
    failures = []
    for n in N:
        targets = patterns[:, : min(probes, n)]
        retrieved = modern_update(targets, patterns[:, :n], beta)
        failures.append(((retrieved - targets).norm(dim=-1) > tolerance * radius).double().mean(-1))
    return torch.stack(failures, dim=-1).cpu().numpy()


def modern_capacity(d, *, beta: float = 1.0, K: float = 1.0, failure: float = 0.01, tolerance: float = 0.1,
                    max_patterns: int = 2**14, trials: int = 4, probes: int = 64, seed: int = 0,
                    device=None) -> np.ndarray:
    r"""Measured capacity of the modern Hopfield network: per trial and dimension, the number of
    stored patterns at which the one-step failure rate of :func:`modern_retrieval_failure` reaches
    ``failure`` (interpolated on a grid of powers of :math:`\sqrt 2` up to ``max_patterns``). Returns
    ``(trials, len(d))``; grows exponentially in ``d`` (compare
    :func:`~assocmem.theory.hopfield.modern_capacity_lower_bound`).

    Parameters
    ----------
    d : int or sequence of int
        Dimensions, each :math:`\ge 2`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    K : float
        Radius factor (see :func:`modern_retrieval_failure`), :math:`> 0`.
    failure : float
        Target one-step failure rate at which the capacity is read off.
    tolerance : float
        Retrieval tolerance relative to the patterns' norm, :math:`> 0`.
    max_patterns : int
        Largest number of patterns on the grid.
    trials : int
        Independent pattern draws per dimension.
    probes : int
        Patterns probed per trial.
    seed : int
        Base seed (one seed per dimension is derived from it).
    device : str or torch.device, optional
        Device of the returned tensor (default: CPU).
    """
    d, seed = check.int_array("d", d, minimum=2), check.seed("seed", seed)
    grid = _doubling_grid(max_patterns, start=2)
    for dim in d:
        _retrieval_budget("max_patterns, d, trials, probes", grid, int(dim), check.positive_int("trials", trials),
                          check.positive_int("probes", probes))
    settings = f"beta={beta}, K={K}, tolerance={tolerance}, trials={trials}, probes={probes}, seed={seed}"
    return _capacity(d, grid, failure, "failure", lambda dim, s: modern_retrieval_failure(
        grid, dim, beta=beta, K=K, tolerance=tolerance, trials=trials, probes=probes, seed=s,
        device=device), seed, settings)


# -------------------------------------------------------------------------- layer energies [NBDH24]
def layer_energy(x, patterns) -> torch.Tensor:
    r"""Layer energy of [NBDH24]: :math:`E(x) = -\log\sum_{i=1}^N e^{-\|x - \rho_i\|^2}`.

    Parameters
    ----------
    x : array or tensor, shape ``(..., Q, n)`` or ``(n,)``
        Points (e.g. token representations) at which to evaluate the energy.
    patterns : array or tensor, shape ``(..., N, n)``
        The stored patterns :math:`\rho_i` of the layer; batch dimensions broadcast with ``x``'s.

    Returns
    -------
    torch.Tensor, shape ``(..., Q)`` (a scalar for a single point)
        Between :math:`g(x) - \log N` and :math:`g(x)`, :math:`g` the squared distance to the nearest
        pattern (:func:`nearest_neighbour_energy`, Proposition 1;
        :func:`~assocmem.theory.hopfield.nearest_neighbour_bounds`). Chapter 5.
    """
    return -torch.logsumexp(-_squared_distances(x, patterns), dim=-1)


def nearest_neighbour_energy(x, patterns) -> torch.Tensor:
    r""":math:`g(x) = \min_i \|x - \rho_i\|^2`, the squared distance to the nearest stored pattern;
    :math:`g - \log N \le E \le g` (Proposition 1 of [NBDH24]).

    Parameters
    ----------
    x : array or tensor, shape ``(..., Q, n)`` or ``(n,)``
        Points at which to evaluate :math:`g`.
    patterns : array or tensor, shape ``(..., N, n)``
        The stored patterns :math:`\rho_i`.

    Returns
    -------
    torch.Tensor, shape ``(..., Q)``
        :math:`g(x)` per point.
    """
    return _squared_distances(x, patterns).amin(-1)


def layer_update(x, patterns) -> torch.Tensor:
    r"""One majorization-minimization step on :func:`layer_energy`:
    :math:`x \leftarrow \sum_i p_i(x)\,\rho_i` with :math:`p(x) = \mathrm{softmax}_i(-\|x - \rho_i\|^2)`,
    the minimiser of :func:`layer_majorizer` anchored at ``x`` (an attention step over the stored
    patterns). Never increases :func:`layer_energy`.

    Parameters
    ----------
    x : array or tensor, shape ``(..., Q, n)`` or ``(n,)``
        The points to update.
    patterns : array or tensor, shape ``(..., N, n)``
        The stored patterns :math:`\rho_i`.

    Returns
    -------
    torch.Tensor, the shape of ``x``
        The updated points.
    """
    patterns = _tensor("patterns", patterns, min_dim=2)
    weights = torch.softmax(-_squared_distances(x, patterns), dim=-1)
    return weights @ patterns


def layer_majorizer(x, anchor, patterns) -> torch.Tensor:
    r"""The majorizer of :func:`layer_energy` at ``anchor`` :math:`a` (Jensen's inequality),

    .. math:: Q(x \mid a) = \sum_i p_i(a)\,\|x - \rho_i\|^2 + \sum_i p_i(a)\log p_i(a) \;\ge\; E(x),
              \qquad Q(a \mid a) = E(a),

    a quadratic whose minimiser is :func:`layer_update` of ``anchor``. ``x`` and ``anchor`` have the
    same shape.

    Parameters
    ----------
    x : array or tensor, shape ``(..., Q, n)`` or ``(n,)``
        Points at which to evaluate :math:`Q(x \mid a)`.
    anchor : array or tensor, the shape of ``x``
        The anchor points :math:`a`.
    patterns : array or tensor, shape ``(..., N, n)``
        The stored patterns :math:`\rho_i`.

    Returns
    -------
    torch.Tensor, shape ``(..., Q)``
        :math:`Q(x \mid a)` per point.
    """
    x, anchor = _tensor("x", x, min_dim=1), _tensor("anchor", anchor, min_dim=1)
    if x.shape != anchor.shape:
        raise ValueError(f"x and anchor must have the same shape, got {tuple(x.shape)} and {tuple(anchor.shape)}")
    log_p = torch.log_softmax(-_squared_distances(anchor, patterns), dim=-1)
    return (log_p.exp() * (_squared_distances(x, patterns) + log_p)).sum(-1)


def global_energy(layer_energies, dim: int = -1) -> torch.Tensor:
    r"""Global energy of a stack of :math:`l` layers [NBDH24]:
    :math:`E_{\mathrm{global}} = -\log\sum_{t=1}^{l} e^{-E_t}`, a soft minimum of the layer energies.

    Parameters
    ----------
    layer_energies : array or tensor
        One entry per layer along ``dim``, e.g. ``torch.stack([layer_energy(x, P_t) for P_t in layers], -1)``.
    dim : int
        The layer axis (default: the last).

    Returns
    -------
    torch.Tensor
        ``layer_energies`` reduced along ``dim``; it lies in :math:`[\min_t E_t - \log l, \min_t E_t]`,
        strictly below the minimum when :math:`l \ge 2`
        (:func:`~assocmem.theory.hopfield.global_energy_bounds`). Chapter 5.
    """
    energies = _tensor("layer_energies", layer_energies, min_dim=1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -energies.dim() <= dim < energies.dim():
        raise ValueError(f"dim must be an axis of layer_energies (shape {tuple(energies.shape)}), got {dim!r}")
    return -torch.logsumexp(-energies, dim=dim)


# ------------------------------------------------------------------------------ sweep experiments
@experiment("hopfield_dense_capacity")
def dense_capacity_experiment(d: int = 64, a: int = 2, error: float = 0.01, trials: int = 8,
                              probes: int = 32, seed: int = 0, device: str = "cpu") -> dict:
    """Measured one-step capacity of the dense memory F(x) = x^a at dimension d, against the
    signal-to-noise prediction d^(a-1) / ((2a-3)!! z^2).

    Parameters
    ----------
    d : int
        Dimension of the binary patterns.
    a : int
        Interaction order of the dense memory, ``F(x) = x**a`` (``a = 2`` is the classical network).
    error : float
        The one-step bit error at which the capacity is read (``0 < error < 0.5``).
    trials : int
        Independent pattern draws.
    probes : int
        Stored patterns probed per trial.
    seed : int
        Seed of the patterns.
    device : str
        Torch device of the computation.

    Returns
    -------
    dict
        One row: ``capacity`` and ``capacity_std`` (mean and standard deviation over the trials of the
        number of patterns at which the bit error reaches ``error``) and ``predicted``.
    """
    measured = dense_capacity([d], a, error=error, trials=trials, probes=probes, seed=seed, device=device)[:, 0]
    return {"capacity": float(measured.mean()), "capacity_std": float(measured.std()),
            "predicted": float(theory.dense_capacity_at_error(d, a, error))}


@experiment("hopfield_modern_capacity")
def modern_capacity_experiment(d: int = 12, beta: float = 1.0, K: float = 1.0, failure: float = 0.01,
                               tolerance: float = 0.1,
                               max_patterns: int = 2**16, trials: int = 4, probes: int = 64,
                               seed: int = 0, device: str = "cpu") -> dict:
    """Measured one-step capacity of the modern Hopfield network with patterns on the sphere of
    radius K sqrt(d-1) (the setting of [R20], Theorem 3), against the mean-field scale.

    Parameters
    ----------
    d : int
        Dimension of the patterns.
    beta : float
        Inverse temperature of the softmax update.
    K : float
        Patterns lie on the sphere of radius ``K * sqrt(d - 1)``.
    failure : float
        The one-step failure rate at which the capacity is read.
    tolerance : float
        A pattern counts as retrieved when the update lands within ``tolerance`` times the radius.
    max_patterns : int
        Largest number of stored patterns tried (a grid of powers of sqrt 2); the measured curve must
        cross ``failure`` below it, or the experiment raises.
    trials : int
        Independent pattern draws.
    probes : int
        Stored patterns probed per trial.
    seed : int
        Seed of the patterns.
    device : str
        Torch device of the computation.

    Returns
    -------
    dict
        One row: ``capacity`` and ``capacity_std`` (over the trials) and ``mean_field``, the mean-field
        scale of the capacity.
    """
    measured = modern_capacity([d], beta=beta, K=K, failure=failure, tolerance=tolerance,
                               max_patterns=max_patterns, trials=trials, probes=probes, seed=seed,
                               device=device)[:, 0]
    return {"capacity": float(measured.mean()), "capacity_std": float(measured.std()),
            "mean_field": float(theory.modern_capacity_scale(d, beta=beta, K=K, tolerance=tolerance))}


# ---------------------------------------------------------------------------------------- helpers
def _generator(seed, device) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    seed = check.seed("seed", seed)
    device = torch.device(check.device("device", device)) if device is not None else torch.device("cpu")
    return torch.Generator(device=device).manual_seed(seed)


def _tensor(name: str, value, *, min_dim: int) -> torch.Tensor:
    if isinstance(value, torch.Tensor):
        tensor = value if value.is_floating_point() else value.to(torch.float64)
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be an array of real numbers, got {type(value).__name__}") from err
    if tensor.dim() < min_dim:
        raise ValueError(f"{name} must have at least {min_dim} dimension(s), got shape {tuple(tensor.shape)}")
    if tensor.numel() == 0:
        raise ValueError(f"{name} must not be empty")
    if not bool(torch.isfinite(tensor).all()):
        raise ValueError(f"{name} must contain only finite numbers")
    return tensor


def _same_dimension(name_a: str, a: torch.Tensor, name_b: str, b: torch.Tensor) -> None:
    if a.shape[-1] != b.shape[-1]:
        raise ValueError(f"{name_a} has dimension {a.shape[-1]} but {name_b} has dimension {b.shape[-1]}")


def _pair(name_a: str, a, name_b: str, b, *, min_dim_a: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Validate ``a`` (``(..., d)``) and ``b`` (``(..., rows, d)``): same last dimension, one dtype
    (the wider of the two), ``b``'s device."""
    a, b = _tensor(name_a, a, min_dim=min_dim_a), _tensor(name_b, b, min_dim=2)
    _same_dimension(name_a, a, name_b, b)
    dtype = torch.promote_types(a.dtype, b.dtype)
    return a.to(device=b.device, dtype=dtype), b.to(dtype)


def _power(a) -> int:
    return check.positive_int("a", a, minimum=2)


def _beta(beta) -> float:
    return check.real("beta", beta, low=0.0, low_open=True)


def _order(order, d: int) -> list[int]:
    if order is None:
        return list(range(d))
    order = [int(i) for i in check.int_array("order", order, minimum=0)]
    if sorted(order) != list(range(d)):
        raise ValueError(f"order must be a permutation of range({d})")
    return order


def _keep_on_tie(field: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
    return torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, states)).to(states.dtype)


def _overlaps(states: torch.Tensor, patterns: torch.Tensor) -> torch.Tensor:
    return states @ patterns.transpose(-1, -2)


def _rows(states: torch.Tensor) -> tuple[torch.Tensor, bool]:
    """A private copy of ``states`` with at least one row dimension, and whether one was added."""
    single = states.dim() == 1
    return (states.unsqueeze(0) if single else states).clone(), single


def _flip_gain_terms(overlaps: torch.Tensor, a: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(sum_mu A_mu, B)``: flipping unit i changes the dense energy by ``sum A + s_i (B @ xi)_i``."""
    up, down = (overlaps + 2) ** a, (overlaps - 2) ** a
    constant = (overlaps**a - 0.5 * (up + down)).sum(-1, keepdim=True)
    return constant, 0.5 * (up - down)


def _dense_step(states: torch.Tensor, patterns: torch.Tensor, a: int) -> torch.Tensor:
    constant, linear = _flip_gain_terms(_overlaps(states, patterns), a)
    return torch.where(constant + states * (linear @ patterns) < 0, -states, states)


def _iterate_dense(states: torch.Tensor, patterns: torch.Tensor, a: int, steps: int) -> torch.Tensor:
    for _ in range(steps):
        new = _dense_step(states, patterns, a)
        if torch.equal(new, states):
            break
        states = new
    return states


def _doubling_grid(maximum: int, *, start: int, start_name: str | None = None) -> np.ndarray:
    if start_name is not None and not (isinstance(maximum, numbers.Integral) and maximum >= 2 * start):
        check.positive_int("max_patterns", maximum)  # a type error first
        raise ValueError(f"max_patterns must be at least 2 {start_name} = {2 * start} (the grid starts at "
                         f"{start_name}={start}), got {maximum}")
    maximum = check.positive_int("max_patterns", maximum, minimum=2 * start)
    return np.unique(np.geomspace(start, maximum, int(2 * math.log2(maximum / start)) + 1).round().astype(np.int64))


def _capacity(d: np.ndarray, grid: np.ndarray, level: float, name: str, measure, seed: int,
              settings: str) -> np.ndarray:
    """Per trial and dimension, where ``measure(dim, seed)`` (shape ``(trials, len(grid))``) reaches
    ``level``; each dimension gets its own seed. ``settings`` (the caller's other parameters, as
    ``name=value``) goes into the message when a curve does not cross."""
    level = check.real(name, level, low=0.0, high=1.0, low_open=True, high_open=True)
    columns = [[_crossing(grid, row, level, name, f"d={int(dim)}, {settings}")
                for row in measure(int(dim), seed + _SEED_STRIDE * i)] for i, dim in enumerate(d)]
    return np.asarray(columns).T


def _crossing(grid: np.ndarray, values: np.ndarray, level: float, name: str, settings: str = "") -> float:
    """First point where ``values`` (rising with ``grid``) reaches ``level``, log-log interpolated."""
    above = np.nonzero(values >= level)[0]
    if above.size == 0 or above[0] == 0:
        where = (f"stays below it (largest {values.max():.3g})" if above.size == 0
                 else "is already above it at the first point")
        raise ValueError(f"the measured curve does not cross {name}={level} inside the grid [{grid[0]}, {grid[-1]}] "
                         f"({settings}): it {where}; change the dimensions, the grid (max_patterns), {name} or "
                         f"these settings")
    hi = above[0]
    lo = hi - 1
    x0, x1 = np.log(grid[lo]), np.log(grid[hi])
    y0, y1 = np.log(max(values[lo], level * 1e-3)), np.log(values[hi])
    return float(np.exp(x0 + (np.log(level) - y0) * (x1 - x0) / (y1 - y0)))


def _thresholded_budget(names: str, N: np.ndarray, d: int, M: int, trials: int, chunk: int) -> None:
    """The cost bound of :func:`thresholded_memory_error` on the grid ``N``, refused naming ``names``."""
    largest = float(np.max(N))
    check.budget(names, nbytes=24.0 * trials * (largest + M) * d + 16.0 * trials * largest * (min(chunk, largest) + M),
                 work=float(sum(2.0 * trials * n * (n * (d + M) + M * d) for n in np.asarray(N, dtype=np.float64))),
                 formula="the embeddings, one chunk of scores and the label scores; N x N x (d + M) per trial")


def _retrieval_budget(names: str, N: np.ndarray, d: int, trials: int, probes: int) -> None:
    """The cost bound of :func:`modern_retrieval_failure` on the grid ``N``, refused naming ``names``."""
    largest = float(np.max(N))
    check.budget(names, nbytes=24.0 * trials * largest * d + 24.0 * trials * min(probes, largest) * largest,
                 work=float(sum(4.0 * trials * min(probes, n) * n * d for n in np.asarray(N, dtype=np.float64))),
                 formula="the patterns and one probe x pattern score matrix; probes x N x d per trial")


def _softmax_weights(states: torch.Tensor, patterns: torch.Tensor, beta: float) -> torch.Tensor:
    scores = states @ patterns.transpose(-1, -2)
    # shifted by the row maximum before scaling, so a huge beta gives the arg-max weights, not NaN
    return torch.softmax(beta * (scores - scores.amax(-1, keepdim=True)), dim=-1)


def _finite(energies: torch.Tensor, name: str) -> torch.Tensor:
    if not bool(torch.isfinite(energies).all()):
        raise ValueError(f"{name}: the energy overflows {energies.dtype} for these states and patterns "
                         f"(largest finite {torch.finfo(energies.dtype).max:.3g}); use float64 or a smaller {name}")
    return energies


def _squared_distances(x, patterns) -> torch.Tensor:
    x, patterns = _pair("x", x, "patterns", patterns)
    squeeze = x.dim() == 1
    x = x.unsqueeze(0) if squeeze else x
    sq = (x**2).sum(-1, keepdim=True) - 2 * x @ patterns.transpose(-1, -2) + (patterns**2).sum(-1).unsqueeze(-2)
    sq = sq.clamp_min(0.0)
    return sq.squeeze(-2) if squeeze else sq
