"""Hopfield networks (chapter 5): updates against brute force, energies along updates, attention,
capacity laws at small d, and the [NBDH24] propositions as property-based tests."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from assocmem import hopfield as hf
from assocmem.fitting import fit_power_law
from assocmem.sweep import experiments
from assocmem.theory import hopfield as th

SETTINGS = settings(max_examples=30, deadline=None, derandomize=True)  # same cases in CI as here
seeds = st.integers(0, 2**31 - 1)


def gaussian(*shape, seed, scale=1.0):
    gen = torch.Generator().manual_seed(seed)
    return scale * torch.randn(*shape, generator=gen, dtype=torch.float64)


# ------------------------------------------------------------------------------ classical and dense
def test_sign_patterns_are_reproducible_pm1():
    a = hf.random_sign_patterns(5, 7, trials=3, seed=4)
    assert a.shape == (3, 5, 7) and set(a.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(a, hf.random_sign_patterns(5, 7, trials=3, seed=4))
    assert not torch.equal(a, hf.random_sign_patterns(5, 7, trials=3, seed=5))


def test_hebbian_weights_are_symmetric_with_zero_diagonal():
    patterns = hf.random_sign_patterns(4, 6, seed=0)[0]
    w = hf.hebbian_weights(patterns)
    assert torch.allclose(w, w.T) and torch.all(w.diagonal() == 0)
    assert torch.allclose(w, sum(torch.outer(p, p) for p in patterns) / 6 - 4 / 6 * torch.eye(6, dtype=torch.float64))


@pytest.mark.parametrize("mode", ["synchronous", "asynchronous"])
def test_classical_update_is_the_dense_update_with_a_2(mode):
    patterns = hf.random_sign_patterns(9, 64, trials=3, seed=1)  # d = 64: exact float arithmetic
    states = hf.flip_bits(patterns, 0.25, seed=2)
    assert torch.equal(hf.classical_update(states, hf.hebbian_weights(patterns), mode=mode),
                       hf.dense_update(states, patterns, 2, mode=mode))


def test_a_zero_field_keeps_the_unit():
    """d = 64 (so W = P^T P / 64 is exact) and K = 10 even: d h_i = sum over 10 odd integers can be 0,
    which the K = 9 of the test above makes impossible. The update keeps s_i there, in both modes."""
    patterns = hf.random_sign_patterns(10, 64, trials=2, seed=3)
    weights = hf.hebbian_weights(patterns)
    states = hf.random_sign_patterns(20, 64, trials=2, seed=4)
    field = states @ weights
    assert (field == 0).sum() > 50                                  # the rule is exercised
    expected = torch.where(field > 0, 1.0, torch.where(field < 0, -1.0, states)).double()
    assert torch.equal(hf.classical_update(states, weights), expected)
    assert torch.equal(hf.dense_update(states, patterns, 2), expected)
    rows = states[0, :3].clone()                                    # asynchronous, brute force
    for i in range(64):
        h = rows @ weights[0, :, i]
        rows[:, i] = torch.where(h > 0, 1.0, torch.where(h < 0, -1.0, rows[:, i]))
    assert torch.equal(hf.classical_update(states[0, :3], weights[0], mode="asynchronous"), rows)
    assert torch.equal(hf.classical_update(states, torch.zeros(2, 64, 64, dtype=torch.float64)), states)


def test_capacity_crossing_is_interpolated_on_log_log_axes():
    """A curve that grows like K^2 crosses 0.008 at 20 sqrt(2), between the grid points 20 and 40."""
    grid, values = np.array([10, 20, 40, 80]), np.array([0.001, 0.004, 0.016, 0.064])
    assert hf._crossing(grid, values, 0.008, "error") == pytest.approx(20 * math.sqrt(2), rel=1e-12)
    assert hf._crossing(grid, values, 0.016, "error") == pytest.approx(40, rel=1e-12)
    capacity = hf.dense_capacity([64], 2, error=0.01, trials=3, probes=16, seed=0)
    assert not np.isin(capacity, np.arange(1, 1000)).any()          # measured between grid points


@pytest.mark.parametrize("a", [2, 3, 4])
def test_dense_update_picks_the_lower_energy_sign_brute_force(a):
    patterns = hf.random_sign_patterns(3, 7, seed=a)[0]
    states = hf.random_sign_patterns(6, 7, seed=10 + a)[0]
    expected = states.clone()
    for q, s in enumerate(states):
        for i in range(7):
            flipped = s.clone()
            flipped[i] = -s[i]
            if hf.dense_energy(flipped, patterns, a) < hf.dense_energy(s, patterns, a):
                expected[q, i] = -s[i]
    assert torch.equal(hf.dense_update(states, patterns, a), expected)


@pytest.mark.parametrize("a", [2, 3, 4])
@given(seed=seeds)
@SETTINGS
def test_asynchronous_updates_never_increase_the_energy(a, seed):
    patterns = hf.random_sign_patterns(12, 16, seed=seed)[0]
    states = hf.random_sign_patterns(5, 16, seed=seed + 1)[0]
    order = torch.randperm(16, generator=torch.Generator().manual_seed(seed)).tolist()
    weights = hf.hebbian_weights(patterns)
    for _ in range(3):
        new = hf.dense_update(states, patterns, a, mode="asynchronous", order=order)
        assert torch.all(hf.dense_energy(new, patterns, a) <= hf.dense_energy(states, patterns, a))
        old_classical = hf.classical_energy(states, weights)
        classical = hf.classical_update(states, weights, mode="asynchronous", order=order)
        assert torch.all(hf.classical_energy(classical, weights) <= old_classical + 1e-12)
        states = new


def test_single_state_updates_keep_their_shape():
    patterns = hf.random_sign_patterns(3, 8, seed=0)[0]
    state = patterns[0].clone()
    for mode in ("synchronous", "asynchronous"):
        assert torch.equal(hf.dense_update(state, patterns, 3, mode=mode), state)
        assert torch.equal(hf.classical_update(state, hf.hebbian_weights(patterns), mode=mode), state)


def test_classical_transition_near_0138():
    low, high = hf.sign_retrieval([10, 50], 200, steps=20, trials=4, probes=10, seed=0).wrong_bits.mean(0)
    assert low < 0.005           # K/d = 0.05: retrieval
    assert high > 0.1            # K/d = 0.25: well above 0.138, retrieval lost


def test_dense_capacity_follows_d_to_the_a_minus_1():
    d = np.array([16, 24, 32, 48])
    capacity = hf.dense_capacity(d, 3, error=0.01, trials=4, probes=32, seed=0)
    fit = fit_power_law(d, capacity)
    assert abs(fit.slope - 2) < 0.3
    ratio = capacity.mean(0) / th.dense_capacity_at_error(d, 3, 0.01)
    assert np.all((ratio > 0.6) & (ratio < 1.6))


# ------------------------------------------------------------------------------ thresholded memory
def test_linear_memory_is_the_outer_product_matrix():
    inputs, outputs = gaussian(6, 5, seed=0), gaussian(3, 5, seed=1)
    labels, weights = np.array([0, 1, 2, 0, 1, 2]), torch.arange(1, 7, dtype=torch.float64)
    W = sum(weights[x] * torch.outer(outputs[labels[x]], inputs[x]) for x in range(6))
    scores = hf.thresholded_memory_scores(inputs, inputs, outputs, labels, weights=weights, activation="linear")
    assert torch.allclose(scores, inputs @ W.T @ outputs.T)


def test_relu_memory_matches_its_formula():
    inputs, outputs = gaussian(5, 4, seed=2), gaussian(3, 4, seed=3)
    labels = np.array([2, 0, 1, 1, 0])
    scores = hf.thresholded_memory_scores(inputs[:2], inputs, outputs, labels, eta=0.3)
    for q in range(2):
        for y in range(3):
            expected = sum(outputs[y] @ outputs[labels[x]] * max(inputs[x] @ inputs[q] - 0.3, 0) for x in range(5))
            assert scores[q, y].item() == pytest.approx(float(expected))


def test_relu_memory_stores_far_more_than_d():
    N = [16, 256]
    relu = hf.thresholded_memory_error(N, 32, eta=0.5, trials=2, seed=0).mean(0)
    linear = hf.thresholded_memory_error(N, 32, eta=0.0, activation="linear", trials=2, seed=0).mean(0)
    assert relu[1] < 0.01 < 0.3 < linear[1]       # N = 8 d: the matrix is full, the ReLU memory is not
    assert linear[0] < linear[1]


# --------------------------------------------------------------------------------- modern Hopfield
@given(seed=seeds, beta=st.floats(0.01, 30.0), N=st.integers(1, 12), d=st.integers(1, 8),
       scale=st.floats(0.1, 3.0))
@SETTINGS
def test_modern_energy_decreases_along_trajectories_and_stays_in_bounds(seed, beta, N, d, scale):
    patterns = gaussian(N, d, seed=seed, scale=scale)
    trajectory = hf.modern_retrieve(gaussian(4, d, seed=seed + 1, scale=scale), patterns, beta, steps=6)
    energies = trajectory.energies
    assert torch.all(energies[1:] <= energies[:-1] + 1e-9 * (1 + energies[:-1].abs()))
    radius = float(patterns.norm(dim=-1).max())
    lower, upper = th.modern_energy_bounds(radius)
    assert torch.all(energies >= lower - 1e-9)
    assert torch.all(energies[1:] <= upper + 1e-9)  # updates stay in the convex hull, inside the ball


def test_modern_energy_formula():
    patterns, xi, beta = gaussian(3, 2, seed=0), gaussian(2, seed=1), 0.7
    lse = math.log(sum(math.exp(beta * float(p @ xi)) for p in patterns))
    radius = float(patterns.norm(dim=-1).max())
    expected = -lse / beta + 0.5 * float(xi @ xi) + th.modern_energy_offset(3, radius, beta)
    assert hf.modern_energy(xi, patterns, beta).item() == pytest.approx(expected)


def test_attention_is_one_hopfield_update():
    q, k, v = gaussian(2, 3, 5, 8, seed=0), gaussian(2, 3, 7, 8, seed=1), gaussian(2, 3, 7, 4, seed=2)
    torch_attention = torch.nn.functional.scaled_dot_product_attention(q, k, v)
    assert torch.allclose(hf.hopfield_attention(q, k, v), torch_attention, atol=1e-12)
    assert torch.allclose(hf.hopfield_attention(q, k, v, beta=1 / math.sqrt(8)), torch_attention, atol=1e-12)
    assert torch.allclose(hf.modern_update(q, k, 0.4), hf.hopfield_attention(q, k, k, beta=0.4))


def test_separation_brute_force():
    patterns = gaussian(5, 3, seed=4)
    gram = patterns @ patterns.T
    expected = [gram[i, i] - max(gram[i, j] for j in range(5) if j != i) for i in range(5)]
    assert torch.allclose(hf.separation(patterns), torch.stack(expected))


@given(seed=seeds, beta=st.floats(0.1, 10.0), noise=st.floats(0.0, 0.5), N=st.integers(2, 20))
@SETTINGS
def test_one_step_error_is_below_the_r20_bound(seed, beta, noise, N):
    patterns = hf.sphere_patterns(N, 6, radius=2.0, seed=seed)[0]
    result = hf.one_step_retrieval(patterns, beta, noise=noise, seed=seed + 1)
    assert np.all(result["error"] <= result["bound"] * (1 + 1e-9) + 1e-12)


def test_well_separated_patterns_are_retrieved_in_one_step():
    patterns = hf.sphere_patterns(20, 64, radius=8.0, seed=0)[0]
    result = hf.one_step_retrieval(patterns, 1.0, noise=0.2, seed=1)
    assert result["error"].max() < 1e-6


def test_three_kinds_of_fixed_points_as_beta_grows():
    patterns = hf.clustered_patterns(3, 5, 16, spread=0.5, radius=3.0, seed=0)
    census = hf.fixed_point_census(patterns, [0.01, 0.8, 10.0], queries=40, steps=60, seed=0)
    assert census["global average"][0] == 1.0
    assert census["metastable"][1] > 0.5
    assert census["single pattern"][2] == 1.0
    assert np.all(np.diff(census["effective_patterns"]) < 0)


def test_modern_capacity_grows_exponentially_at_the_mean_field_rate():
    d = np.array([6, 8, 10, 12])
    capacity = hf.modern_capacity(d, max_patterns=2**11, trials=3, probes=32, seed=0)
    rate = np.polyfit(d, np.log(capacity).mean(0), 1)[0]
    predicted = np.polyfit(d, np.log(th.modern_capacity_scale(d)), 1)[0]
    assert rate == pytest.approx(predicted, rel=0.25)


# ------------------------------------------------------------------------------- [NBDH24] energies
instances = st.tuples(seeds, st.integers(1, 10), st.integers(1, 5), st.floats(0.2, 3.0))


@given(instances)
@SETTINGS
def test_proposition_1_nearest_neighbour_bounds(instance):
    seed, N, n, scale = instance
    patterns, x = gaussian(N, n, seed=seed, scale=scale), gaussian(7, n, seed=seed + 1, scale=2 * scale)
    energy, g = hf.layer_energy(x, patterns), hf.nearest_neighbour_energy(x, patterns)
    lower, upper = th.nearest_neighbour_bounds(g.numpy(), N)
    assert np.all(lower - 1e-9 <= energy.numpy()) and np.all(energy.numpy() <= upper + 1e-9)


@given(instances, st.booleans())
@SETTINGS
def test_proposition_2_link_to_the_modern_hopfield_energy(instance, equal_norms):
    seed, N, n, scale = instance
    patterns = gaussian(N, n, seed=seed, scale=scale)
    if equal_norms:
        patterns = scale * patterns / patterns.norm(dim=-1, keepdim=True)
    x = gaussian(7, n, seed=seed + 1, scale=scale)
    link = 2 * hf.modern_energy(x, patterns, 2.0) - math.log(N)
    gap = th.mchn_link_gap(patterns.norm(dim=-1).numpy())
    energy = hf.layer_energy(x, patterns)
    tol = 1e-9 * (1 + link.abs())
    assert torch.all(energy <= link + tol) and torch.all(energy >= link - gap - tol)
    if equal_norms:
        assert torch.allclose(energy, link, atol=1e-8)


@given(st.lists(st.floats(-20.0, 20.0), min_size=1, max_size=8))
@SETTINGS
def test_global_energy_bounds(energies):
    total = hf.global_energy(torch.tensor(energies, dtype=torch.float64)).item()
    lower, upper = th.global_energy_bounds(min(energies), len(energies))
    assert lower - 1e-9 <= total <= upper + 1e-9
    # The upper bound is strict by log(1 + sum_{t != min} e^{-(E_t - min E)}); assert strictness only where
    # that gap is resolvable in float64 at this magnitude (e.g. energies 18 and -16 give a gap of 1.7e-15).
    ordered = sorted(energies)
    if len(energies) >= 2 and math.log1p(math.exp(-(ordered[1] - ordered[0]))) > 1e-12 * (1 + abs(upper)):
        assert total < upper


@given(instances)
@SETTINGS
def test_layers_are_majorization_minimization_steps(instance):
    seed, N, n, scale = instance
    patterns, anchor = gaussian(N, n, seed=seed, scale=scale), gaussian(5, n, seed=seed + 1, scale=2 * scale)
    x = gaussian(5, n, seed=seed + 2, scale=2 * scale)
    assert torch.all(hf.layer_majorizer(x, anchor, patterns) >= hf.layer_energy(x, patterns) - 1e-9)
    assert torch.allclose(hf.layer_majorizer(anchor, anchor, patterns), hf.layer_energy(anchor, patterns))
    step = hf.layer_update(anchor, patterns)
    majorizer = hf.layer_majorizer(step, anchor, patterns)
    assert torch.all(majorizer <= hf.layer_majorizer(anchor, anchor, patterns) + 1e-9)
    assert torch.all(hf.layer_energy(step, patterns) <= hf.layer_energy(anchor, patterns) + 1e-9)


def test_layer_energy_accepts_a_single_point():
    patterns = torch.tensor([[0.0], [1.0]], dtype=torch.float64)
    assert hf.layer_energy(torch.tensor([0.0]), patterns).item() == pytest.approx(-math.log(1 + math.exp(-1)))


# ----------------------------------------------------------------------------------- experiments
def test_registered_experiments_return_rows():
    registry = experiments()
    row = registry["hopfield_dense_capacity"](d=16, a=3, trials=2, probes=8)
    assert row["capacity"] > 0 and row["predicted"] > 0
    row = registry["hopfield_modern_capacity"](d=8, max_patterns=2**8, trials=2, probes=16)
    assert row["capacity"] > 2


# ------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(("call", "error", "message"), [
    (lambda: hf.modern_update(torch.ones(3), torch.ones(2, 4), 1.0), ValueError, "states has dimension 3"),
    (lambda: hf.modern_energy(torch.ones(4), torch.ones(2, 4), -1.0), ValueError, "beta must lie"),
    (lambda: hf.layer_energy([float("nan")], [[0.0]]), ValueError, "x must contain only finite"),
    (lambda: hf.layer_energy([0.0], [0.0]), ValueError, "patterns must have at least 2"),
    (lambda: hf.dense_update(torch.ones(4), torch.ones(2, 4), 1), ValueError, "a must be"),
    (lambda: hf.dense_update(torch.ones(4), torch.ones(2, 4), 2, mode="random"), ValueError, "mode must be"),
    (lambda: hf.classical_update(torch.ones(3), torch.eye(3), mode="asynchronous", order=[0, 0, 1]),
     ValueError, "order must be a permutation"),
    (lambda: hf.separation(torch.ones(1, 3)), ValueError, "at least 2 patterns"),
    (lambda: hf.thresholded_memory_scores(torch.ones(1, 2), torch.ones(3, 2), torch.ones(2, 2), [0, 1, 2]),
     ValueError, "labels must hold 3 integers in \\[0, 1\\]"),
    (lambda: hf.thresholded_memory_scores(torch.ones(1, 2), torch.ones(3, 2), torch.ones(2, 2), [0, 1, 1],
                                          eta=0.5, activation="linear"), ValueError, "eta must be 0"),
    (lambda: hf.hopfield_attention(torch.ones(2, 3), torch.ones(4, 3), torch.ones(5, 2)), ValueError,
     "values must have one row per key"),
    (lambda: hf.layer_majorizer(torch.ones(2), torch.ones(3), torch.ones(1, 3)),
     ValueError, "x and anchor must have the same shape"),
    (lambda: hf.global_energy(torch.ones(2, 3), dim=2), ValueError, "dim must be an axis"),
    (lambda: hf.sign_retrieval([0], 10), ValueError, "K must contain integers >= 1"),
    (lambda: hf.modern_capacity([4], max_patterns=2**6, trials=1), ValueError, "does not cross failure"),
    (lambda: hf.random_sign_patterns(3, 0), ValueError, "d must be"),
    (lambda: hf.random_sign_patterns(3, 4, seed=-1), ValueError, "seed must be"),
    (lambda: hf.layer_energy("abc", [[0.0]]), TypeError, "x must be an array of real numbers"),
])
def test_validation(call, error, message):
    with pytest.raises(error, match=message):
        call()


# --- issue 13: bad or huge values end in an error naming the caller's parameter, before the work

def test_modern_retrieve_broadcasts_states_over_the_patterns_batch():
    patterns = hf.sphere_patterns(4, 6, trials=2, seed=1)[:, None]             # (2, 1, 4, 6)
    states = hf.sphere_patterns(3, 6, seed=2)[0]                               # (3, 6)
    trajectory = hf.modern_retrieve(states, patterns, 2.0, steps=3)
    assert trajectory.states.shape == (4, 2, 1, 3, 6) and trajectory.energies.shape == (4, 2, 1, 3)
    for t in range(2):  # each batch entry is the unbatched trajectory (same kernels, same shapes)
        alone = hf.modern_retrieve(states, patterns[t, 0], 2.0, steps=3)
        torch.testing.assert_close(trajectory.states[:, t, 0], alone.states, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(trajectory.energies[:, t, 0], alone.energies, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: hf.fixed_point_census(torch.ones(1, 1, 4, 6), [1.0], queries=4, steps=2),
     r"patterns must have shape \(N, d\)"),
    (lambda: hf.fixed_point_census(torch.randn(4, 6), [1.0], queries=10**12),
     "queries, steps, betas: .*ASSOCMEM_MAX_BYTES"),
    (lambda: hf.fixed_point_census(torch.randn(4, 6), [1.0, 0.0], queries=4), "betas must all be > 0"),
    (lambda: hf.thresholded_memory_error([8], 6, M=10**12), "N, M, d, trials, chunk: this call needs"),
    (lambda: hf.modern_capacity([6], max_patterns=10**12, trials=2, probes=4), "max_patterns, d, trials, probes"),
    (lambda: hf.modern_retrieval_failure([10**12], 6), "N, d, trials, probes"),
    (lambda: hf.modern_capacity([6], beta=1e300, max_patterns=16, trials=2, probes=4),
     r"does not cross failure=0.01 .*beta=1e\+300.*stays below it"),
    (lambda: hf.one_step_retrieval(hf.sphere_patterns(4, 6, seed=0)[0], 1.0, noise=1e300), "noise=1e\\+300: the noisy"),
    (lambda: hf.one_step_retrieval(hf.sphere_patterns(4, 6, seed=0)[0], 1e300, noise=0.5),
     "beta=1e\\+300, noise=0.5: .*the bound exceeds"),
])
def test_hostile_values_are_refused_by_name(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_one_step_retrieval_at_huge_beta_is_exact_where_the_bound_is_finite():
    # every pattern of this draw has Delta_i > 2 M ||xi - x_i|| at noise 0.1: the bound is 0, and the
    # update (an argmax at beta = 1e300) returns the pattern itself
    result = hf.one_step_retrieval(hf.sphere_patterns(4, 6, seed=0)[0], 1e300, noise=0.1)
    np.testing.assert_array_equal(result["bound"], 0.0)
    np.testing.assert_array_equal(result["error"], 0.0)


@pytest.mark.parametrize(("call", "message"), [
    (lambda: hf.dense_capacity([16], a=10**12, trials=2, probes=4), "d, a, error: the predicted capacity"),
    (lambda: hf.dense_capacity([16], points=10**12, trials=2, probes=4), "points, d, a, trials, probes: this call"),
    (lambda: hf.thresholded_memory_capacity([6], max_patterns=10**12, trials=2), "max_patterns, M, d, trials"),
    (lambda: hf.thresholded_memory_capacity([6], M=10**12, trials=2), "max_patterns must be at least 2 M"),
])
def test_capacity_sizes_are_refused_by_the_callers_names(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_modern_retrieve_one_state_against_a_batch_of_pattern_sets():
    patterns = hf.sphere_patterns(4, 6, trials=2, seed=0)                   # (2, 4, 6)
    state = torch.linspace(-1.0, 1.0, 6, dtype=torch.float64)               # (6,)
    trajectory = hf.modern_retrieve(state, patterns, 1.0, steps=2)
    assert trajectory.states.shape == (3, 2, 6) and trajectory.energies.shape == (3, 2)
    for t in range(2):  # a (1, d) against a (d,) product: different kernels, equal to rounding
        alone = hf.modern_retrieve(state, patterns[t], 1.0, steps=2)
        torch.testing.assert_close(trajectory.states[:, t], alone.states, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(trajectory.energies[:, t], alone.energies, rtol=1e-12, atol=1e-12)
