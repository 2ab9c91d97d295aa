"""One runner for every grid of experiments: registry, grid, on-disk cache, executors, progress.

An *experiment* is a function of keyword parameters that returns one result row (a dict of
JSON-serialisable values) or a list of rows. ``run_sweep`` evaluates it on every configuration of a
grid, reads finished points from a cache keyed by a stable hash of the experiment's name, version and
full configuration, writes each new point atomically the moment it finishes (so an interrupted sweep
resumes losing nothing), and returns a tidy ``pandas.DataFrame``: one row per result row, the
configuration's columns first. The appendix *Running at scale* shows the command line on top of it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import inspect
import itertools
import json
import os
import pkgutil
import signal
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from tqdm.auto import tqdm

from . import _validate as check
from ._io import TMP_SUFFIX, atomic_write_text, remove_stale_temporaries
from .executors import MAX_THREADS, compute_point, make_executor

try:
    import fcntl
except ImportError:  # not POSIX: no per-point locks, concurrent sweeps may compute a point twice
    fcntl = None

__all__ = ["Experiment", "experiment", "experiments", "get_experiment", "grid", "config_key", "DiskCache",
           "PointLock", "SweepInterrupted", "run_sweep"]

CACHE_ENV = "ASSOCMEM_CACHE_DIR"
_REGISTRY: dict[str, Experiment] = {}


@dataclass(frozen=True)
class Experiment:
    """A registered experiment: ``fn(**params)`` returns a row (dict) or a list of rows."""

    name: str
    fn: Callable = field(repr=False, compare=False)
    defaults: Mapping = field(compare=False)
    version: int = 1
    doc: str = field(default="", repr=False)
    derive: Callable | None = field(default=None, repr=False, compare=False)

    def __post_init__(self):
        # help(experiment) shows the function's signature and docstring, not the dataclass's
        object.__setattr__(self, "__doc__", f"{self.fn.__name__}{inspect.signature(self.fn)}\n\n{self.doc}")

    def config(self, overrides: Mapping | None = None) -> dict:
        """The full configuration: defaults updated by ``overrides`` (unknown names are an error).

        Parameters
        ----------
        overrides : mapping, optional
            Parameter values replacing the defaults.
        """
        overrides = dict(overrides or {})
        unknown = sorted(set(overrides) - set(self.defaults))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown} for experiment {self.name!r}; "
                             f"its parameters are {sorted(self.defaults)}")
        return {**self.defaults, **overrides}

    def rows(self, overrides: Mapping | None = None) -> list[dict]:
        """Run once and return the result as a list of rows.

        Parameters
        ----------
        overrides : mapping, optional
            Parameter values replacing the defaults.
        """
        result = self.fn(**self.config(overrides))
        rows = [result] if isinstance(result, Mapping) else list(result)
        if not all(isinstance(row, Mapping) for row in rows):
            raise TypeError(f"experiment {self.name!r} must return a dict or a list of dicts")
        return [dict(row) for row in rows]

    def __call__(self, **overrides):
        return self.fn(**self.config(overrides))


def experiment(name: str, *, version: int = 1, derive: Callable | None = None) -> Callable[[Callable], Experiment]:
    """Register ``fn`` as the experiment ``name``; every parameter of ``fn`` needs a default.

    Bump ``version`` when the computation changes, so cached results of the old one are not reused.

    Parameters
    ----------
    name : str
        The registry name (what ``python -m assocmem run NAME`` takes).
    version : int
        Version of the computation, part of every cache key.
    derive : callable, optional
        ``table -> table``: columns computed from the rows (such as a ``diverged`` flag), applied by
        :func:`run_sweep` to every table it returns, cached points and fresh ones alike. Derived columns
        are not stored in the cache, so adding one needs no version bump.
    """
    def register(fn: Callable) -> Experiment:
        params = inspect.signature(fn).parameters.values()
        missing = [p.name for p in params if p.default is inspect.Parameter.empty]
        if missing:
            raise TypeError(f"experiment {name!r}: parameters {missing} need default values")
        doc = inspect.getdoc(fn) or ""
        exp = Experiment(name, fn, {p.name: p.default for p in params}, version, doc, derive)
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
    """Look an experiment up by name (an ``Experiment`` is returned as is).

    Parameters
    ----------
    name_or_experiment : str or Experiment
        A registered name, or an experiment.
    """
    return _experiment(name_or_experiment, "name_or_experiment")


def _experiment(value, name: str) -> Experiment:
    """:func:`get_experiment` of ``value``, its errors naming the caller's parameter ``name``."""
    if isinstance(value, Experiment):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a registered experiment's name or an Experiment, got {check._short(value)}")
    if value in _REGISTRY:
        return _REGISTRY[value]
    known = experiments()
    if value not in known:
        raise ValueError(f"{name} must be one of the experiments {sorted(known)}, got {value!r}")
    return known[value]


