"""Where the static picture fails: measured and predicted error of trained memories split by how often each
token was seen (chapter 8's diagnostic; not part of the validation table, nothing is fitted to it).

    python data/predictor/by_count.py      # writes data/predictor/by_count.csv (about a minute)

For each cell below, 20 seeds of the W-only memory (N = 100, M = 5, alpha = 2, W0 = randn/sqrt(d)) are trained
with ``assocmem.training.simulate`` and, on each seed's own counts, the predictor's per-token miss is computed
twice: the static Gaussian picture (final weights against the interference, no replay) and the replay of
every seen token's visits (``assocmem.theory.predictor``). Rows: per cell and count bin, the error mass
``sum_x p(x) [x wrong]`` averaged over seeds (``measured``, ``static``, ``replayed``) and the bin's mass.
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
BINS = [(0, 0), (1, 2), (3, 8), (9, 32), (33, None)]
N, M, ALPHA, SEEDS = 100, 5, 2.0, range(20)


def main() -> None:
    torch.set_num_threads(1)
    p, labels = zipf.zipf_probs(N, ALPHA), zipf.mod_labels(N, M)
    lab = np.concatenate([labels, np.arange(M)])
    rows = []
    for rule, d, T, B, gamma in CELLS:
        optimizer, lr = ("sgd", gamma) if rule == "sgd" else ("sign", gamma / d)
        _, run = training.simulate(d=d, T=T, batch_size=B, lrs=(lr,), seeds=SEEDS, optimizer=optimizer,
                                   init="random")
        wrong = (run.scores.double().numpy().argmax(1) != labels[None]).astype(float)
        counts = np.stack([zipf.token_counts(zipf.sample_tokens(N, ALPHA, T, s)[None], N)[0] for s in SEEDS])
        n_grid, margins, extra, schedule = P._decoupled(rule, gamma, B, T, np.array([float(d)]), N, M, ALPHA,
                                                        False, "random", P._GRID_POINTS)
        q = np.stack([np.interp(c, n_grid, margins[0]) for c in counts])
        static = np.stack([interference.token_error_probability(P._with_carrier(qk, 1 / d + extra[0], d, M),
                                                                lab, d, M)[:N] for qk in q])
        start = np.stack([P._with_carrier(qk, 1 / d, d, M) for qk in q])
        steps = None if schedule is None else tuple(part[:, 0] for part in schedule)
        replayed = P._replayed_miss(start, lab, counts, d, M, gamma, B, T // B, False, "random",
                                    np.random.default_rng(0), adam=steps)
        replayed = np.where(counts > 0, replayed, static)
        for lo, hi in BINS:
            inbin = (counts >= lo) & (counts <= (hi if hi is not None else T))
            mass = {name: float(((p * inbin) * miss).sum(1).mean()) for name, miss in
                    (("bin_mass", np.ones_like(wrong)), ("measured", wrong), ("static", static),
                     ("replayed", replayed))}
            rows.append(dict(rule=rule, d=d, T=T, batch_size=B, lr=gamma, low=lo,
                             high=hi if hi is not None else -1, **mass))
        print(rule, d, T, B, gamma, "measured", (wrong @ p).mean(), flush=True)
    pd.DataFrame(rows).to_csv(HERE / "by_count.csv", index=False)


if __name__ == "__main__":
    main()
