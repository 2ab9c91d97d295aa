"""Benchmark: the joint (d, T) error scan of chapter 3 against a textbook baseline.

The scan is the paper's thresholding grid: N = 1000, alpha = 2, M = 5, d in {10, 20, 50, 100, 200, 1000},
13 log-spaced T from 10 to 10^4, q = 1 on the int(d/12) most frequent seen tokens.

- fast path: :func:`assocmem.finite_sample.error_grid` (nested data, one embedding draw per trial
  shared by every T and d, thin products, batched over trials);
- baseline: what one writes from the formulas: for every trial, T and d, form the d x d matrix
  W = sum_x q(x) u_{f*(x)} e_x^T, the scores U W E^T, the argmax, and the weighted misses, in Python loops.

Both run on the same counts and embeddings (float64, so the answers agree exactly) for a subset of
trials; the ratio of their best times is the speed-up. The full 100-trial scan of the fast path is timed
too (float32, data and embedding draws included), next to the baseline's time extrapolated linearly in
trials (its loop over trials makes it linear).

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


def baseline(counts: np.ndarray, E: np.ndarray, U: np.ndarray, p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Explicit d x d memory for each trial, T and d; a tie counts as a miss."""
    trials = counts.shape[0]
    errors = np.zeros((trials, len(T_GRID), len(D_GRID)))
    for k in range(trials):
        for i in range(len(T_GRID)):
            for j, d in enumerate(D_GRID):
                q = memory.top_seen_weights(counts[k, i], int(d // RATIO))
                e, u = E[k, :, :d], U[k, :, :d]
                W = (u[labels] * q[:, None]).T @ e            # sum_x q(x) u_{f*(x)} e_x^T, (d, d)
                scores = u @ W @ e.T                          # (M, N)
                true = scores[labels, np.arange(N)]
                scores[labels, np.arange(N)] = -np.inf
                errors[k, i, j] = p[true <= scores.max(axis=0)].sum()
    return errors


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
    weights = fs.count_weights(counts, "top", D_GRID, ratio=RATIO)
    E, U = memory.memory_embeddings(N, M, int(D_GRID[-1]), 0, trials=trials, dtype=torch.float64)

    slow, t_slow = best_time(lambda: baseline(counts, E.numpy(), U.numpy(), p, labels), repeat)
    # the fast path draws the same embeddings itself (seed 0): its time includes the draw
    fast, t_fast = best_time(lambda: fs.error_grid(weights, p, labels, M, D_GRID, 0, dtype=torch.float64), repeat)
    assert np.allclose(fast, slow, atol=1e-12), "fast scan and baseline disagree"
    full, t_full = best_time(lambda: fs.joint_error(N, ALPHA, D_GRID, T_GRID, scheme="top", M=M, ratio=RATIO,
                                                    trials=100, seed=0), 1)

    print(f"joint (d, T) scan, N={N}, {len(D_GRID)} d x {len(T_GRID)} T, P = d // {RATIO}, float64, "
          f"{trials} trials, best of {repeat}")
    print(f"  baseline (explicit W, Python loops): {t_slow:8.2f} s")
    print(f"  fast (error_grid, same inputs)     : {t_fast:8.2f} s   answers equal: True")
    print(f"  speed-up                           : {t_slow / t_fast:8.1f} x")
    print(f"full scan, 100 trials, float32 (joint_error, data and embeddings drawn): {t_full:.1f} s "
          f"(baseline extrapolated: {t_slow / trials * 100:.0f} s, {t_slow / trials * 100 / t_full:.0f} x); "
          f"mean error at d=1000, T=10^4: {full[:, -1, -1].mean():.4f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=4, help="trials in the baseline comparison")
    parser.add_argument("--repeat", type=int, default=2, help="runs of each path; the fastest counts")
    arguments = parser.parse_args()
    main(arguments.trials, arguments.repeat)
