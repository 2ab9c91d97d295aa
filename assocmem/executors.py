"""Executors: how the pending points of a sweep are computed — in this process, in a local process
pool, or on a Dask cluster — behind one interface.

An executor has ``map(fn, items)``: ``items`` is an iterable of ``(index, config)``, pulled lazily (the
runner claims each point's lock as it hands it over), and the executor yields ``(index, fn(config))``
in whatever order points finish, so the runner can store each result the moment it exists. ``fn`` is
picklable (a ``functools.partial`` of :func:`compute_point`). Every point runs with the same number of
torch threads under every executor, so a configuration gives bit-identical numbers whether it ran
serially, in a process pool or on a Dask worker.

Nothing finished is lost: when the sweep is interrupted (SIGINT, or SIGTERM, which the runner turns
into the same exception) or a point fails, the runner throws the exception into the generator, which
first yields every point that has already finished, then stops the workers and re-raises. Pool workers
ignore SIGINT (the parent decides) and end with their parent, even when it is killed (no orphans).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from . import _validate as check

__all__ = ["EXECUTORS", "MAX_THREADS", "compute_point", "SerialExecutor", "ProcessExecutor", "DaskExecutor",
           "make_executor"]

EXECUTORS = ("serial", "processes", "dask")
_POLL_S = 0.5  # how often a worker checks that its parent is alive
#: Most torch threads one point may ask for: beyond any machine's cores (torch itself overflows at 2**31).
MAX_THREADS = 1024


def compute_point(name: str, module: str, config: Mapping, *, threads: int = 1) -> list[dict]:
    """Import ``module`` (which registers the experiment), run one point with ``threads`` torch
    threads, and return its rows. This is what every executor ships to its workers.

    Parameters
    ----------
    name : str
        The experiment's registered name.
    module : str
        The module that registers it.
    config : mapping
        The point's full configuration.
    threads : int
        Torch threads for this point, 1 to :data:`MAX_THREADS`.
    """
    from .sweep import _experiment

    if not isinstance(module, str):
        raise TypeError(f"module must be a module name (str), got {check._short(module)}")
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a mapping of parameter values, got {check._short(config)}")
    threads = check.positive_int("threads", threads, maximum=MAX_THREADS)
    try:
        importlib.import_module(module)
    except ImportError as error:
        raise ValueError(f"module {module!r} cannot be imported ({error})") from None
    experiment = _experiment(name, "name")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return experiment.rows(config)
    finally:
        torch.set_num_threads(previous)


def end_with_parent(parent: int | None = None) -> None:  # a pool initializer, not public API
    """Make this (worker) process exit when its parent does: ``PR_SET_PDEATHSIG`` on Linux, and on
    every system a daemon thread that polls ``os.getppid()``. SIGINT is ignored: a Ctrl-C reaches the
    whole process group, and it is the parent that decides what to keep and stops the workers."""
    parent = os.getppid() if parent is None else parent
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)

    def watch() -> None:
        while os.getppid() == parent:
            threading.Event().wait(_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="assocmem-parent-watch", daemon=True).start()


class SerialExecutor:
    """Points one after another in this process."""

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[int, object]]:
        """Compute the points in order, one at a time, in this process.

        Parameters
        ----------
        fn : callable
            Computes one point: ``fn(config)`` returns its result.
        items : iterable of (int, config)
            The points, each an index and a configuration.

        Yields
        ------
        tuple of (int, object)
            ``(index, fn(config))`` for each point, in the order of ``items``.
        """
        for index, config in items:
            yield index, fn(config)


class ProcessExecutor:
    """A local pool of ``workers`` processes (started with *spawn*, safe with torch's threads), fed at
    most two points per worker at a time."""

    def __init__(self, workers: int | None = None):
        self.workers = check.positive_int("workers", workers) if workers is not None else os.cpu_count() or 1

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[int, object]]:
        """Compute the points in the pool, keeping at most ``2 * workers`` submitted at a time. On an
        interruption or a failed point, the points already finished are yielded before the error is
        raised; points still running are abandoned and the workers stopped.

        Parameters
        ----------
        fn : callable
            Computes one point: ``fn(config)`` returns its result (``fn`` and the configurations must
            be picklable).
        items : iterable of (int, config)
            The points, each an index and a configuration.

        Yields
        ------
        tuple of (int, object)
            ``(index, fn(config))`` for each point, in the order they finish.
        """
        items = iter(items)
        first = list(itertools.islice(items, 2 * self.workers))
        if not first:
            return
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(first)), mp_context=context,
                                   initializer=end_with_parent, initargs=(os.getpid(),))
        futures: dict = {}
        try:
            for index, config in first:
                futures[pool.submit(fn, config)] = index
            while futures:
                done, _ = wait(futures, return_when=FIRST_COMPLETED)
                for future in done:
                    index = futures.pop(future)
                    yield index, future.result()
                    for index, config in itertools.islice(items, 1):
                        futures[pool.submit(fn, config)] = index
        except GeneratorExit:
            raise
        except BaseException:  # interrupted or a point failed: hand over what has finished first
            for future in [f for f in futures if f.done() and not f.cancelled() and f.exception() is None]:
                yield futures.pop(future), future.result()
            raise
        finally:  # nothing finished is left behind; running points are abandoned, workers stopped
            _stop_pool(pool)


def _stop_pool(pool: ProcessPoolExecutor) -> None:
    """Cancel what has not started and end the workers now (a running point is not waited for)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        with contextlib.suppress(Exception):
            process.terminate()
    for process in processes:
        with contextlib.suppress(Exception):
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
                process.join(timeout=5)


class DaskExecutor:
    """Dask distributed: a client to the scheduler at ``scheduler`` (e.g. ``tcp://10.0.0.5:8786``),
    or, with no address, a ``LocalCluster`` of ``workers`` single-threaded worker processes on
    loopback. Needs the optional extra: ``pip install assocmem[dask]``."""

    def __init__(self, scheduler: str | None = None, workers: int | None = None):
        if scheduler is not None and (not isinstance(scheduler, str) or "://" not in scheduler):
            raise ValueError(f"scheduler must be an address such as 'tcp://host:8786', got {scheduler!r}")
        if scheduler is not None and workers is not None:
            raise ValueError("workers applies to a local cluster only; omit it with a scheduler address")
        self.scheduler = scheduler
        self.workers = check.positive_int("workers", workers) if workers is not None else 2

    def map(self, fn: Callable, items: Iterable) -> Iterator[tuple[int, object]]:
        """Compute the points on the Dask cluster, keeping a bounded window of points submitted
        (``2 * workers`` on a local cluster; with a scheduler address, twice its threads, and at least
        ``2 * workers``). On an interruption or a failed point, the points already finished are yielded
        before the error is raised and the rest are cancelled.

        Parameters
        ----------
        fn : callable
            Computes one point: ``fn(config)`` returns its result (``fn`` and the configurations must
            be picklable).
        items : iterable of (int, config)
            The points, each an index and a configuration.

        Yields
        ------
        tuple of (int, object)
            ``(index, fn(config))`` for each point, in the order they finish.
        """
        items = iter(items)
        first = list(itertools.islice(items, 2 * self.workers))
        if not first:
            return
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError as error:
            raise ImportError("the dask executor needs the optional extra: pip install 'assocmem[dask]'") from error
        with contextlib.ExitStack() as stack:
            stack.callback(_restore_levels, _loop_logger_levels())
            if self.scheduler:
                client = stack.enter_context(Client(self.scheduler))
                window = max(2 * sum(client.nthreads().values()), len(first))
            else:
                cluster = stack.enter_context(LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None))
                client = stack.enter_context(Client(cluster))
                window = len(first)
            first += list(itertools.islice(items, window - len(first)))
            futures = {client.submit(fn, config, pure=False): index for index, config in first}
            # results gathered by the client's loop: waiting for the next one is a plain condition wait, never
            # a call into the loop that a signal could cut short (Dask then logs a NameError of its own)
            running = as_completed(futures, with_results=True)
            try:
                for future, result in running:
                    index = futures.pop(future)
                    yield index, result
                    for index, config in itertools.islice(items, 1):
                        new = client.submit(fn, config, pure=False)
                        futures[new] = index
                        running.add(new)
            except GeneratorExit:
                raise
            except BaseException:  # hand over what has finished before cancelling the rest
                _quiet_loop_loggers()  # the cluster is torn down mid-flight: its shutdown noise is expected
                for future in [f for f in futures if f.status == "finished"]:
                    yield futures.pop(future), future.result()
                raise
            finally:
                if not self.scheduler:
                    _quiet_loop_loggers_on(client)
                client.cancel(list(futures))


