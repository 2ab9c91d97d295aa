"""Executors: serial, process pool and a real Dask LocalCluster give bit-identical tables; an
interrupted sweep resumes losing and recomputing nothing; concurrent sweeps share a cache safely."""

import functools
import json
import logging
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import sweep_fixtures
from sweep_fixtures import LOG_ENV

from assocmem import executors, sweep

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])}
GRID = sweep.grid(seed=[0, 1, 2], n=[500, 1500])


@pytest.fixture(scope="module")
def serial_table():
    return sweep.run_sweep(sweep_fixtures.torch_stats, GRID, cache=False, progress=False)


def test_serial_runs_each_point_with_the_requested_threads(serial_table):
    assert (serial_table["threads"] == 1).all()
    threaded = sweep.run_sweep(sweep_fixtures.torch_stats, GRID[:1], cache=False, progress=False, threads=2)
    assert threaded["threads"].tolist() == [2]


def test_process_pool_is_bit_identical_to_serial(serial_table, tmp_path):
    table = sweep.run_sweep(sweep_fixtures.torch_stats, GRID, cache=tmp_path, progress=False,
                            executor="processes", workers=2)
    assert table.equals(serial_table)


def test_dask_local_cluster_is_bit_identical_to_serial(serial_table, tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])  # the worker processes import the fixtures
    table = sweep.run_sweep(sweep_fixtures.torch_stats, GRID, cache=tmp_path, progress=False,
                            executor="dask", workers=2)
    assert table.equals(serial_table)


@pytest.mark.parametrize("experiment", ["fixture_slow", "fixture_fails"])
def test_a_local_cluster_is_torn_down_quietly(experiment, monkeypatch):
    """The scheduler closes with this process: a worker whose heartbeat is then in flight logs a traceback
    to the shared stderr, and so does a loop callback cut short by the signal (CI caught both after a
    SIGINT or SIGTERM). Whether the sweep ends or a point fails, every worker's loop loggers are at
    CRITICAL before the cluster goes, children with levels of their own included; so are this process's
    when a point fails, and they are restored after."""
    pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", ENV["PYTHONPATH"])
    quiet_workers, restore, workers, here = executors._quiet_loop_loggers_on, executors._restore_levels, [], []

    def quiet_and_look(client):
        quiet_workers(client)
        workers.append(client.run(executors._loop_logger_levels))

    def look_and_restore(levels):
        here.append(executors._loop_logger_levels())
        restore(levels)
        assert executors._loop_logger_levels() == {name: levels.get(name, logging.NOTSET) for name in here[0]}

    monkeypatch.setattr(executors, "_quiet_loop_loggers_on", quiet_and_look)
    monkeypatch.setattr(executors, "_restore_levels", look_and_restore)
    fn = functools.partial(executors.compute_point, experiment, "sweep_fixtures")
    points = executors.DaskExecutor(workers=2).map(fn, [(x, {"x": x}) for x in range(6)])
    if experiment == "fixture_fails":
        with pytest.raises(RuntimeError, match="boom at x=3"):
            list(points)
    else:
        assert sorted(index for index, _ in points) == list(range(6))
    assert len(workers) == 1 and len(workers[0]) == 2
    for levels in [*workers[0].values(), *(here if experiment == "fixture_fails" else [])]:
        assert {"distributed.client", "tornado.application"} <= set(levels)
        assert set(levels.values()) == {logging.CRITICAL}


def test_a_failing_point_keeps_the_finished_ones(tmp_path):
    with pytest.raises(RuntimeError, match="boom at x=3"):
        sweep.run_sweep(sweep_fixtures.fails, sweep.grid(x=range(6)), cache=tmp_path, progress=False)
    assert len(list(tmp_path.rglob("*.json"))) == 3  # x = 0, 1, 2 were stored before x = 3 failed


def _cli(*args, log=None, cache=None):
    env = {**ENV, **({LOG_ENV: str(log)} if log else {})}
    cmd = [sys.executable, "-m", "assocmem", "--import", "sweep_fixtures", "run", "fixture_slow",
           "--quiet", *(["--cache", str(cache)] if cache else ["--no-cache"]), *args]
    return cmd, env


def _logged(log: Path) -> list[str]:
    """The points ``fixture_slow`` computed, one per line of its log (``x time``)."""
    return [line.split()[0] for line in log.read_text().splitlines()]


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.rglob("*.json"))


