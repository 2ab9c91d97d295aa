"""Build chapter 8's validation tables from the training grids (see README.md in this directory).

    python data/predictor/build.py            # runs.csv and cells.csv from raw/ (this grid)
    python data/predictor/build.py --grid14   # also the tables of the paper's full grid (issue 14)
    python data/predictor/build.py --grid14 --keep-cells   # only those, cells.csv as it is (run both at once)
    python data/predictor/build.py --off-grid --keep-cells # only cells_off_grid.csv, from off_grid_runs.csv

``runs.csv``: one row per training run. ``cells.csv``: one row per cell (optimiser, d, T, B, gamma, layer
norm) with the measured mean error over its seeds and the prediction of
``assocmem.theory.predictor.predict_error`` (``samples=8``, ``seed=0``; ``--grid14-samples`` for the full
grid's cells, recorded in their ``samples`` column), its 90 % band for that mean,
whether the measurement lies inside and the ratio measured / predicted. Cells already in ``cells.csv``
with the same number of runs keep their prediction (``--fresh`` recomputes every one).

With ``--grid14``, from the W-only rows of ``data/training_grid/training_grid.csv.gz``:
``overlap_grid14.csv``, the cells both grids ran, with both measured means (the same seeds and settings,
run by two versions of the trainer); ``cells_grid14.csv``, the calibration on the cells this grid lacks.

With ``--off-grid``, from ``off_grid_runs.csv`` (``run_off_grid.sh``: step sizes and batch sizes between the
grids' values): ``cells_off_grid.csv``, the same table for those cells, on which chapter 8 checks the
corrected predictor away from the values its factors were estimated at.
"""

import argparse
import time
from pathlib import Path

import pandas as pd

from assocmem import training
from assocmem.theory import predictor

HERE = Path(__file__).resolve().parent
COLUMNS = ["optimizer", "d", "T", "batch_size", "lr", "layer_norm", "seed", "error", "diverged"]
KEYS = list(predictor.CELL_KEYS)


def calibrate(cells: pd.DataFrame, previous: pd.DataFrame | None, samples: int = 8) -> pd.DataFrame:
    """Predictions for ``cells`` (``samples`` count draws), reusing those of ``previous`` for cells with the
    same key and runs."""
    start = time.perf_counter()
    if previous is not None:
        kept = cells.merge(previous.drop(columns=["error", "error_sd", "diverged"]), on=KEYS + ["trials"])
        todo = cells.merge(kept[KEYS], on=KEYS, how="left", indicator=True).query("_merge == 'left_only'")
        todo = todo.drop(columns="_merge")
    else:
        kept, todo = None, cells
    fresh = predictor.calibration(todo, samples=samples, seed=0) if len(todo) else None
    table = pd.concat([t for t in (kept, fresh) if t is not None], ignore_index=True)
    table = table.sort_values(KEYS, ignore_index=True)
    print(f"{len(todo)} of {len(table)} cells predicted in {time.perf_counter() - start:.0f} s;",
          predictor.calibration_summary(table).to_dict("records")[0])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--grid14", action="store_true", help="also the tables of the paper's full grid")
    parser.add_argument("--fresh", action="store_true", help="recompute every prediction")
    parser.add_argument("--off-grid", action="store_true", help="also the table of the off-grid runs")
    parser.add_argument("--keep-cells", action="store_true", help="leave runs.csv and cells.csv as they are")
    parser.add_argument("--grid14-samples", type=int, default=8, help="count draws for the full grid's cells")
    args = parser.parse_args()
    if args.keep_cells:
        cells = pd.read_csv(HERE / "cells.csv")
    else:
        raw = pd.concat([pd.read_csv(path) for path in sorted((HERE / "raw").glob("*.csv"))], ignore_index=True)
        runs = raw[COLUMNS].sort_values(COLUMNS[:7], ignore_index=True)
        runs.to_csv(HERE / "runs.csv", index=False)
        previous = kept(HERE / "cells.csv", args.fresh)
        cells = calibrate(predictor.grid_cells(runs), previous)
        cells.to_csv(HERE / "cells.csv", index=False)
    if args.grid14:
        other = predictor.grid_cells(training.load_grid())
        both = other.merge(cells[KEYS + ["error", "trials"]], on=KEYS, suffixes=("", "_here"))
        both.to_csv(HERE / "overlap_grid14.csv", index=False)
        new = other.merge(cells[KEYS], on=KEYS, how="left", indicator=True).query("_merge == 'left_only'")
        path = HERE / "cells_grid14.csv"
        calibrate(new.drop(columns="_merge"), kept(path, args.fresh), args.grid14_samples).to_csv(path, index=False)
    if args.off_grid:
        path = HERE / "cells_off_grid.csv"
        off = predictor.grid_cells(pd.read_csv(HERE / "off_grid_runs.csv"))
        calibrate(off, kept(path, args.fresh)).to_csv(path, index=False)


def kept(path: Path, fresh: bool) -> pd.DataFrame | None:
    """The table at ``path`` whose predictions :func:`calibrate` reuses, or None (``--fresh``, or none yet)."""
    return pd.read_csv(path) if path.exists() and not fresh else None


if __name__ == "__main__":
    main()