_LOOP_LOGGERS = ("distributed", "tornado", "asyncio")


def _loop_loggers() -> list[logging.Logger]:
    """The loggers of the event-loop libraries, with their children: Dask's logging config gives some
    of those a level and a handler of their own (``tornado.application``, ``distributed.client``), which
    quieting the parent would leave as they are."""
    names = {*_LOOP_LOGGERS, *logging.root.manager.loggerDict.copy()}
    return [logging.getLogger(name) for name in sorted(names) if name.split(".")[0] in _LOOP_LOGGERS]


def _loop_logger_levels() -> dict[str, int]:
    return {logger.name: logger.level for logger in _loop_loggers()}


def _restore_levels(levels: dict[str, int]) -> None:
    for logger in _loop_loggers():
        logger.setLevel(levels.get(logger.name, logging.NOTSET))


def _quiet_loop_loggers() -> None:
    for logger in _loop_loggers():
        logger.setLevel(logging.CRITICAL)


def _quiet_loop_loggers_on(client) -> None:
    """Silence the event-loop loggers of a local cluster's worker processes before its points are
    cancelled and it is torn down. The scheduler lives in this process and closes with it, so a worker
    whose heartbeat is in flight then logs a traceback to the shared stderr (``Failed to communicate
    with scheduler during heartbeat``), and a cancelled point a warning: noise of a shutdown this
    process ordered, not an error. Results and failures of points reach this process through their
    futures, never through these logs."""
    with contextlib.suppress(Exception):
        client.run(_quiet_loop_loggers, on_error="ignore")


def make_executor(executor="serial", **options):
    """An executor from its name — ``"serial"``, ``"processes"`` (option ``workers``) or ``"dask"``
    (options ``scheduler``, ``workers``) — or an object with a ``map`` method, returned unchanged.

    Parameters
    ----------
    executor : {"serial", "processes", "dask"} or object
        The executor's name, or an object with a ``map`` method.
    **options
        ``workers`` (processes, local Dask cluster) and ``scheduler`` (a Dask scheduler address).
    """
    if not isinstance(executor, str):
        if not callable(getattr(executor, "map", None)):
            raise TypeError(f"executor must be one of {list(EXECUTORS)} or have a .map method, got {executor!r}")
        return executor
    check.choice("executor", executor, EXECUTORS)
    allowed = {"serial": set(), "processes": {"workers"}, "dask": {"scheduler", "workers"}}[executor]
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"the {executor} executor takes options {sorted(allowed)}, got {unknown}")
    options = {k: v for k, v in options.items() if v is not None}
    return {"serial": SerialExecutor, "processes": ProcessExecutor, "dask": DaskExecutor}[executor](**options)
