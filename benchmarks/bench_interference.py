"""Benchmark of chapter 2's error-against-d scan: assocmem.memory against a textbook baseline.

The scan: N = 1000 tokens, M = 5 classes, alpha = 2, 20 log-spaced d from 10 to 1000, 100 trials,
the three schemes q = 1, q = p and q = 1[x <= d/8], nested embeddings drawn once at d = 1000.

Baseline (written here, the textbook way): for every scheme, trial and d, form the d x d matrix
W = sum_x q(x) u_{f*(x)} e_x^T explicitly, score all tokens with U W E^T, and count the weighted
misses (ties count as errors, like the fast path). Both run on the same embeddings in the same process
and must give the same errors. A second part runs the N = 100,000 scan (fewer trials) in a
subprocess and reports its time and peak resident memory (``resource.getrusage``).

Run: ``.venv/bin/python benchmarks/bench_interference.py`` (``--quick`` for a smaller check).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import numpy as np
import torch

from assocmem import memory, zipf

M, ALPHA = 5, 2.0


def baseline_scan(weights_by_scheme, p, labels, E, U, d_grid) -> dict[str, np.ndarray]:
    """Explicit d x d memory per scheme, trial and d; Python loops over trials and d."""
    p_t = torch.as_tensor(p)
    labels_t = torch.as_tensor(labels)
    D = E.shape[2]
    out = {}
    for scheme, q in weights_by_scheme.items():
        q = torch.as_tensor(np.asarray(q), dtype=E.dtype)
        errors = np.zeros((E.shape[0], len(d_grid)))
        for t in range(E.shape[0]):
            for j, d in enumerate(d_grid):
                e = E[t, :, :d] * np.sqrt(D / d)                 # the law N(0, I/d) at dimension d
                u = U[t, :, :d] * np.sqrt(D / d)
                q_d = q.reshape(-1, q.shape[-1])[j if q.ndim == 3 else 0]
                W = (u[labels_t] * q_d[:, None]).T @ e           # d x d: sum_x q(x) u_f(x) e_x^T
                s = u @ W @ e.T                                  # (M, N)
                true = s[labels_t, torch.arange(len(p))]
                s[labels_t, torch.arange(len(p))] = -torch.inf
                errors[t, j] = float(((true <= s.max(0).values).double() * p_t).sum())
        out[scheme] = errors
    return out


def fast_scan(weights_by_scheme, p, labels, E, U, d_grid) -> dict[str, np.ndarray]:
    """All schemes in one call: the passes over the embeddings are shared."""
    errors = memory.population_errors(list(weights_by_scheme.values()), p, labels, E, U, d_grid)
    return {scheme: err.numpy() for scheme, err in zip(weights_by_scheme, errors, strict=True)}


def scan_inputs(N: int, d_max: int = 1000):
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    d_grid = memory.log_grid(10, d_max, 20)
    weights = {scheme: memory.scheme_weights(scheme, p, d_grid) for scheme in memory.SCHEMES}
    return p, labels, d_grid, weights


def large_scan(N: int, trials: int) -> dict:
    """The N-token scan through error_scan (embeddings drawn in bounded chunks); time and peak RSS."""
    p, labels, d_grid, weights = scan_inputs(N)
    start = time.perf_counter()
    errors = memory.error_scans(list(weights.values()), p, labels, M, d_grid, seed=0, trials=trials)
    means = {scheme: err.mean(0).tolist() for scheme, err in zip(weights, errors, strict=True)}
    seconds = time.perf_counter() - start
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"N": N, "trials": trials, "seconds": seconds, "peak_rss_mib": peak_mib,
            "error_at_d_max": {s: round(m[-1], 4) for s, m in means.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10 trials and N = 10,000 for the large scan")
    parser.add_argument("--large", nargs=2, type=int, metavar=("N", "TRIALS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.large:
        print(json.dumps(large_scan(*args.large)))
        return
    trials = 10 if args.quick else 100
    N = 1000
    p, labels, d_grid, weights = scan_inputs(N)
    start = time.perf_counter()
    E, U = memory.memory_embeddings(N, M, int(d_grid[-1]), seed=0, trials=trials)
    draw = time.perf_counter() - start

    fast_scan(weights, p, labels, E[:2], U[:2], d_grid)          # warm-up
    start = time.perf_counter()
    fast = fast_scan(weights, p, labels, E, U, d_grid)
    fast_seconds = time.perf_counter() - start
    start = time.perf_counter()
    slow = baseline_scan(weights, p, labels, E, U, d_grid)
    slow_seconds = time.perf_counter() - start
    # same answers: in float64 (5 trials) the two agree exactly; in float32 rounding can flip a token
    # whose scores tie to ~1e-6, so the timed runs must agree on the mean curves to 1e-3
    E64, U64 = E[:5].double(), U[:5].double()
    exact = fast_scan(weights, p, labels, E64, U64, d_grid), baseline_scan(weights, p, labels, E64, U64, d_grid)
    assert all(np.abs(exact[0][s] - exact[1][s]).max() < 1e-12 for s in weights), "float64 answers differ"
    gap = max(np.abs(fast[s].mean(0) - slow[s].mean(0)).max() for s in weights)
    assert gap < 1e-3, gap
    print(f"scan N={N}, {len(d_grid)} d in [10, 1000], {trials} trials, 3 schemes, torch threads "
          f"{torch.get_num_threads()}")
    print(f"  embedding draw       {draw:8.3f} s")
    print(f"  assocmem.memory      {fast_seconds:8.3f} s")
    print(f"  textbook baseline    {slow_seconds:8.3f} s")
    print(f"  speed-up             {slow_seconds / fast_seconds:8.1f} x   (float64: identical errors; "
          f"float32: mean curves within {gap:.0e})")
    large_N, large_trials = (10_000, 2) if args.quick else (100_000, 10)
    result = subprocess.run([sys.executable, __file__, "--large", str(large_N), str(large_trials)],
                            capture_output=True, text=True, check=True)
    large = json.loads(result.stdout)
    print(f"scan N={large['N']}, 20 d, {large['trials']} trials, 3 schemes (error_scans, drawing included): "
          f"{large['seconds']:.1f} s, peak RSS {large['peak_rss_mib']:.0f} MiB; "
          f"error at d=1000: {large['error_at_d_max']}")


if __name__ == "__main__":
    main()
