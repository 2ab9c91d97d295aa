"""Fix the predictor's one free constant, the capacity c of a full memory (m = c d fitted tokens), on the
calibration half of the validation grid only (chapter 8; the other half and the full grid's cells are the
validation, never used here).

    python data/predictor/calibrate_capacity.py     # writes data/predictor/capacity_calibration.csv

The calibration half is fixed in advance by ``assocmem.theory.predictor.calibration_half``: a checkerboard
over (gamma, B), so that it holds every d, T, optimiser and layer-norm setting. Only its cells with
d <= 100 are predicted (at larger d no count draw of the grid's T sees more than c d tokens, and the constant
does nothing). For each candidate c: the fraction of those cells inside their 90 % band and the median ratio
measured / predicted; the chosen c has the largest fraction inside (ties: the median ratio nearest 1).
"""

import sys
import time
from pathlib import Path

import pandas as pd

from assocmem.theory import predictor

HERE = Path(__file__).resolve().parent
CANDIDATES = (0.5, 0.625, 0.75, 0.875, 1.0)
COLUMNS = ["rule", "d", "T", "batch_size", "lr", "layer_norm", "error", "error_sd", "trials", "diverged"]


def main() -> None:
    cells = pd.read_csv(HERE / "cells.csv")[COLUMNS]
    part = cells[predictor.calibration_half(cells) & (cells["d"] <= 100)]
    candidates = [float(c) for c in sys.argv[1:]] or CANDIDATES
    rows = []
    for c in candidates:
        start = time.perf_counter()
        table = predictor.calibration(part, samples=8, seed=0, capacity=c)
        for rule, group in [("all", table)] + list(table.groupby("rule")):
            s = predictor.calibration_summary(group).iloc[0]
            rows.append(dict(capacity=c, rule=rule, cells=int(s["cells"]), inside=s["inside"],
                             median_ratio=s["median_ratio"]))
        print(f"capacity {c}: {rows[-3]} ({time.perf_counter() - start:.0f} s)", flush=True)
    out = pd.DataFrame(rows)
    path = HERE / "capacity_calibration.csv"
    if path.exists() and sys.argv[1:]:
        out = pd.concat([pd.read_csv(path), out]).drop_duplicates(["capacity", "rule"], keep="last")
    out.sort_values(["capacity", "rule"]).to_csv(path, index=False)


if __name__ == "__main__":
    main()
