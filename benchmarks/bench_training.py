"""Benchmark of assocmem.training on the paper's training grid (chapter 4): the batched trainer against
a faithful re-implementation of the paper's own code, one run at a time, on the same configurations;
and the projected cost of the whole 40,320-run grid for both.

    python benchmarks/bench_training.py            # agreement, throughput table, grid projection (~10 min)
    python benchmarks/bench_training.py --quick    # agreement and throughput table only

Everything runs on one torch thread and is timed in CPU seconds (``time.process_time``), so the figures
are CPU-seconds even on a shared machine, and a grid of independent points spreads over cores by
processes. The baseline is the paper's script (CDB24's ``run_exp``): per run, an ``nn.Module`` with the
model's parameters (``AssMem``: W; ``AssMemLearnable``: E, W, U; ``AssMemExp``: E, U, scores
``ReLU(E[x]) -> LN -> U^T``), ``torch.optim.SGD`` at lr or ``torch.optim.Adam`` with betas (0, 0) at lr/d
for W and lr/sqrt(d) for E and U, ``F.cross_entropy`` of each batch, ``zero_grad``/``backward``/``step``,
then the argmax error over all N tokens. Both paths train on the same samples, embeddings and W0; the
script checks that they agree before it prints a ratio.
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from assocmem import training, zipf

N, M, ALPHA = 100, 5, 2.0
LRS, LAYER_NORMS, SEEDS = (0.1, 1.0, 10.0, 100.0), (False, True), 10
RUNS_PER_POINT = SEEDS * len(LRS) * len(LAYER_NORMS)
GRID = training.GRID_AXES


class PaperModel(nn.Module):
    """The three models of the paper's ``utils.py`` (``AssMem``, ``AssMemLearnable``, ``AssMemExp``),
    initialised from given tensors instead of the global RNG. The paper multiplies ``E[x] @ W``; with
    our W0 (same law) we multiply by ``W.T`` so that both paths hold the same matrix."""

    def __init__(self, E, U, W0, model: str, layer_norm: bool):
        super().__init__()
        learned = model != "W"
        self.E = nn.Parameter(E.clone()) if learned else E.clone()
        self.UT = nn.Parameter(U.T.clone()) if learned else U.T.clone()
        self.W = None if model == "relu" else nn.Parameter(W0.clone())
        self.use_ln = layer_norm

    def forward(self, x):
        out = F.relu(self.E[x]) if self.W is None else self.E[x] @ self.W.T
        if self.use_ln:
            out = out / torch.sqrt((out ** 2).sum(dim=1) + 1e-6).unsqueeze(1)
        return out @ self.UT


def paper_run(E, U, W0, tokens, lr, batch_size, optimizer, layer_norm, model):
    """One run of the paper's ``run_exp`` loop; returns the final error and the model."""
    net = PaperModel(E, U, W0, model, layer_norm)
    d = E.shape[1]
    if optimizer == "sgd":
        opti = torch.optim.SGD(net.parameters(), lr=lr)
    elif model == "learned":
        opti = torch.optim.Adam([{"params": [net.E, net.UT], "lr": lr / math.sqrt(d)},
                                 {"params": [net.W], "lr": lr / d}], betas=(0.0, 0.0))
    else:
        opti = torch.optim.Adam(net.parameters(), lr=lr / (math.sqrt(d) if model == "relu" else d),
                                betas=(0.0, 0.0))
    X = torch.as_tensor(tokens)
    labels = torch.as_tensor(zipf.mod_labels(N, M))  # the book's f*(x) = x mod M of 1-based tokens
    Y = labels[X]
    for i in range(len(X) // batch_size):
        x, y = X[i * batch_size:(i + 1) * batch_size], Y[i * batch_size:(i + 1) * batch_size]
        loss = F.cross_entropy(net(x), y)
        opti.zero_grad()
        loss.backward()
        opti.step()
    with torch.no_grad():
        all_x = torch.arange(N)
        pred = net(all_x).argmax(dim=-1)
        proba = torch.as_tensor(zipf.zipf_probs(N, ALPHA), dtype=torch.float32)
        error = proba[pred != labels].sum().item()
    return error, net


def inputs(d, T, dtype, seeds):
    """Embeddings, W0 and samples of each run of a point, drawn as the grid draws them."""
    runs = [(s, lr, ln) for s in seeds for lr in LRS for ln in LAYER_NORMS]
    run_seeds = [r[0] for r in runs]
    E, U = training.run_embeddings(run_seeds, N, M, d, dtype=dtype)
    W0 = training.initial_memory(run_seeds, d, init="random", dtype=dtype)
    tokens = np.stack([zipf.sample_tokens(N, ALPHA, T, s) for s in run_seeds])
    return runs, E, U, W0, tokens


def check_agreement():
    """float64, every model, both optimisers, layer norm on and off, steps up to 10: the batched trainer
    reproduces the paper's loop (parameters to 1e-8 relative, and the same error)."""
    for model, optimizer in itertools.product(training.MODELS, ("sgd", "adam")):
        runs, E, U, W0, tokens = inputs(20, 256, torch.float64, seeds=range(1))
        _, fast = training.simulate(N=N, M=M, alpha=ALPHA, d=20, T=256, batch_size=16, lrs=LRS, seeds=range(1),
                                    layer_norms=LAYER_NORMS, optimizer=optimizer, model=model, init="random",
                                    ties="first", dtype=torch.float64, keep_weights=True)
        for i, (_, lr, ln) in enumerate(runs):
            if optimizer == "sgd" and lr > 1.0:
                continue  # SGD at large steps diverges or is chaotic: nothing to compare
            error, net = paper_run(E[i], U[i], W0[i], tokens[i], lr, 16, optimizer, ln, model)
            ours = fast.W[i] if net.W is not None else fast.E[i]
            ref = (net.W if net.W is not None else net.E).detach()
            gap = (ours - ref).abs().max().item() / max(ref.abs().max().item(), 1.0)
            assert gap < 1e-8, (model, optimizer, lr, ln, gap)
            assert abs(fast.errors[i, -1] - error) < 1e-6, (model, optimizer, lr, ln)
    print("agreement: batched trainer == the paper's loop (float64; 3 models x SGD/Adam x LN; 16 steps) OK")


def point_seconds(d, T, B, optimizer, model):
    """CPU seconds of one grid point (80 runs) with the batched trainer, as the grid runs it."""
    start = time.process_time()
    training.optimization_grid(d=d, T=T, batch_size=B, optimizer=optimizer, model=model)
    return time.process_time() - start


def baseline_seconds(d, T, B, optimizer, model, runs=1):
    """CPU seconds per run of the paper's loop, averaged over ``runs`` runs of the point."""
    all_runs, E, U, W0, tokens = inputs(d, T, torch.float32, seeds=range(1))
    start = time.process_time()
    for i in range(runs):
        _, lr, ln = all_runs[i]
        paper_run(E[i], U[i], W0[i], tokens[i], lr, B, optimizer, ln, model)
    return (time.process_time() - start) / runs


def throughput():
    print(f"{'point (80 runs)':40s} {'batched s/run':>14s} {'paper s/run':>12s} {'ratio':>7s}")
    for d, T, B, optimizer, model in [(100, 1024, 16, "sgd", "W"), (100, 1024, 16, "adam", "W"),
                                      (100, 1024, 16, "adam", "learned"), (100, 1024, 16, "adam", "relu"),
                                      (1000, 1024, 16, "sgd", "W"), (1000, 1024, 16, "adam", "W"),
                                      (1000, 1024, 16, "sgd", "learned"), (1000, 1024, 16, "adam", "learned"),
                                      (1000, 1024, 16, "adam", "relu"), (100, 10_240, 1024, "adam", "W")]:
        fast = point_seconds(d, T, B, optimizer, model) / RUNS_PER_POINT
        slow = baseline_seconds(d, T, B, optimizer, model, runs=4)
        name = f"d={d} T={T} B={B} {optimizer} {model}"
        print(f"{name:40s} {fast:14.4f} {slow:12.4f} {slow / fast:7.1f}", flush=True)


def cost_model(timer, d, B, optimizer, model, short, long):
    """(setup, per step) from two step counts: ``t(k) = setup + k * per_step``."""
    t_short, t_long = timer(d, short * B, B, optimizer, model), timer(d, long * B, B, optimizer, model)
    per_step = max(t_long - t_short, 0.0) / (long - short)
    return max(t_short - short * per_step, 0.0), per_step


def project_grid():
    """CPU-hours of the whole grid: every (d, B, optimiser, model) cell is timed at two step counts, which
    gives its setup and its cost per step; the projection of a cell is ``sum over T of setup + (T/B) *
    per_step``, for the batched trainer (the 80-run point) and for the paper's loop (x 80 runs)."""
    total, baseline_total, rows = 0.0, 0.0, []
    for d, B, optimizer, model in itertools.product(GRID["d"], GRID["batch_size"], GRID["optimizer"],
                                                    GRID["model"]):
        setup, step = cost_model(point_seconds, d, B, optimizer, model, 4, 16)
        base_setup, base_step = cost_model(baseline_seconds, d, B, optimizer, model, 4, 16)
        cell = sum(setup + step * T / B for T in GRID["T"])
        base = RUNS_PER_POINT * sum(base_setup + base_step * T / B for T in GRID["T"])
        total, baseline_total = total + cell, baseline_total + base
        rows.append((d, B, optimizer, model, cell, base))
        print(f"  d={d:5d} B={B:5d} {optimizer:4s} {model:7s}: batched {cell:8.1f} s, paper {base:9.1f} s",
              flush=True)
    rows.sort(key=lambda r: -r[4])
    print("most expensive cells (three T, 240 runs):",
          ", ".join(f"d={r[0]} B={r[1]} {r[2]} {r[3]} {r[4] / 3600:.2f} h" for r in rows[:5]))
    by_model = {m: sum(r[4] for r in rows if r[3] == m) / 3600 for m in GRID["model"]}
    print("batched CPU-hours by model:", {m: round(h, 3) for m, h in by_model.items()})
    print(f"projected whole grid (40,320 runs), batched trainer: {total / 3600:.2f} CPU-hours")
    print(f"projected whole grid, the paper's loop one run at a time: {baseline_total / 3600:.2f} CPU-hours")
    print(f"ratio: {baseline_total / total:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="agreement and throughput only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"start {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average {os.getloadavg()}", flush=True)
    check_agreement()
    throughput()
    if not args.quick:
        project_grid()
    print(f"end {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}, load average {os.getloadavg()}")


if __name__ == "__main__":
    main()
