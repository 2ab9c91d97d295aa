#!/usr/bin/env bash
# Chapter 8's off-grid check (issue 16): W-only memories trained by SGD and by the paper's Adam at step sizes
# and batch sizes between those of the validation grids (gamma in {0.3, 3, 30}, B in {32, 128, 512}), at every
# d and T of the grids; N = 100, M = 5, alpha = 2, W0 = randn / sqrt(d), 10 seeds x layer norm off/on per
# point. Cached point by point (re-running resumes), then predicted.  Run from the repository root:
#   bash data/predictor/run_off_grid.sh
set -euo pipefail
PY=${PY:-python}
CACHE=${CACHE:-$HOME/.cache/assocmem}
nice -n 10 "$PY" -m assocmem run optimization_grid --quiet --cache "$CACHE" \
  --grid d=10,20,50,100,200,500,1000 --grid T=1024,10240,102400 --grid batch_size=32,128,512 \
  --grid optimizer=sgd,adam --grid lrs=0.3+3+30 --out data/predictor/off_grid_runs.csv --overwrite
"$PY" data/predictor/build.py --off-grid --keep-cells