def grid(**axes: Iterable) -> list[dict]:
    """The product of named parameter lists, the last name varying fastest.

    >>> grid(d=[10, 20], seed=range(2))
    [{'d': 10, 'seed': 0}, {'d': 10, 'seed': 1}, {'d': 20, 'seed': 0}, {'d': 20, 'seed': 1}]

    Parameters
    ----------
    **axes : iterable
        One list of values per parameter name.
    """
    values = []
    for name, axis in axes.items():
        axis = [axis] if isinstance(axis, (str, bytes)) or not isinstance(axis, Iterable) else list(axis)
        if not axis:
            raise ValueError(f"grid axis {name!r} is empty")
        values.append(axis)
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*values)]


def config_key(experiment: Experiment, config: Mapping) -> str:
    """Stable SHA-256 of the experiment's name, version and full configuration.

    Parameters
    ----------
    experiment : Experiment
        The experiment (its name and version enter the key).
    config : mapping
        The full configuration (:meth:`Experiment.config`).
    """
    if not isinstance(experiment, Experiment):
        raise TypeError(f"experiment must be an Experiment (see get_experiment), got {check._short(experiment)}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of parameter values, got {check._short(config)}")
    return _hash({"experiment": experiment.name, "version": experiment.version,
                  "config": experiment.config(config)})


