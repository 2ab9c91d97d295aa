"""The committed chapter-6 results (data/transformers/): complete grids, and a random sample of their
rows recomputed from the printed commands.

The sample is drawn with a fixed seed among the cheapest rows, so the module stays well under a
minute. Recomputed training runs agree with the committed ones within float32 round-off on the
machine that wrote them; on another CPU code path (e.g. ATen's AVX2 kernels) the trajectories
separate slowly, so losses are compared to a few hundredths of a nat and the paper's gap to a few
thousandths plus a tenth of itself (the gap is a mean of squared loss differences).
"""

import functools
import itertools
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from assocmem.sweep import get_experiment

DATA = Path(__file__).resolve().parents[1] / "data" / "transformers"
ND_FILES = sorted(DATA.glob("nd_balance_*.csv"))
pytestmark = pytest.mark.skipif(not ND_FILES, reason="no committed chapter-6 data")


@pytest.fixture(scope="module")
def nd():
    return pd.concat([pd.read_csv(path) for path in ND_FILES], ignore_index=True)


def committed_config(experiment, row) -> dict:
    """The experiment's parameters as the committed row records them (each row carries its config)."""
    return {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in experiment.defaults if k in row}


def single_thread(fn):
    @functools.wraps(fn)
    def wrapped(*args, **kwargs):
        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # as the CLI runs every point (--threads 1)
        try:
            return fn(*args, **kwargs)
        finally:
            torch.set_num_threads(threads)
    return wrapped


def readme_grids() -> dict:
    """File name -> {parameter: list of values} of the commands listed in data/transformers/README.md."""
    grids = {}
    for line in (DATA / "README.md").read_text().splitlines():
        match = re.match(r"\| `([\w.]+)` \| `python -m assocmem run \w+ (.*)` \|$", line)
        if match:
            axes = re.findall(r"--grid (\w+)=(\S+)", match.group(2))
            grids[match.group(1)] = {name: values.split(",") for name, values in axes}
    return grids


def test_every_committed_file_is_exactly_its_printed_grid():
    grids = readme_grids()
    assert {p.name for p in DATA.glob("*.csv")} == set(grids)
    for name, axes in grids.items():
        table = pd.read_csv(DATA / name)
        points = table.drop_duplicates([a for a in axes]).astype({a: str for a in axes})
        expected = set(itertools.product(*axes.values()))
        assert set(map(tuple, points[list(axes)].to_numpy())) == expected, name


def test_nd_tables_hold_what_the_rule_needs(nd):
    widths = sorted(nd.d_emb.unique())
    assert widths[-1] / widths[0] >= 10
    assert nd.groupby(["d_emb", "seed"]).size().min() >= 2  # a crossing needs two data sizes
    assert not nd.duplicated(["d_emb", "seed", "train_tokens"]).any()
    np.testing.assert_array_equal(nd.N, 12 * nd.d_emb**2 + 9 * nd.d_emb)  # one layer, N = 12 d^2 + 9 d
    assert np.all(nd.D == nd.train_tokens) and np.all(nd.gap_paper >= 0)
    # early stopping: every converged run ran exactly its patience past the minimum (one evaluation)
    converged = nd[nd.converged == 1]
    assert np.all(converged.steps_run - converged.step_min == converged.patience)
    assert np.all(nd[nd.converged == 0].steps_run == nd[nd.converged == 0].steps)


@single_thread
def test_a_random_sample_of_nd_rows_recomputes(nd):
    cheap = nd[(nd.d_emb <= 16) & (nd.steps_run <= 2000)]  # a few seconds each
    sample = cheap.sample(2, random_state=np.random.default_rng(18).integers(2**31))
    experiment = get_experiment("nd_balance")
    for _, row in sample.iterrows():
        again = experiment(**committed_config(experiment, row))
        assert again["N"] == row.N and again["D"] == row.D
        assert again["min_val_loss"] == pytest.approx(row.min_val_loss, abs=0.03)
        assert again["gap_paper"] == pytest.approx(row.gap_paper, rel=0.1, abs=0.005)
        assert abs(again["step_min"] - row.step_min) <= 200


CONVERGED_ND = sorted(DATA.glob("nd_converged_d*.csv"))


@pytest.fixture(scope="module")
def nd_converged():
    if not CONVERGED_ND:
        pytest.skip("no converged N-D tables committed")
    return pd.concat([pd.read_csv(path) for path in CONVERGED_ND], ignore_index=True)


def test_converged_nd_tables_span_a_decade_of_widths_with_three_seeds(nd_converged):
    table = nd_converged
    widths = sorted(table.d_emb.unique())
    assert widths[-1] / widths[0] >= 10
    assert table.groupby("d_emb").seed.nunique().min() >= 3
    # each width: every seed on the same sizes (a complete grid), at least two of them
    for d, rows in table.groupby("d_emb"):
        sizes = rows.groupby("seed").D.apply(lambda D: tuple(sorted(D)))
        assert sizes.nunique() == 1 and len(sizes.iloc[0]) >= 2, d
    assert not table.duplicated(["d_emb", "seed", "train_tokens"]).any()
    np.testing.assert_array_equal(table.N, 12 * table.d_emb**2 + 9 * table.d_emb)
    assert np.all(table.D == table.train_tokens) and np.all(table.steps == 20000)
    converged = table[table.converged == 1]
    assert np.all(converged.steps_run - converged.step_min == converged.patience)
    capped = table[table.converged == 0]
    assert np.all(capped.steps_run == capped.steps) and np.all(capped.steps - capped.step_min < capped.patience)


