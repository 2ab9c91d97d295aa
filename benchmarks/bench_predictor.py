"""Benchmark of chapter 8's predictor: predicting a grid cell against training it.

A cell of the validation grid: W-only memory, N = 100, M = 5, alpha = 2, W0 = randn/sqrt(d), 10 seeds, one
step size gamma and one layer-norm setting, for SGD and for the paper's Adam (sign descent at gamma/d).
Baseline: training the cell's 10 runs with assocmem.training (the batched trainer, one program).
Fast path: assocmem.theory.predictor.predict_error for the same cell (its mean and 90 % band for the mean
of the 10 runs). Both run in this process on one torch thread; the script prints both times, the ratio,
and the measured and predicted errors side by side (the prediction is checked in the book, not here).

Run: ``.venv/bin/python benchmarks/bench_predictor.py`` (``--quick`` for two cells).
"""

from __future__ import annotations

import argparse
import time

import torch

from assocmem import training
from assocmem.theory import predictor

CELLS = [  # (rule, d, T, batch_size, gamma, layer_norm)
    ("sgd", 100, 10240, 64, 10.0, False),
    ("sgd", 1000, 10240, 16, 1.0, True),
    ("sgd", 1000, 102400, 16, 1.0, False),
    ("adam", 100, 10240, 64, 1.0, False),
    ("adam", 1000, 10240, 256, 10.0, False),
]


def train_cell(rule, d, T, B, gamma, ln, trials):
    optimizer, lr = ("sgd", gamma) if rule == "sgd" else ("sign", gamma / d)
    _, run = training.simulate(d=d, T=T, batch_size=B, lrs=(lr,), seeds=range(trials), layer_norms=(ln,),
                               optimizer=optimizer, init="random")
    return run.errors[:, -1].mean()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="two cells only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    trials = 10
    print("| cell (rule, d, T, B, gamma, LN) | train s | predict s | ratio | measured | predicted [90 % band] |")
    print("|---|---|---|---|---|---|")
    for rule, d, T, B, gamma, ln in CELLS[:2] if args.quick else CELLS:
        start = time.perf_counter()
        measured = train_cell(rule, d, T, B, gamma, ln, trials)
        train_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = predictor.predict_error(rule, [d], T, lr=gamma, batch_size=B, layer_norm=ln, trials=trials,
                                       samples=8)
        predict_s = time.perf_counter() - start
        print(f"| {rule}, {d}, {T}, {B}, {gamma:g}, {ln} | {train_s:.2f} | {predict_s:.2f} | "
              f"{train_s / predict_s:.1f} | {measured:.4f} | {pred.mean[0]:.4f} "
              f"[{pred.low[0]:.4f}, {pred.high[0]:.4f}] |", flush=True)


if __name__ == "__main__":
    main()