class DiskCache:
    """Results on disk, one JSON file per configuration, written atomically.

    Each entry carries its key, experiment, version and full configuration next to its rows, and a
    checksum over all of them. On load the entry must be intact, carry the requested key, and its
    configuration must hash to that key: an entry that is truncated, not valid JSON, edited, copied
    from another key (even with a recomputed checksum), or not a file at all is reported with a warning
    and treated as missing, so it is recomputed and replaced. Writers use a temporary file and
    ``os.replace``, so readers see the old entry or the new one. A per-point lock (``flock`` on
    ``KEY.lock``) lets concurrent sweeps on one cache share the work instead of computing every point
    twice; it is released by the system if its holder dies.
    """

    def __init__(self, directory: str | os.PathLike | None = None):
        if directory is not None and not isinstance(directory, (str, os.PathLike)):
            raise TypeError(f"directory must be a path (str or os.PathLike) or None, got {check._short(directory)}")
        directory = directory or os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "assocmem"
        self.directory = Path(directory)

    def path(self, key: str) -> Path:
        """The file of ``key``'s entry: ``DIRECTORY/KE/KEY.json`` (the first two characters of the key
        name a subdirectory, so no directory grows too large).

        Parameters
        ----------
        key : str
            The point's key (:func:`config_key`).
        """
        return self.directory / key[:2] / f"{key}.json"

    def load(self, key: str, *, warn: bool = True) -> list[dict] | None:
        """The cached rows for ``key``, or ``None`` when absent or damaged (with a warning).

        Parameters
        ----------
        key : str
            The point's key (:func:`config_key`).
        warn : bool
            Warn when an entry is damaged (truncated or failing its checksum).
        """
        path = self.path(key)
        try:
            entry = json.loads(path.read_text())
            header = {name: entry[name] for name in ("experiment", "version", "config")}
            valid = (entry["key"] == key == _hash(header) and isinstance(entry["rows"], list)
                     and entry["checksum"] == _checksum(entry))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
            valid = False
        if not valid:
            if warn:
                warnings.warn(f"corrupt cache entry {path} ignored; it will be recomputed", stacklevel=2)
            return None
        return entry["rows"]

    def store(self, key: str, experiment: Experiment, config: Mapping, rows: list[dict]) -> None:
        """Write ``rows`` as the entry of ``key``, atomically, with the experiment's name and version, the
        configuration and a checksum over all of them (what :meth:`load` verifies).

        Parameters
        ----------
        key : str
            The point's key (:func:`config_key`).
        experiment : Experiment
            The experiment that computed the rows (its ``name`` and ``version`` are recorded).
        config : mapping
            The point's full configuration.
        rows : list of dict
            The rows to cache; JSON-serialisable (NaN and infinities allowed).

        Notes
        -----
        Hold the point's lock (:meth:`try_lock`) while storing when other sweeps may use the cache, as
        :func:`run_sweep` does: :meth:`remove_stale_temporaries` treats the temporary of an unlocked
        entry as a dead writer's.
        """
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"key": key, "experiment": experiment.name, "version": experiment.version,
                 "config": dict(config), "rows": rows}
        entry["checksum"] = _checksum(entry)
        atomic_write_text(path, json.dumps(entry, allow_nan=True))  # keeps the rows' column order

    def try_lock(self, key: str) -> PointLock | None:
        """Claim ``key`` for computing: a held :class:`PointLock`, or ``None`` if another sweep holds it.

        Parameters
        ----------
        key : str
            The point's key (:func:`config_key`).
        """
        lock = PointLock(self.path(key).with_suffix(".lock"))
        return lock if lock.acquire() else None

    def check_writable(self) -> None:
        """Raise ``ValueError`` naming the directory unless entries can be written there (checked before
        any computing, so a sweep never finishes only to lose its results)."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.directory):
                pass
        except OSError as error:
            raise ValueError(f"cache directory {self.directory} is not writable ({error.strerror or error})") from None

    def remove_stale_temporaries(self) -> int:
        """Remove the temporaries left by killed writers; return how many were removed.

        A sweep stores an entry while it holds the point's lock (:meth:`try_lock`), and the system
        releases a dead holder's lock, so the temporary ``KE/.KEY.json.*.tmp`` of an entry whose lock
        is free has no live writer, however recent it is: a sweep restarted at once after its parent
        was killed in the middle of a write removes it. A temporary whose lock is held is a live
        writer's and is kept. Where ``fcntl`` is missing (no locks) the rule is its age instead
        (``assocmem._io.remove_stale_temporaries``: older than a minute)."""
        if not self.directory.is_dir():
            return 0
        if fcntl is None:
            return remove_stale_temporaries(self.directory, pattern=f"??/.*{TMP_SUFFIX}")
        removed = 0
        for tmp in self.directory.glob(f"??/.*{TMP_SUFFIX}"):
            key = tmp.name[1:].split(".json.", 1)[0]
            lock = self.try_lock(key) if tmp.parent.name == key[:2] else None
            if lock is None:  # a live writer holds it (or the name is not an entry's temporary)
                continue
            try:
                tmp.unlink()
                removed += 1
            except OSError:
                pass  # removed by a concurrent cleaner, or not ours to remove
            finally:
                lock.release(stored=self.path(key).is_file())
        return removed


class PointLock:
    """An exclusive, non-blocking ``flock`` on ``path`` (a no-op lock where ``fcntl`` is missing)."""

    def __init__(self, path: Path):
        self.path, self._fd = path, None

    def acquire(self) -> bool:
        if fcntl is None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        return True

    def release(self, *, stored: bool = False) -> None:
        """Release; when the point's entry is ``stored`` in the cache the lock file is removed too (a
        sweep that then acquires the removed file's lock finds the entry, so this is safe).

        Parameters
        ----------
        stored : bool
            Whether the point's entry was stored in the cache.
        """
        if self._fd is None:
            return
        if stored:
            self.path.unlink(missing_ok=True)
        os.close(self._fd)
        self._fd = None


class SweepInterrupted(KeyboardInterrupt):
    """SIGINT (Ctrl-C) or SIGTERM during a sweep, raised as a ``KeyboardInterrupt`` that names its
    signal: finished points are kept, the same call resumes."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum


