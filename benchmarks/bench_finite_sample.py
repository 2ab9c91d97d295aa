"""Benchmark: the joint (d, T) error scan of chapter 3 against a textbook baseline.

The scan is the paper's thresholding grid: N = 1000, alpha = 2, M = 5, d in {10, 20, 50, 100, 200, 1000},
13 log-spaced T from 10 to 10^4, q = 1 on the int(d/12) most frequent seen tokens.

- fast path: :func:`assocmem.finite_sample.count_weights` and, as
  :func:`assocmem.finite_sample.error_grid` does for each chunk of trials, one
  :func:`assocmem.memory.population_errors` call: nested data, every (T, d) weighting of a trial in one
  pass over its embeddings, thin products, batched over trials;
- baseline: what one writes from the formulas: for every trial, T and d, the top-P weights, the d x d
  matrix W = sum_x q(x) u_{f*(x)} e_x^T, the scores U W E^T, the argmax, and the weighted misses, in
  Python loops.

Both scan the same counts with the same embeddings (float64, so the answers agree exactly) for a subset
of trials; the ratio of their best times is the speed-up of the scan. The seeded embedding draw
(:func:`assocmem.memory.memory_embeddings`) is the same for both and timed on its own; the end-to-end
ratio adds it to both sides. The full 100-trial scan (:func:`assocmem.finite_sample.joint_error`,
float32, data and embedding draws included) is timed as well, next to the baseline's end-to-end time
extrapolated linearly in trials (its loop over trials makes it linear).

    python benchmarks/bench_finite_sample.py [--trials 4] [--repeat 2]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from assocmem import finite_sample as fs
from assocmem import memory, zipf

N, ALPHA, M, RATIO = 1000, 2.0, 5, 12
D_GRID = np.array([10, 20, 50, 100, 200, 1000])
T_GRID = memory.log_grid(10, 10_000, 13)


def baseline(counts: np.ndarray, p: np.ndarray, labels: np.ndarray, E: np.ndarray, U: np.ndarray) -> np.ndarray:
    """Explicit d x d memory for each trial, T and d; a tie counts as a miss."""
    trials = counts.shape[0]
    errors = np.zeros((trials, len(T_GRID), len(D_GRID)))
    # the thresholds of every (trial, T, d), with the same seeded random order among tied counts
    kept = memory.top_seen_weights(counts, np.floor(D_GRID / RATIO).astype(np.int64))
    for k in range(trials):
        for i in range(len(T_GRID)):
            for j, d in enumerate(D_GRID):
                q = kept[k, i, j]
                e, u = E[k, :, :d], U[k, :, :d]
                W = (u[labels] * q[:, None]).T @ e            # sum_x q(x) u_{f*(x)} e_x^T, (d, d)
                scores = u @ W @ e.T                          # (M, N)
                true = scores[labels, np.arange(N)]
                scores[labels, np.arange(N)] = -np.inf
                errors[k, i, j] = p[true <= scores.max(axis=0)].sum()
    return errors


def fast(counts: np.ndarray, p: np.ndarray, labels: np.ndarray, E: torch.Tensor, U: torch.Tensor) -> np.ndarray:
    """The package's scan of the same counts and embeddings, as error_grid runs it on one chunk of trials."""
    weights = fs.count_weights(counts, "top", D_GRID, ratio=RATIO)
    errors = memory.population_errors(list(weights.swapaxes(0, 1)), p, labels, E, U, D_GRID)
    return torch.stack(errors, dim=1).numpy()


def draw(trials: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The embeddings both paths use: seed 0, float64, drawn once at the largest d."""
    return memory.memory_embeddings(N, M, int(D_GRID[-1]), 0, trials=trials, dtype=torch.float64)


def best_time(function, repeat: int):
    """The result of ``function()`` and its fastest wall time over ``repeat`` runs (a shared machine is noisy)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - start)
    return result, min(times)


def main(trials: int, repeat: int) -> None:
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    counts = fs.nested_counts(N, ALPHA, T_GRID, trials=trials, seed=0)
    (E, U), t_draw = best_time(lambda: draw(trials), repeat)

    slow, t_slow = best_time(lambda: baseline(counts, p, labels, E.numpy(), U.numpy()), repeat)
    quick, t_fast = best_time(lambda: fast(counts, p, labels, E, U), repeat)
    assert np.allclose(quick, slow, atol=1e-12), "fast scan and baseline disagree"
    assert np.array_equal(quick, fs.error_grid(fs.count_weights(counts, "top", D_GRID, ratio=RATIO), p, labels,
                                               M, D_GRID, 0, dtype=torch.float64)), "not what error_grid computes"
    full, t_full = best_time(lambda: fs.joint_error(N, ALPHA, D_GRID, T_GRID, scheme="top", M=M, ratio=RATIO,
                                                    trials=100, seed=0), 1)

    print(f"joint (d, T) scan, N={N}, {len(D_GRID)} d x {len(T_GRID)} T, P = d // {RATIO}, float64, "
          f"{trials} trials, best of {repeat}, {torch.get_num_threads()} torch threads")
    print(f"  baseline (explicit W, Python loops)  : {t_slow:8.3f} s")
    print(f"  fast (count_weights + one pass)      : {t_fast:8.3f} s   answers equal: True")
    print(f"  speed-up of the scan                 : {t_slow / t_fast:8.1f} x")
    print(f"  embedding draw (the same for both)   : {t_draw:8.3f} s")
    print(f"  speed-up end to end (draw included)  : {(t_slow + t_draw) / (t_fast + t_draw):8.1f} x")
    slow_full = (t_slow + t_draw) / trials * 100
    print(f"full scan, 100 trials, float32 (joint_error, data and embeddings drawn): {t_full:.1f} s "
          f"(baseline extrapolated: {slow_full:.0f} s, {slow_full / t_full:.0f} x); "
          f"mean error at d=1000, T=10^4: {full[:, -1, -1].mean():.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials in the baseline comparison")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path; the fastest counts")
    arguments = parser.parse_args()
    main(arguments.trials, arguments.repeat)
