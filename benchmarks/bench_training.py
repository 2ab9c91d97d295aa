"""Benchmark of assocmem.training: batched runs against one-run-at-a-time plain torch loops, and the
projected cost of the paper's full 40,320-run training grid (chapter 4).

    python benchmarks/bench_training.py            # throughput ratios + grid projection (~10 min)
    python benchmarks/bench_training.py --quick    # throughput ratios only

Everything runs on one thread (``torch.set_num_threads(1)``), so wall time is CPU time and a grid of
independent points spreads over cores by processes. The baseline is what a reference implementation
does: for each run, ``W`` (and ``E``, ``U``) as leaf tensors, autograd, ``torch.optim.SGD``/``Adam``,
one batch after another. Both paths train on the same samples and embeddings; the script checks that
their final memories agree before it prints the ratio.
"""

from __future__ import annotations

import argparse
import itertools
import math
import time

import numpy as np
import torch

from assocmem import training, zipf

N, M, ALPHA = 100, 5, 2.0
LRS, LAYER_NORMS, SEEDS = (0.1, 1.0, 10.0, 100.0), (False, True), 10
GRID_D = (10, 20, 50, 100, 200, 500, 1000)
GRID_T = (1024, 10_240, 102_400)
GRID_B = (16, 64, 256, 1024)
CELLS = (("sgd", "W"), ("adam", "W"), ("sgd", "learned"), ("adam", "learned"))


def baseline_run(E, U, tokens, W0, lr, batch_size, optimizer, layer_norm, learned):
    """One run, the plain way: autograd and a torch optimiser, batch after batch."""
    W = W0.clone().requires_grad_()
    params = [W]
    if learned:
        E, U = E.clone().requires_grad_(), U.clone().requires_grad_()
        params += [E, U]
    opt = (torch.optim.SGD if optimizer == "sgd" else torch.optim.Adam)(params, lr=lr)
    labels = torch.as_tensor(zipf.mod_labels(N, M))
    for batch in torch.as_tensor(tokens).split(batch_size):
        h = E[batch] @ W.T
        if layer_norm:
            h = h / torch.sqrt((h * h).sum(-1, keepdim=True) + 1e-6)
        loss = torch.nn.functional.cross_entropy(h @ U.T, labels[batch])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W.detach()


def inputs(d, T, dtype, seeds=range(2)):
    runs = [(s, lr, ln) for s in seeds for lr in LRS for ln in LAYER_NORMS]
    run_seeds = [r[0] for r in runs]
    E, U = training.run_embeddings(run_seeds, N, M, d, dtype=dtype)
    W0 = training.initial_memory(run_seeds, d, init="random", dtype=dtype)
    tokens = np.stack([zipf.sample_tokens(N, ALPHA, T, s) for s in run_seeds])
    return runs, E, U, W0, tokens


def throughput(d, T, B, optimizer, model, dtype=torch.float32):
    """Runs per second of the batched trainer and of the baseline, on the same 16 runs."""
    runs, E, U, W0, tokens = inputs(d, T, dtype)
    learned = model == "learned"
    start = time.perf_counter()
    fast = training.train(E, U, zipf.mod_labels(N, M), zipf.zipf_probs(N, ALPHA), lr=[r[1] for r in runs],
                          tokens=tokens, batch_size=B, optimizer=optimizer, layer_norm=[r[2] for r in runs],
                          learn_embeddings=learned, W0=W0)
    t_fast = time.perf_counter() - start
    start = time.perf_counter()
    slow = [baseline_run(E[i], U[i], tokens[i], W0[i], lr, B, optimizer, ln, learned)
            for i, (_, lr, ln) in enumerate(runs)]
    t_slow = time.perf_counter() - start
    finite = torch.isfinite(fast.W).flatten(1).all(1)
    scale = torch.stack(slow).abs().flatten(1).amax(1).clamp_min(1.0)
    gap = ((fast.W - torch.stack(slow)).abs().flatten(1).amax(1) / scale)[finite]
    return len(runs) / t_fast, len(runs) / t_slow, fast.method, float(gap.max()) if gap.numel() else 0.0