#: Signals that arrived while a finaliser ran, to be raised at the sweep's next checkpoint.
_deferred: list[int] = []
_DEFAULTS = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}


def _in_finalizer(frame) -> bool:
    while frame is not None:
        if frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _interrupt(signum: int, frame) -> None:
    """Raise :class:`SweepInterrupted` where the signal lands, unless that is inside a finaliser (Dask's
    futures release themselves in ``__del__``): Python would print the exception there and drop it, and
    the sweep would run on. Such a signal waits for :func:`_raise_deferred`."""
    if _in_finalizer(frame):
        _deferred.append(signum)
        return
    raise SweepInterrupted(signum)


def _raise_deferred() -> None:
    """A checkpoint: raise the signal a finaliser deferred, if any."""
    if _deferred:
        signum = _deferred[0]
        _deferred.clear()
        raise SweepInterrupted(signum)


@contextlib.contextmanager
def _signals_as_interrupt():
    """In the main thread, turn SIGINT (at Python's default) and SIGTERM (at its default: die at once)
    into :class:`SweepInterrupted` for the duration of the sweep; a signal deferred by a finaliser and
    not raised by a checkpoint is raised on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    mine = [signum for signum, default in _DEFAULTS.items() if signal.getsignal(signum) is default]
    for signum in mine:
        signal.signal(signum, _interrupt)
    try:
        yield
        if mine:
            _raise_deferred()
    finally:
        for signum in mine:
            signal.signal(signum, _DEFAULTS[signum])
        if mine:
            _deferred.clear()


def run_sweep(experiment, configs: Iterable[Mapping], *, cache: DiskCache | str | os.PathLike | bool = True,
              executor="serial", threads: int = 1, progress: bool = True, **executor_options) -> pd.DataFrame:
    """Evaluate ``experiment`` on each configuration and return the tidy table of results.

    Every point is stored in the cache the moment it finishes. When the sweep is interrupted (Ctrl-C,
    or SIGTERM, both raised as :class:`SweepInterrupted`) or a point fails, the points that already finished
    are stored before the exception propagates; the same call then resumes. Concurrent sweeps on one
    cache claim points with per-point locks: a point another sweep is computing is waited for and read
    back, not computed twice.

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
        gives bit-identical numbers however it is run; parallelism comes from the executor. At most
        :data:`assocmem.executors.MAX_THREADS`.
    progress : bool
        Show a tqdm progress bar (in a notebook, a widget).
    **executor_options
        The executor's options: ``workers`` (processes, a local Dask cluster), ``scheduler`` (the
        address of a running Dask scheduler).

    Returns
    -------
    pandas.DataFrame
        One row per result row, in the order of ``configs``; ``df.attrs["sweep"]`` counts the points
        read from the cache (``cached``, including those another sweep computed meanwhile) and those
        computed here.
    """
    experiment = _experiment(experiment, "experiment")
    if isinstance(configs, (str, bytes, Mapping)) or not isinstance(configs, Iterable):
        raise TypeError(f"configs must be an iterable of mappings (e.g. from grid), got {check._short(configs)}")
    configs = list(configs)
    for index, config in enumerate(configs):
        if not isinstance(config, Mapping):
            raise TypeError(f"configs[{index}] must be a mapping of parameter values, got {check._short(config)}")
    configs = [experiment.config(c) for c in configs]
    cache = _as_cache(cache)
    threads = check.positive_int("threads", threads, maximum=MAX_THREADS)
    runner = make_executor(executor, **executor_options)
    if cache is not None:
        cache.check_writable()
        cache.remove_stale_temporaries()
    keys = [config_key(experiment, c) for c in configs]
    results: dict[int, list[dict]] = {}
    if cache is not None:
        for index, key in enumerate(keys):
            rows = cache.load(key)
            if rows is not None:
                results[index] = rows
    task = functools.partial(compute_point, experiment.name, experiment.fn.__module__, threads=threads)
    computed: set[int] = set()
    stored: set[int] = set()
    locks: dict[int, PointLock] = {}

    def keep(index: int, rows: list[dict]) -> None:
        results[index] = rows
        computed.add(index)
        if cache is not None:
            cache.store(keys[index], experiment, configs[index], rows)
            stored.add(index)
            locks.pop(index).release(stored=True)
        bar.update(1)

    def claim(indices: list[int], busy: list[int]):
        """Yield the points of ``indices`` this sweep gets to compute; those another sweep is
        computing go to ``busy``; those another sweep finished meanwhile are read back."""
        for index in indices:
            if cache is not None:
                lock = cache.try_lock(keys[index])
                if lock is None:
                    busy.append(index)
                    continue
                rows = cache.load(keys[index], warn=False)
                if rows is not None:
                    lock.release(stored=True)
                    results[index] = rows
                    bar.update(1)
                    continue
                locks[index] = lock
            yield index, configs[index]

    with _signals_as_interrupt(), tqdm(total=len(configs), initial=len(results), disable=not progress,
                                       desc=experiment.name, unit="point") as bar:
        remaining = [i for i in range(len(configs)) if i not in results]
        try:
            while remaining:
                busy: list[int] = []
                _run_keeping_finished(runner.map(task, claim(remaining, busy)), keep)
                remaining = _wait_for_others(cache, keys, busy, results, bar)
        except BaseException:
            if cache is not None:  # a point whose store was interrupted is stored now
                for index in sorted(computed - stored):
                    cache.store(keys[index], experiment, configs[index], results[index])
            raise
        finally:
            for lock in locks.values():
                lock.release()
    table = pd.DataFrame([{**configs[i], **row} for i in range(len(configs)) for row in results[i]])
    if experiment.derive is not None:
        table = experiment.derive(table)
    table.attrs["sweep"] = {"experiment": experiment.name, "points": len(configs),
                            "cached": len(configs) - len(computed), "computed": len(computed)}
    return table


def _run_keeping_finished(iterator, keep: Callable) -> None:
    """Feed each ``(index, rows)`` of an executor's ``map`` to ``keep``. When this is interrupted or a
    point fails, the exception is thrown into the executor's generator, which first yields the points
    that have finished (they are kept), then stops its workers and re-raises."""
    iterator = iter(iterator)
    try:
        for item in iterator:
            keep(*item)
            _raise_deferred()
    except BaseException as error:
        throw = getattr(iterator, "throw", None)
        if throw is not None:
            try:
                item = throw(error)
                while True:
                    keep(*item)
                    item = next(iterator)
            except BaseException:  # the executor re-raises ``error`` (or ends) once it has handed over
                pass
        raise


def _wait_for_others(cache: DiskCache | None, keys: list[str], busy: list[int], results: dict,
                     bar) -> list[int]:
    """Wait for the points other sweeps are computing and read them back; return those that are still
    missing (their sweep failed or died), to be computed here."""
    missing, waiting = [], list(busy)
    if waiting:
        bar.set_postfix_str(f"waiting for {len(waiting)} point(s) another sweep is computing")
    while waiting:
        still = []
        for index in waiting:
            lock = cache.try_lock(keys[index])
            if lock is None:
                still.append(index)
                continue
            rows = cache.load(keys[index], warn=False)
            lock.release(stored=rows is not None)
            if rows is None:
                missing.append(index)
            else:
                results[index] = rows
                bar.update(1)
        waiting = still
        if waiting:
            _raise_deferred()
            time.sleep(0.1)
    return missing


def _as_cache(cache) -> DiskCache | None:
    if cache is False or cache is None:
        return None
    if cache is True:
        return DiskCache()
    if not isinstance(cache, (DiskCache, str, os.PathLike)):
        raise TypeError(f"cache must be a DiskCache, a directory path, True or False, got {check._short(cache)}")
    return cache if isinstance(cache, DiskCache) else DiskCache(cache)


def _canonical(obj) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def _hash(obj) -> str:
    return hashlib.sha256(_canonical(obj).encode()).hexdigest()


def _checksum(entry: Mapping) -> str:
    """SHA-256 over everything an entry says (key, experiment, version, configuration, rows)."""
    return _hash({name: value for name, value in entry.items() if name != "checksum"})