def test_killed_sweep_resumes_without_losing_or_recomputing(tmp_path):
    cache, points = tmp_path / "cache", 24
    cmd, env = _cli("--grid", f"x=0:{points}", "--grid", "delay=0.25", "--out", str(tmp_path / "partial.csv"),
                    log=tmp_path / "first.log", cache=cache)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while len(_entries(cache)) < 6 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = len(_entries(cache))
    assert 6 <= finished < points, "the sweep should have been killed part-way"
    assert not (tmp_path / "partial.csv").exists(), "no half-written output"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every surviving entry is complete and valid
        loaded = [sweep.DiskCache(cache).load(p.stem) for p in _entries(cache)]
    assert all(rows is not None for rows in loaded)

    cmd, env = _cli("--grid", f"x=0:{points}", "--grid", "delay=0.25", "--out", str(tmp_path / "resumed.csv"),
                    log=tmp_path / "second.log", cache=cache)
    resumed = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    recomputed = _logged(tmp_path / "second.log")
    first_run = set(_logged(tmp_path / "first.log"))
    assert len(recomputed) == points - finished, "cached points were recomputed"
    assert first_run | set(recomputed) == {str(x) for x in range(points)}, "a point was lost"
    assert f"{finished} from the cache, {points - finished} computed" in resumed.stderr

    cmd, env = _cli("--grid", f"x=0:{points}", "--grid", "delay=0", "--out", str(tmp_path / "clean.csv"))
    clean = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    assert clean.returncode == 0
    resumed_rows = (tmp_path / "resumed.csv").read_text().splitlines()
    clean_rows = (tmp_path / "clean.csv").read_text().replace(",0.0,", ",0.25,").splitlines()
    assert resumed_rows == clean_rows and len(resumed_rows) == 1 + 2 * points


@pytest.mark.parametrize("executor", ["serial", "processes"])
def test_concurrent_sweeps_share_a_cache_and_the_work(tmp_path, executor):
    cache, points = tmp_path / "cache", 16
    workers = [] if executor == "serial" else ["--executor", "processes", "--workers", "2"]
    runs = []
    for name in ("a", "b"):
        cmd, env = _cli("--grid", f"x=0:{points}", "--grid", "delay=0.1", "--out", str(tmp_path / f"{name}.csv"),
                        *workers, log=tmp_path / f"{name}.log", cache=cache)
        runs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    for run in runs:
        assert run.wait(timeout=300) == 0, run.stderr.read()
    assert (tmp_path / "a.csv").read_text() == (tmp_path / "b.csv").read_text()
    computed = [x for name in ("a", "b") if (tmp_path / f"{name}.log").exists()
                for x in _logged(tmp_path / f"{name}.log")]
    assert sorted(computed, key=int) == [str(x) for x in range(points)], "a point was computed twice (or never)"
    files = _entries(cache)
    assert len(files) == points and not [p for p in cache.rglob("*") if p.suffix in (".tmp", ".lock")]
    for path in files:
        entry = json.loads(path.read_text())
        assert sweep.DiskCache(cache).load(entry["key"]) == entry["rows"]


@pytest.mark.parametrize("name, options, match", [
    ("threads", {}, "executor must be one of"),
    ("serial", {"workers": 2}, r"the serial executor takes options \[\], got \['workers'\]"),
    ("processes", {"workers": 0}, "workers must be an integer >= 1"),
    ("processes", {"scheduler": "tcp://x:1"}, r"takes options \['workers'\]"),
    ("dask", {"scheduler": "localhost"}, "scheduler must be an address"),
    ("dask", {"scheduler": "tcp://h:8786", "workers": 2}, "workers applies to a local cluster only"),
])
def test_executor_validation(name, options, match):
    with pytest.raises((ValueError, TypeError), match=match):
        executors.make_executor(name, **options)
    with pytest.raises(TypeError, match="or have a .map method"):
        executors.make_executor(object())


# Experiments whose work is an exact linear program (scipy) or a few small float64 runs in the reduced
# coordinates of chapter 7: nothing in them gains from an accelerator, so they run on the CPU only.
CPU_ONLY = {"capacity_largest_stored", "capacity_zipf_error", "capacity_learned_vs_M", "capacity_phase"}


def test_every_book_experiment_can_choose_its_device():
    book = {name: exp for name, exp in sweep.experiments().items() if not name.startswith(("test_", "fixture_"))}
    assert len(book) >= 8
    assert CPU_ONLY <= book.keys(), "a CPU-only exemption names an experiment that no longer exists"
    assert [name for name, exp in book.items() if "device" not in exp.defaults and name not in CPU_ONLY] == []
    rows = sweep.get_experiment("interference_error_vs_d").rows(
        {"N": 50, "d_min": 4, "d_max": 16, "n_d": 3, "trials": 2, "device": "cpu"})
    assert [row["d"] for row in rows] == [4, 8, 16] and all(0 <= row["error_mean"] <= 1 for row in rows)


@pytest.mark.parametrize("change, name", [
    (dict(name="no_such_experiment"), "name"), (dict(name=None), "name"), (dict(module="no-such-module"), "module"),
    (dict(module=None), "module"), (dict(config="x"), "config"), (dict(threads=0), "threads"),
    (dict(threads=2.5), "threads"), (dict(threads=10**12), "threads"),
])
def test_compute_point_refuses_bad_arguments_by_name(change, name):
    """Fuzz findings: an unknown name was reported as "experiment must be ...", a bad module as
    ModuleNotFoundError or AttributeError, bad threads as torch's RuntimeError from set_num_threads."""
    args = dict(name="interference_error_vs_d", module="assocmem.memory",
                config=sweep.get_experiment("interference_error_vs_d").config(
                    {"N": 50, "d_min": 4, "d_max": 16, "n_d": 3, "trials": 2, "device": "cpu"})) | change
    with pytest.raises((ValueError, TypeError), match=rf"(^|\W){name}(\W|$)"):
        executors.compute_point(**args)
