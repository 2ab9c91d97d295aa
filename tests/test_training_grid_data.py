"""The committed results of the paper's training grid (data/training_grid/training_grid.csv.gz, chapter 4):
their shape, and a random sample of them recomputed from scratch."""

import numpy as np
import pytest
import torch

from assocmem import sweep, training, zipf

TABLE = training.load_grid()
KEY = ["model", "optimizer", "lr", "d", "T", "batch_size", "layer_norm", "seed"]
POINT = ["model", "optimizer", "d", "T", "batch_size"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The grid ran one torch thread per point; the recomputation does the same."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_file_holds_runs_of_the_grid_once_each():
    assert list(TABLE.columns) == list(training.GRID_COLUMNS)
    assert 0 < len(TABLE) <= training.GRID_RUNS == 40_320
    assert not TABLE.duplicated(KEY).any()
    for axis, values in training.GRID_AXES.items():
        assert set(TABLE[axis]) <= set(values), axis
    assert set(TABLE["lr"]) <= {0.1, 1.0, 10.0, 100.0} and set(TABLE["seed"]) <= set(range(10))
    # whole points only: 10 seeds x 4 step sizes x layer norm on / off
    assert (TABLE.groupby(POINT).size() == 80).all()
    finite = TABLE[~TABLE["diverged"]]
    assert finite["error"].between(0.0, 1.0).all()
    assert TABLE.loc[TABLE["diverged"], "error"].isna().all()


def test_errors_are_sums_of_token_probabilities():
    """Each error is the probability of a set of tokens: never below the mass of the least frequent token
    unless it is 0, and exactly 0 only where every token is recalled."""
    p = zipf.zipf_probs(100, 2.0)
    error = TABLE.loc[~TABLE["diverged"], "error"].to_numpy()
    assert np.all((error == 0) | (error >= p.min() * (1 - 1e-6)))


def sample_points(k_per_model: int = 1, seed: int = 0):
    """A seeded random choice, per model, of committed points cheap enough to recompute (d <= 50, T = 1024)."""
    rng = np.random.default_rng(seed)
    cheap = TABLE[(TABLE["d"] <= 50) & (TABLE["T"] == 1024)][POINT].drop_duplicates()
    chosen = []
    for model in training.MODELS:
        mine = cheap[cheap["model"] == model]
        if len(mine):
            picks = rng.choice(len(mine), min(k_per_model, len(mine)), replace=False)
            chosen += [mine.iloc[i].to_dict() for i in picks]
    return chosen


def test_the_file_holds_the_whole_grid():
    """Every point of the paper's grid is committed (a write from a partial cache would shrink it)."""
    assert len(TABLE) == training.GRID_RUNS
    assert len(TABLE.groupby(POINT)) == training.GRID_RUNS // 80 == 504


# The largest dimension at the largest T, at the two models whose points recompute in seconds there (B = 1024:
# 100 steps); they are among the last points the grid computed.
LARGE_POINTS = [{"model": "W", "optimizer": "sgd", "d": 1000, "T": 102_400, "batch_size": 1024},
                {"model": "relu", "optimizer": "adam", "d": 1000, "T": 102_400, "batch_size": 1024}]


@pytest.mark.parametrize("point", sample_points() + LARGE_POINTS, ids=lambda p: "-".join(str(v) for v in p.values()))
def test_a_random_sample_of_rows_recomputes(point):
    """Recompute the point's 80 runs with the experiment (the very program the grid ran: same shapes,
    same kernels) and compare every row. Float32 training of up to 100 steps: on this machine's code path
    the recomputation is bitwise the same; on another CPU path (AVX2 against AVX-512) products round
    differently (about 1e-7 relative), which moves an error only where a token's two best classes are
    within that rounding, changing the error by that token's probability. So: every error within 1e-6
    (the rounding of a sum of 100 probabilities in float32 is 1e-7), except at most 2 of the 80 runs,
    which may differ by at most 0.05 (the mass of a rare token, x > 2)."""
    rows = sweep.get_experiment("optimization_grid").rows({k: int(v) if k in ("d", "T", "batch_size") else v
                                                            for k, v in point.items()})
    fresh = {(r["seed"], r["lr"], r["layer_norm"]): r for r in rows}
    mask = np.logical_and.reduce([TABLE[k] == v for k, v in point.items()])
    committed = TABLE[mask]
    assert len(committed) == len(fresh) == 80
    gaps = []
    for _, row in committed.iterrows():
        new = fresh[(row["seed"], row["lr"], row["layer_norm"])]
        assert new["diverged"] == row["diverged"]
        if not row["diverged"]:
            gaps.append(abs(new["error"] - row["error"]))
    gaps = np.array(gaps)
    assert (gaps > 1e-6).sum() <= 2 and gaps.max() <= 0.05, gaps[gaps > 1e-6]
