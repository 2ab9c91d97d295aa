#!/usr/bin/env bash
# The validation grid of chapter 8 (issue 16): W-only memories trained by SGD and by the paper's Adam
# (sign descent: torch's Adam with betas (0, 0), at lr = gamma / d), N = 100, M = 5, alpha = 2,
# W0 = randn / sqrt(d); each grid point trains 10 seeds x gamma in {0.1, 1, 10, 100} x layer norm off/on.
# Run from a checkout of the commit in data/predictor/COMMIT:  bash data/predictor/run_grid.sh
# Each command is cached point by point: re-running resumes. Cheap points first.
set -euo pipefail
PY=${PY:-python}
OUT=${OUT:-data/predictor/raw}
CACHE=${CACHE:-$HOME/.cache/assocmem}
mkdir -p "$OUT"
run() { nice -n 10 "$PY" -m assocmem run optimization_grid --quiet --cache "$CACHE" "$@"; }
D="10 20 50 100 200 500 1000"
lrs() { "$PY" -c "print('+'.join(repr(g / $1) for g in (0.1, 1.0, 10.0, 100.0)))"; }
run --grid d=${D// /,} --grid T=1024,10240 --grid batch_size=16,64,256,1024 --grid optimizer=sgd --out "$OUT/sgd.csv"
for d in 10 20 50 100 200 500; do
  run --grid d=$d --grid T=1024,10240 --grid batch_size=1024,256,64,16 --grid optimizer=sign \
      --grid lrs=$(lrs $d) --out "$OUT/sign_d$d.csv"
done
# The machine was shared by eight sessions (load average above 30): the most expensive points were left out.
run --grid d=1000 --grid T=1024,10240 --grid batch_size=1024,256 --grid optimizer=sign \
    --grid lrs=$(lrs 1000) --out "$OUT/sign_d1000.csv"
run --grid d=${D// /,} --grid T=102400 --grid batch_size=1024,256 --grid optimizer=sgd --out "$OUT/sgd_T102400.csv"
