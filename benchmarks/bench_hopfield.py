"""Benchmark: one-step stability of a dense associative memory, batched vs per-probe loops.

Fast path: ``assocmem.hopfield.sign_retrieval`` (one tensor program over trials, probes and stored
patterns, the energy gap of every bit from one matrix product). Baseline: the textbook computation,
a Python loop over trials and probes that evaluates, for each probe, the energy change of flipping each
bit, ``sum_mu F(m_mu) - F(m_mu - 2 xi_mu,i s_i)``, with numpy. Both see the same patterns and must give
the same fraction of unstable bits.

    python benchmarks/bench_hopfield.py
"""

from __future__ import annotations

import time

import numpy as np
import torch

from assocmem import hopfield as hf

D, A, K, TRIALS, PROBES, SEED = 48, 3, 150, 16, 64, 0


def baseline(patterns: np.ndarray, a: int, probes: int) -> np.ndarray:
    """Fraction of bits of the first ``probes`` stored patterns that one update flips, per trial."""
    errors = np.zeros(patterns.shape[0])
    for t, stored in enumerate(patterns):
        for s in stored[:probes]:
            overlaps = stored @ s                                        # (K,)
            flipped = overlaps[:, None] - 2 * stored * s[None, :]        # (K, d): overlaps if bit i flips
            gain = (overlaps[:, None] ** a - flipped**a).sum(0)          # E(flipped) - E(s), per bit
            errors[t] += np.mean(gain < 0) / probes
    return errors


def best_of(fn, repeats: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main() -> None:
    torch.set_num_threads(1)  # like the numpy loop; tiny kernels only lose to thread oversubscription
    patterns = hf.random_sign_patterns(K, D, trials=TRIALS, seed=SEED).numpy()
    fast_time, fast = best_of(lambda: hf.sign_retrieval([K], D, a=A, steps=1, trials=TRIALS, probes=PROBES,
                                                        seed=SEED).wrong_bits[:, 0])
    slow_time, slow = best_of(lambda: baseline(patterns, A, PROBES))
    np.testing.assert_allclose(fast, slow, atol=1e-12)
    print(f"dense memory a={A}, d={D}, K={K}, {TRIALS} trials x {PROBES} probes: "
          f"batched {fast_time * 1e3:.1f} ms, per-probe loop {slow_time * 1e3:.1f} ms, "
          f"speed-up x{slow_time / fast_time:.1f} (bit error {fast.mean():.4f} in both)")


if __name__ == "__main__":
    main()
