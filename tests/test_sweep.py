"""The sweep runner: grids, stable keys, the on-disk cache (hits, misses, corruption), tidy tables."""

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

from assocmem import sweep

CALLS = []


@sweep.experiment("test_square", version=1)
def square(x=1, scale=1.0, seed=0):
    """One row per point: x², and a seeded random number."""
    CALLS.append((x, scale, seed))
    return {"y": scale * x**2, "noise": float(np.random.default_rng(seed).random())}


@sweep.experiment("test_curve")
def curve(n=3, offset=0):
    """Several rows per point, as a nested scan returns them."""
    return [{"i": i, "value": offset + i} for i in range(n)]


@pytest.fixture(autouse=True)
def fresh_calls():
    CALLS.clear()


def test_grid_is_the_ordered_product():
    assert sweep.grid(a=[1, 2], b="xy", c=range(2))[:3] == [
        {"a": 1, "b": "xy", "c": 0}, {"a": 1, "b": "xy", "c": 1}, {"a": 2, "b": "xy", "c": 0}]
    assert len(sweep.grid(a=[1, 2, 3], b=[4, 5])) == 6
    with pytest.raises(ValueError, match="grid axis 'a' is empty"):
        sweep.grid(a=[])


def test_key_is_stable_across_orderings_defaults_and_processes():
    key = sweep.config_key(square, {"x": 2, "seed": 1})
    assert key == sweep.config_key(square, {"seed": 1, "x": 2, "scale": 1.0})
    assert key != sweep.config_key(square, {"x": 3, "seed": 1})
    code = ("import tests.test_sweep as t; from assocmem import sweep; "
            "print(sweep.config_key(t.square, {'x': 2, 'seed': 1}))")
    env = {**os.environ, "PYTHONHASHSEED": "123"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == key


def test_version_changes_the_key():
    bumped = sweep.Experiment("test_square", square.fn, square.defaults, version=2)
    assert sweep.config_key(bumped, {}) != sweep.config_key(square, {})


def test_cache_miss_then_hit(tmp_path):
    configs = sweep.grid(x=[1, 2, 3], seed=[0, 1])
    first = sweep.run_sweep(square, configs, cache=tmp_path, progress=False)
    assert len(CALLS) == 6 and first.attrs["sweep"]["computed"] == 6
    again = sweep.run_sweep("test_square", configs, cache=tmp_path, progress=False)
    assert len(CALLS) == 6, "a cached point was recomputed"
    assert again.attrs["sweep"] == {**first.attrs["sweep"], "cached": 6, "computed": 0}
    assert again.equals(first)


def test_table_rows_are_complete_and_ordered(tmp_path):
    table = sweep.run_sweep(curve, sweep.grid(offset=[10, 20], n=[2, 3]), cache=tmp_path, progress=False)
    assert list(table.columns) == ["n", "offset", "i", "value"]
    assert table[["offset", "n", "i"]].values.tolist() == [
        [10, 2, 0], [10, 2, 1], [10, 3, 0], [10, 3, 1], [10, 3, 2],
        [20, 2, 0], [20, 2, 1], [20, 3, 0], [20, 3, 1], [20, 3, 2]]
    assert (table["value"] == table["offset"] + table["i"]).all()


def test_partial_cache_computes_only_the_missing_points(tmp_path):
    sweep.run_sweep(square, sweep.grid(x=[1, 2]), cache=tmp_path, progress=False)
    CALLS.clear()
    table = sweep.run_sweep(square, sweep.grid(x=[1, 2, 3, 4]), cache=tmp_path, progress=False)
    assert [c[0] for c in CALLS] == [3, 4]
    assert table["y"].tolist() == [1.0, 4.0, 9.0, 16.0]


@pytest.mark.parametrize("damage", [
    lambda text: text[: len(text) // 2],                      # truncated
    lambda text: "not json at all",                           # garbage
    lambda text: text.replace('"y": 4.0', '"y": 5.0'),        # valid JSON, wrong checksum
])
def test_corrupt_entry_is_reported_and_recomputed(tmp_path, damage):
    cache = sweep.DiskCache(tmp_path)
    sweep.run_sweep(square, [{"x": 2}], cache=cache, progress=False)
    path = cache.path(sweep.config_key(square, {"x": 2}))
    damaged = damage(path.read_text())
    assert damaged != path.read_text()
    path.write_text(damaged)
    CALLS.clear()
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        table = sweep.run_sweep(square, [{"x": 2}], cache=cache, progress=False)
    assert CALLS == [(2, 1.0, 0)] and table["y"].tolist() == [4.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert cache.load(sweep.config_key(square, {"x": 2}))[0]["y"] == 4.0  # repaired on disk


def _rechecksummed(entry: dict) -> str:
    """An entry edited by someone who knows the format: its checksum recomputed over what it now says."""
    entry["checksum"] = sweep._checksum(entry)
    return json.dumps(entry)


@pytest.mark.parametrize("forgery", ["copied from another key", "key field edited too", "config edited"])
def test_an_entry_not_bound_to_its_key_is_recomputed(tmp_path, forgery):
    cache = sweep.DiskCache(tmp_path)
    sweep.run_sweep(square, sweep.grid(x=[2, 3]), cache=cache, progress=False)
    key2, key3 = (sweep.config_key(square, {"x": x}) for x in (2, 3))
    other = json.loads(cache.path(key3).read_text())
    if forgery == "key field edited too":
        other["key"] = key2
    elif forgery == "config edited":
        other = json.loads(cache.path(key2).read_text())
        other["config"]["x"], other["rows"][0]["y"] = 5, 25.0
    cache.path(key2).write_text(_rechecksummed(other))
    CALLS.clear()
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        table = sweep.run_sweep(square, [{"x": 2}], cache=cache, progress=False)
    assert CALLS == [(2, 1.0, 0)] and table["y"].tolist() == [4.0]


def test_a_directory_in_place_of_an_entry_is_replaced(tmp_path):
    cache = sweep.DiskCache(tmp_path)
    path = cache.path(sweep.config_key(square, {"x": 2}))
    (path / "inside").mkdir(parents=True)
    with pytest.warns(UserWarning, match="corrupt cache entry"):
        table = sweep.run_sweep(square, [{"x": 2}], cache=cache, progress=False)
    assert table["y"].tolist() == [4.0] and path.is_file()
    assert cache.load(path.stem)[0]["y"] == 4.0


def test_entries_follow_the_umask_and_stale_temporaries_are_removed(tmp_path):
    cache = sweep.DiskCache(tmp_path)
    stale = tmp_path / "ab" / ".abc.json.x1y2.tmp"
    stale.parent.mkdir()
    stale.write_text("{")
    os.utime(stale, (0, 0))  # left by a writer killed long ago
    killed = tmp_path / "ab" / ".abe.json.x1y2.tmp"
    killed.write_text("{")  # a writer killed a moment ago: its lock is free, so it is stale however recent
    fresh = tmp_path / "ab" / ".abd.json.x1y2.tmp"
    fresh.write_text("{")  # a live writer's, about to be renamed: it holds the point's lock, not touched
    writer = cache.try_lock("abd")
    previous = os.umask(0o027)
    try:
        sweep.run_sweep(square, [{"x": 7}], cache=cache, progress=False)
    finally:
        os.umask(previous)
        writer.release()
    entry = cache.path(sweep.config_key(square, {"x": 7}))
    assert entry.stat().st_mode & 0o777 == 0o640
    assert not stale.exists() and not killed.exists() and fresh.exists()
    assert cache.remove_stale_temporaries() == 1 and not fresh.exists()  # its writer is gone now


def test_a_cache_directory_must_be_a_path():
    for bad in (float("nan"), 3, ["a"]):
        with pytest.raises(TypeError, match="directory"):
            sweep.DiskCache(bad)


def test_an_unwritable_cache_fails_before_computing(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(ValueError, match=f"cache directory {blocker} is not writable"):
        sweep.run_sweep(square, [{"x": 1}], cache=blocker, progress=False)
    assert CALLS == []


def test_cache_entries_are_self_describing_and_leave_no_temporary_files(tmp_path):
    sweep.run_sweep(square, [{"x": 3}], cache=tmp_path, progress=False)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 1 and files[0].suffix == ".json"
    entry = json.loads(files[0].read_text())
    assert entry["experiment"] == "test_square" and entry["config"]["x"] == 3


def test_cache_can_be_disabled(tmp_path, monkeypatch):
    monkeypatch.setenv(sweep.CACHE_ENV, str(tmp_path))
    sweep.run_sweep(square, [{"x": 1}], cache=False, progress=False)
    assert not any(tmp_path.iterdir())
    sweep.run_sweep(square, [{"x": 1}], cache=True, progress=False)
    assert any(tmp_path.rglob("*.json"))


def test_registry_and_validation():
    assert sweep.experiments()["test_square"] is square
    assert square(x=3)["y"] == 9
    with pytest.raises(ValueError, match=r"unknown parameter\(s\) \['z'\] for experiment 'test_square'"):
        sweep.run_sweep(square, [{"z": 1}], cache=False, progress=False)
    with pytest.raises(ValueError, match="experiment must be one of"):
        sweep.run_sweep("no_such_experiment", [{}], cache=False, progress=False)
    with pytest.raises(ValueError, match="executor must be one of"):
        sweep.run_sweep(square, [{}], cache=False, progress=False, executor="threads")
    with pytest.raises(TypeError, match="parameters \\['x'\\] need default values"):
        sweep.experiment("test_bad")(lambda x: {"x": x})
    with pytest.raises(TypeError, match="must return a dict or a list of dicts"):
        sweep.experiment("test_bad_rows")(lambda x=1: [1, 2]).rows()


@pytest.mark.parametrize("call, name", [
    (lambda: sweep.get_experiment(None), "name_or_experiment"),
    (lambda: sweep.get_experiment(np.array(["a", "b"])), "name_or_experiment"),
    (lambda: sweep.get_experiment("no_such_experiment"), "name_or_experiment"),
    (lambda: sweep.config_key(None, {}), "experiment"), (lambda: sweep.config_key("test_square", {}), "experiment"),
    (lambda: sweep.config_key(square, "x"), "config"),
    (lambda: sweep.run_sweep(np.array(["a"]), [{}], cache=False, progress=False), "experiment"),
    (lambda: sweep.run_sweep(square, None, cache=False, progress=False), "configs"),
    (lambda: sweep.run_sweep(square, "x", cache=False, progress=False), "configs"),
    (lambda: sweep.run_sweep(square, ["a"], cache=False, progress=False), "configs"),
    (lambda: sweep.run_sweep(square, [{}], cache=2, progress=False), "cache"),
    (lambda: sweep.run_sweep(square, [{}], cache=False, progress=False, threads=10**12), "threads"),
])
def test_lookups_keys_and_sweeps_refuse_bad_arguments_by_name(call, name):
    """Fuzz findings: an array gave "unhashable type", None an AttributeError or "not iterable", a string
    of configs dict()'s "update sequence element" error, the unknown name and a bad cache named the wrong
    parameter, threads = 1e12 torch's "Overflow when unpacking long"."""
    with pytest.raises((ValueError, TypeError), match=rf"(^|\W){name}(\W|$)"):
        call()
    assert sweep.get_experiment("test_square") is square and sweep.config_key(square, {"x": 2}) == sweep.config_key(
        square, {"x": 2, "scale": 1.0})
