"""One runner for every grid of experiments: registry, grid, on-disk cache, executors, progress.

An *experiment* is a function of keyword parameters that returns one result row (a dict of
JSON-serialisable values) or a list of rows. ``run_sweep`` evaluates it on every configuration of a
grid, reads finished points from a cache keyed by a stable hash of the experiment's name, version and
full configuration, writes each new point atomically the moment it finishes (so an interrupted sweep
resumes losing nothing), and returns a tidy ``pandas.DataFrame``: one row per result row, the
configuration's columns first. The appendix *Running at scale* shows the command line on top of it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import inspect
import itertools
import json
import os
import pkgutil
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import _validate as check
from ._io import atomic_write_text
from .executors import compute_point, make_executor

CACHE_ENV = "ASSOCMEM_CACHE_DIR"
_REGISTRY: dict[str, Experiment] = {}


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``fn(**params)`` returns a row (dict) or a list of rows."""

    name: str
    fn: Callable = field(repr=False, compare=False)
    defaults: Mapping = field(compare=False)
    version: int = 1
    doc: str = ""

    def config(self, overrides: Mapping | None = None) -> dict:
        """The full configuration: defaults updated by ``overrides`` (unknown names are an error)."""
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for experiment {self.name!r}; "
                             f"its parameters are {sorted(self.defaults)}")
        return {**self.defaults, **overrides}

    def rows(self, overrides: Mapping | None = None) -> list[dict]:
        """Run once and return the result as a list of rows."""
        result = self.fn(**self.config(overrides))
        rows = [result] if isinstance(result, Mapping) else list(result)
        if not all(isinstance(row, Mapping) for row in rows):
            raise TypeError(f"experiment {self.name!r} must return a dict or a list of dicts")
        return [dict(row) for row in rows]

    def __call__(self, **overrides):
        return self.fn(**self.config(overrides))


def experiment(name: str, *, version: int = 1) -> Callable[[Callable], Experiment]:
    """Register ``fn`` as the experiment ``name``; every parameter of ``fn`` needs a default.

    Bump ``version`` when the computation changes, so cached results of the old one are not reused.
    """
    def register(fn: Callable) -> Experiment:
        params = inspect.signature(fn).parameters.values()
        missing = [p.name for p in params if p.default is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"experiment {name!r}: parameters {missing} need default values")
        doc = inspect.getdoc(fn) or ""
        exp = Experiment(name, fn, {p.name: p.default for p in params}, version, doc)
        _REGISTRY[name] = exp
        return exp
    return register


def experiments() -> dict[str, Experiment]:
    """Every registered experiment, by name (importing the package's modules registers them)."""
    import assocmem

    for module in pkgutil.iter_modules(assocmem.__path__):
        if not module.name.startswith("_") and module.name not in {"plotting", "widgets"}:
            importlib.import_module(f"assocmem.{module.name}")
    return dict(sorted(_REGISTRY.items()))


def get_experiment(name_or_experiment) -> Experiment:
    """Look an experiment up by name (an ``Experiment`` is returned as is)."""
    if isinstance(name_or_experiment, Experiment):
        return name_or_experiment
    if name_or_experiment in _REGISTRY:
        return _REGISTRY[name_or_experiment]
    known = experiments()
    if name_or_experiment not in known:
        raise ValueError(f"experiment must be one of {sorted(known)}, got {name_or_experiment!r}")
    return known[name_or_experiment]


def grid(**axes: Iterable) -> list[dict]:
    """The product of named parameter lists, the last name varying fastest.

    >>> grid(d=[10, 20], seed=range(2))
    [{'d': 10, 'seed': 0}, {'d': 10, 'seed': 1}, {'d': 20, 'seed': 0}, {'d': 20, 'seed': 1}]
    """
    values = []
    for name, axis in axes.items():
        axis = [axis] if isinstance(axis, (str, bytes)) or not isinstance(axis, Iterable) else list(axis)
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty")
        values.append(axis)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def config_key(experiment: Experiment, config: Mapping) -> str:
    """Stable SHA-256 of the experiment's name, version and full configuration."""
    payload = {"experiment": experiment.name, "version": experiment.version,
               "config": experiment.config(config)}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()