def check_agreement():
    """float64, every optimiser and model: the batched trainer reproduces the autograd baseline."""
    for optimizer, model in CELLS:
        runs, E, U, W0, tokens = inputs(20, 256, torch.float64, seeds=range(1))
        lrs = [min(r[1], 1.0) for r in runs]  # small steps: no divergence, so the comparison is meaningful
        fast = training.train(E, U, zipf.mod_labels(N, M), zipf.zipf_probs(N, ALPHA), lr=lrs, tokens=tokens,
                              batch_size=16, optimizer=optimizer, layer_norm=[r[2] for r in runs],
                              learn_embeddings=model == "learned", W0=W0)
        for i, (_, _, ln) in enumerate(runs):
            ref = baseline_run(E[i], U[i], tokens[i], W0[i], lrs[i], 16, optimizer, ln, model == "learned")
            err = (fast.W[i] - ref).abs().max().item() / max(ref.abs().max().item(), 1.0)
            assert err < 1e-8, (optimizer, model, i, err)
    print("agreement: batched trainer == autograd baseline (float64, all optimisers, models, layer norm) OK")


def seconds(d, B, optimizer, model, steps, batched=True):
    """Measured seconds of one grid point's 80 runs (batched) or of one baseline run, ``steps`` steps."""
    if not batched:
        runs, E, U, W0, tokens = inputs(d, B * steps, torch.float32, seeds=range(1))
        start = time.perf_counter()
        baseline_run(E[0], U[0], tokens[0], W0[0], 1.0, B, optimizer, False, model == "learned")
        return time.perf_counter() - start
    start = time.perf_counter()
    training.optimization_grid(d=d, T=B * steps, batch_size=B, optimizer=optimizer, model=model,
                               lrs=LRS, trials=SEEDS, layer_norms=LAYER_NORMS)
    return time.perf_counter() - start


def cost_model(d, B, optimizer, model, batched=True, short=4, long=20):
    """(setup, per step) in seconds from two step counts: ``t(k) = setup + k * per_step``."""
    t_short = seconds(d, B, optimizer, model, short, batched)
    t_long = seconds(d, B, optimizer, model, long, batched)
    per_step = max(t_long - t_short, 0.0) / (long - short)
    return max(t_short - short * per_step, 0.0), per_step


def project_grid():
    """CPU-hours of the full grid: every (d, B, optimiser, model) point is timed at two step counts,
    which gives its setup (embeddings, W0, data, evaluation) and its cost per step; the projection of a
    point is ``sum over T of setup + (T / B) * per_step``."""
    total, baseline_total, rows = 0.0, 0.0, []
    runs_per_point = SEEDS * len(LRS) * len(LAYER_NORMS)
    for d, B, (optimizer, model) in itertools.product(GRID_D, GRID_B, CELLS):
        setup, per_step = cost_model(d, B, optimizer, model)
        base_setup, base_step = cost_model(d, B, optimizer, model, batched=False, short=2, long=10)
        point = sum(setup + per_step * T / B for T in GRID_T)
        total += point
        baseline_total += sum(runs_per_point * (base_setup + base_step * T / B) for T in GRID_T)
        rows.append((d, B, optimizer, model, point))
    rows.sort(key=lambda r: -r[-1])
    print("most expensive points (all three T):")
    for d, B, optimizer, model, seconds in rows[:6]:
        print(f"  d={d:5d} B={B:5d} {optimizer:4s} {model:7s}: {seconds / 3600:6.2f} CPU-hours")
    cheap = sum(r[-1] for r in rows if r[2] == "sgd" and r[3] == "W")
    print(f"factorised part (SGD, W only; 10,080 runs): {cheap / 3600:.3f} CPU-hours")
    print(f"projected full grid (40,320 runs), batched trainer: {total / 3600:.2f} CPU-hours")
    print(f"projected full grid, one-run-at-a-time baseline:     {baseline_total / 3600:.2f} CPU-hours")
    print(f"ratio: {baseline_total / total:.1f}x")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="throughput ratios only")
    args = parser.parse_args()
    torch.set_num_threads(1)
    check_agreement()
    print(f"{'cell':38s} {'batched runs/s':>15s} {'baseline runs/s':>16s} {'ratio':>7s}  method      max |dW|")
    for d, T, B, optimizer, model in [(100, 1024, 16, "sgd", "W"), (100, 1024, 16, "adam", "W"),
                                      (100, 1024, 16, "adam", "learned"), (1000, 1024, 16, "sgd", "W"),
                                      (1000, 1024, 16, "adam", "W"), (100, 10_240, 1024, "adam", "W")]:
        fast, slow, method, gap = throughput(d, T, B, optimizer, model)
        name = f"d={d} T={T} B={B} {optimizer} {model}"
        print(f"{name:38s} {fast:15.1f} {slow:16.2f} {fast / slow:7.1f}  {method:10s} {gap:.1e}")
        assert gap < 1e-2 or not math.isfinite(gap), f"batched and baseline disagree on {name}: {gap}"
    if not args.quick:
        project_grid()


if __name__ == "__main__":
    main()
