"""Where the predictor fails: measured and predicted error of trained memories split by how often each token
was seen, and by its rank (chapter 8's diagnostics; not part of the validation table, nothing is fitted to
them).

    python data/predictor/by_count.py      # writes data/predictor/by_count.csv and by_rank.csv (a few minutes)

For each cell below, 20 seeds of the W-only memory (N = 100, M = 5, alpha = 2, W0 = randn/sqrt(d)) are trained
with ``assocmem.training.simulate`` and, on each seed's own counts, the predictor's per-token miss is computed
three ways: the static Gaussian picture (final weights against the interference, no replay), the replay of
every seen token's visits (``assocmem.theory.predictor``, module notes 4 and 5), and the replay in a full
memory (notes 6, at ``predictor.CAPACITY``). ``by_count.csv``: per cell and count bin, the error mass
``sum_x p(x) [x wrong]`` averaged over seeds (``measured``, ``static``, ``replayed``, ``full``) and the bin's
mass. ``by_rank.csv``: per cell and token rank, the mean count and the miss probability (same columns).
"""

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from assocmem import training, zipf
from assocmem.theory import interference
from assocmem.theory import predictor as P

HERE = Path(__file__).resolve().parent
CELLS = [("sgd", 10, 1024, 16, 10.0), ("sgd", 10, 10240, 256, 10.0), ("sgd", 200, 10240, 16, 100.0),
         ("adam", 100, 10240, 64, 1.0)]
RANK_CELLS = [("sgd", 10, 10240, 16, 10.0), ("sgd", 20, 10240, 16, 10.0), ("sgd", 50, 10240, 16, 10.0),
              ("sgd", 10, 102400, 256, 10.0)]
BINS = [(0, 0), (1, 2), (3, 8), (9, 32), (33, None)]
N, M, ALPHA, SEEDS = 100, 5, 2.0, range(20)


def misses(rule, d, T, B, gamma):
    """Measured, static, replayed and full-memory per-token miss on each seed's counts, shape (seeds, N)."""
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    lab = np.concatenate([labels, np.arange(M)])
    optimizer, lr = ("sgd", gamma) if rule == "sgd" else ("sign", gamma / d)
    _, run = training.simulate(d=d, T=T, batch_size=B, lrs=(lr,), seeds=SEEDS, optimizer=optimizer, init="random")
    wrong = (run.scores.double().numpy().argmax(1) != labels[None]).astype(float)
    counts = np.stack([zipf.token_counts(zipf.sample_tokens(N, ALPHA, T, s)[None], N)[0] for s in SEEDS])
    n_grid, margins, extra, schedule, progress = P._decoupled(rule, gamma, B, T, np.array([float(d)]), N, M, ALPHA,
                                                              False, "random", P._GRID_POINTS)
    q = np.stack([np.interp(c, n_grid, margins[0]) for c in counts])
    static = np.stack([interference.token_error_probability(P._with_carrier(qk, 1 / d + extra[0], d, M),
                                                            lab, d, M)[:N] for qk in q])
    steps = None if schedule is None else tuple(part[:, 0] for part in schedule)
    args = (n_grid, margins[0], 1 / d, lab, counts, d, M, gamma, B, T // B, False, "random")
    replayed = P._replayed_miss(*args, np.random.default_rng(0), adam=steps)
    full = P._full_memory_miss(replayed, P.CAPACITY, progress[0], *args, np.random.default_rng(1), adam=steps)
    seen = counts > 0
    print(rule, d, T, B, gamma, "measured", (wrong @ p).mean(), flush=True)
    return counts, dict(measured=wrong, static=static, replayed=np.where(seen, replayed, static),
                        full=np.where(seen, full, static))


def main() -> None:
    torch.set_num_threads(1)
    p = zipf.zipf_probs(N, ALPHA)
    rows, ranks = [], []
    for rule, d, T, B, gamma in CELLS:
        counts, miss = misses(rule, d, T, B, gamma)
        for lo, hi in BINS:
            inbin = (counts >= lo) & (counts <= (hi if hi is not None else T))
            mass = {name: float(((p * inbin) * m).sum(1).mean()) for name, m in miss.items()}
            rows.append(dict(rule=rule, d=d, T=T, batch_size=B, lr=gamma, low=lo,
                             high=hi if hi is not None else -1, bin_mass=float((p * inbin).sum(1).mean()), **mass))
    for rule, d, T, B, gamma in RANK_CELLS:
        counts, miss = misses(rule, d, T, B, gamma)
        for x in range(N):
            ranks.append(dict(rule=rule, d=d, T=T, batch_size=B, lr=gamma, rank=x + 1, count=counts[:, x].mean(),
                              **{name: float(m[:, x].mean()) for name, m in miss.items()}))
    pd.DataFrame(rows).to_csv(HERE / "by_count.csv", index=False)
    pd.DataFrame(ranks).to_csv(HERE / "by_rank.csv", index=False)


if __name__ == "__main__":
    main()