class DiskCache:
    """Results on disk, one JSON file per configuration, written atomically.

    Each entry carries a checksum of its result; an entry that is truncated, not valid JSON, or whose
    checksum does not match is reported with a warning and treated as missing, so it is recomputed.
    Writers use a temporary file and ``os.replace``, so concurrent sweeps never leave a half-written
    entry and readers see either the old file or the new one.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        directory = directory or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "assocmem"
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        return self.directory / key[:2] / f"{key}.json"

    def load(self, key: str) -> list[dict] | None:
        """The cached rows for ``key``, or ``None`` when absent or corrupt."""
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
            rows = entry["rows"]
            valid = entry["key"] == key and entry["checksum"] == _checksum(rows)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            warnings.warn(f"corrupt cache entry {path} ignored; it will be recomputed", stacklevel=2)
            return None
        return rows

    def store(self, key: str, experiment: Experiment, config: Mapping, rows: list[dict]) -> None:
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "experiment": experiment.name, "version": experiment.version,
                 "config": dict(config), "rows": rows, "checksum": _checksum(rows)}
        atomic_write_text(path, json.dumps(entry, allow_nan=True))  # keeps the rows' column order


def run_sweep(experiment, configs: Iterable[Mapping], *, cache: DiskCache | str | os.PathLike | bool = True,
              executor="serial", threads: int = 1, progress: bool = True, **executor_options) -> pd.DataFrame:
    """Evaluate ``experiment`` on each configuration and return the tidy table of results.

    Parameters
    ----------
    experiment : Experiment or str
        A registered experiment or its name.
    configs : iterable of dict
        Parameter overrides, e.g. from :func:`grid`; omitted parameters take their defaults.
    cache : DiskCache, path, True or False
        Where finished points live. ``True`` uses ``$ASSOCMEM_CACHE_DIR`` or ``~/.cache/assocmem``;
        ``False`` computes everything and stores nothing.
    executor : {"serial", "processes", "dask"} or executor object
        How pending points are computed; see :mod:`assocmem.executors` for the options
        (``workers``, ``scheduler``), passed as keyword arguments.
    threads : int
        Torch threads used by each point, the same under every executor so that a configuration
        gives bit-identical numbers however it is run; parallelism comes from the executor.
    progress : bool
        Show a tqdm progress bar (in a notebook, a widget).

    Returns
    -------
    pandas.DataFrame
        One row per result row, in the order of ``configs``; ``df.attrs["sweep"]`` counts the points
        read from the cache and those computed.
    """
    experiment = get_experiment(experiment)
    configs = [experiment.config(c) for c in configs]
    cache = _as_cache(cache)
    keys = [config_key(experiment, c) for c in configs]
    results: dict[int, list[dict]] = {}
    if cache is not None:
        for index, key in enumerate(keys):
            rows = cache.load(key)
            if rows is not None:
                results[index] = rows
    cached = len(results)
    pending = [(i, configs[i]) for i in range(len(configs)) if i not in results]
    runner = make_executor(executor, **executor_options)
    task = functools.partial(compute_point, experiment.name, experiment.fn.__module__,
                             threads=check.positive_int("threads", threads))
    with tqdm(total=len(configs), initial=cached, disable=not progress,
              desc=experiment.name, unit="point") as bar:
        for index, rows in runner.map(task, pending):
            if cache is not None:
                cache.store(keys[index], experiment, configs[index], rows)
            results[index] = rows
            bar.update(1)
    table = pd.DataFrame([{**configs[i], **row} for i in range(len(configs)) for row in results[i]])
    table.attrs["sweep"] = {"experiment": experiment.name, "points": len(configs),
                            "cached": cached, "computed": len(configs) - cached}
    return table


def _as_cache(cache) -> DiskCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return DiskCache()
    return cache if isinstance(cache, DiskCache) else DiskCache(cache)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _checksum(rows) -> str:
    return hashlib.sha256(_canonical(rows).encode()).hexdigest()