def test_converged_runs_continue_the_capped_runs(nd, nd_converged):
    # The same settings but the cap: a run's first 3000 steps are the same computation on the same
    # machine, so a run that stopped by patience before 3000 steps is the same run under either cap.
    both = nd.merge(nd_converged, on=["d_emb", "seed", "train_tokens"], suffixes=("_3000", ""))
    assert len(both) >= 30
    early = both[both.converged_3000 == 1]
    assert len(early) >= 5  # not a vacuous check
    for column in ("steps_run", "step_min", "converged"):
        np.testing.assert_array_equal(early[column], early[f"{column}_3000"])
    for column in ("min_val_loss", "final_train_loss", "gap_paper", "gap_book"):
        np.testing.assert_allclose(early[column], early[f"{column}_3000"], rtol=1e-6)
    # a run capped at 3000 steps had not stopped: under the higher cap it runs on, and its best
    # validation loss is the minimum over a longer curve that starts with the capped one
    late = both[both.converged_3000 == 0]
    assert len(late) >= 20 and np.all(late.steps_run > 3000)
    assert np.all(late.min_val_loss <= late.min_val_loss_3000 + 1e-6)


@single_thread
def test_a_random_sample_of_converged_nd_rows_recomputes(nd_converged):
    # cheap rows: those that stopped by patience within 2000 steps (a few seconds each)
    cheap = nd_converged[(nd_converged.converged == 1) & (nd_converged.steps_run <= 2000)]
    sample = cheap.sample(2, random_state=np.random.default_rng(180).integers(2**31))
    experiment = get_experiment("nd_balance")
    for _, row in sample.iterrows():
        again = experiment(**committed_config(experiment, row))
        assert again["N"] == row.N and again["D"] == row.D and again["converged"] == 1
        assert again["min_val_loss"] == pytest.approx(row.min_val_loss, abs=0.03)
        assert again["gap_paper"] == pytest.approx(row.gap_paper, rel=0.1, abs=0.005)
        assert abs(again["step_min"] - row.step_min) <= 200


@single_thread
def test_the_start_of_a_random_loss_floor_run_recomputes():
    floor = pd.read_csv(DATA / "loss_floor.csv")
    runs = floor[["corpus", "seed"]].drop_duplicates()
    pick = runs.iloc[np.random.default_rng(18).integers(len(runs))]
    run = floor[(floor.corpus == pick.corpus) & (floor.seed == pick.seed)]
    committed = run[run.step <= 200]
    experiment = get_experiment("loss_floor")
    # the first 200 steps of the committed run: same settings, a budget of 200 steps
    rows = pd.DataFrame(experiment(**{**committed_config(experiment, run.iloc[0]), "steps": 200}))
    assert len(rows) == len(committed)
    for column in ("train_loss_all", "val_loss_filled"):
        np.testing.assert_allclose(rows[column], committed[column], atol=0.02)
    for column in ("energy_in", "energy_out", "global_energy"):
        np.testing.assert_allclose(rows[column], committed[column], rtol=0.01)
    np.testing.assert_allclose(rows.entropy_rate, committed.entropy_rate, rtol=1e-12)


@single_thread
def test_the_initial_activation_geometry_recomputes():
    geometry = pd.read_csv(DATA / "activation_geometry.csv")
    seed = int(np.random.default_rng(18).choice(geometry.seed.unique()))
    committed = geometry[(geometry.seed == seed) & (geometry.stage == "init")]
    experiment = get_experiment("activation_geometry")
    config = committed_config(experiment, committed.iloc[0])
    config["sample_sizes"] = tuple(int(m) for m in committed.m)
    # steps=1 leaves the "init" rows (before any training) as the committed run computed them
    rows = pd.DataFrame(experiment(**{**config, "steps": 1, "eval_every": 1}))
    rows = rows[rows.stage == "init"]
    np.testing.assert_allclose(rows.nn_mean, committed.nn_mean, rtol=1e-4)
    np.testing.assert_allclose(rows.norm_mean, committed.norm_mean, rtol=1e-4)
    assert list(rows.m) == list(committed.m)


# (runs trained to the patience rule, the committed runs with the same settings but a 2000-step cap)
LONG_RUNS = [("loss_floor_converged.csv", "loss_floor.csv"), ("loss_floor_depth_converged.csv", "loss_floor_depth.csv")]


@pytest.mark.parametrize("long_name, short_name", LONG_RUNS)
def test_converged_loss_floor_runs_extend_the_committed_short_runs(long_name, short_name):
    if not (DATA / long_name).exists():
        pytest.skip(f"{long_name} not committed")
    long = pd.read_csv(DATA / long_name)
    short = pd.read_csv(DATA / short_name)
    columns = ["train_loss_all", "val_loss_filled", "energy_in", "energy_out", "global_energy"]
    runs = ["corpus", "n_layers", "seed"]
    matched = 0
    for key, run in long.groupby(runs):
        committed = short[(short[runs] == pd.Series(key, index=runs)).all(axis=1)].reset_index(drop=True)
        if len(committed):  # the same settings but the cap: the first 2000 steps are the same computation
            matched += 1
            prefix = run[run.step <= short.steps.max()].reset_index(drop=True)
            assert list(prefix[["step", "layer"]].itertuples(index=False)) == \
                list(committed[["step", "layer"]].itertuples(index=False))
            np.testing.assert_allclose(prefix[columns], committed[columns], rtol=1e-6)
        # each run ends by the patience rule on the validation loss, or at the cap
        curve = run[run.layer == 1]
        best = curve.step.iloc[int(np.argmin(curve.val_loss_filled.to_numpy()))]
        last = curve.step.max()
        assert last - best == run.patience.iloc[0] or (last == run.steps.iloc[0] and last - best < run.patience.iloc[0])
        assert np.isfinite(run[columns]).all().all()  # nothing diverged
    assert matched == short.groupby(runs).ngroups  # every short run has its long run
