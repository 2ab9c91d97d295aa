"""Executors: how the pending points of a sweep are computed — in this process, in a local process
pool, or on a Dask cluster — behind one interface.

An executor has ``map(fn, items)``: ``items`` is a list of ``(index, config)`` and the executor
yields ``(index, fn(config))`` in whatever order points finish, so the runner can store each result
the moment it exists. ``fn`` is picklable (a ``functools.partial`` of :func:`compute_point`).
Every point runs with the same number of torch threads under every executor, so a configuration gives
bit-identical numbers whether it ran serially, in a process pool or on a Dask worker.
"""

from __future__ import annotations

import contextlib
import importlib
import multiprocessing
import os
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

import torch

from . import _validate as check

EXECUTORS = ("serial", "processes", "dask")


def compute_point(name: str, module: str, config: Mapping, *, threads: int = 1) -> list[dict]:
    """Import ``module`` (which registers the experiment), run one point with ``threads`` torch
    threads, and return its rows. This is what every executor ships to its workers."""
    from .sweep import get_experiment

    importlib.import_module(module)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return get_experiment(name).rows(config)
    finally:
        torch.set_num_threads(previous)


class SerialExecutor:
    """Points one after another in this process."""

    def map(self, fn: Callable, items: list) -> Iterator[tuple[int, object]]:
        for index, config in items:
            yield index, fn(config)


class ProcessExecutor:
    """A local pool of ``workers`` processes (started with *spawn*, safe with torch's threads)."""

    def __init__(self, workers: int | None = None):
        self.workers = check.positive_int("workers", workers) if workers is not None else os.cpu_count() or 1

    def map(self, fn: Callable, items: list) -> Iterator[tuple[int, object]]:
        if not items:
            return
        context = multiprocessing.get_context("spawn")
        pool = ProcessPoolExecutor(max_workers=min(self.workers, len(items)), mp_context=context)
        try:
            futures = {pool.submit(fn, config): index for index, config in items}
            pending = set(futures)
            while pending:
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    yield futures[future], future.result()
        finally:  # on an interrupt or an error, drop what has not started; finished points are kept
            pool.shutdown(wait=True, cancel_futures=True)


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

    def map(self, fn: Callable, items: list) -> Iterator[tuple[int, object]]:
        if not items:
            return
        try:
            from distributed import Client, LocalCluster, as_completed
        except ImportError as error:
            raise ImportError("the dask executor needs the optional extra: pip install 'assocmem[dask]'") from error
        with contextlib.ExitStack() as stack:
            if self.scheduler:
                client = stack.enter_context(Client(self.scheduler))
            else:
                cluster = stack.enter_context(LocalCluster(
                    n_workers=self.workers, threads_per_worker=1, processes=True,
                    host="127.0.0.1", dashboard_address=None))
                client = stack.enter_context(Client(cluster))
            futures = {client.submit(fn, config, pure=False): index for index, config in items}
            try:
                for future in as_completed(futures):
                    yield futures[future], future.result()
            finally:
                client.cancel(list(futures))


def make_executor(executor="serial", **options):
    """An executor from its name — ``"serial"``, ``"processes"`` (option ``workers``) or ``"dask"``
    (options ``scheduler``, ``workers``) — or an object with a ``map`` method, returned unchanged."""
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
