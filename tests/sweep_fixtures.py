"""Small experiments for the sweep, executor and CLI tests (importable by worker processes)."""

import os
import signal
import time

import torch

from assocmem.sweep import experiment

LOG_ENV = "ASSOCMEM_TEST_LOG"


@experiment("fixture_torch_stats")
def torch_stats(n=2000, d=64, seed=0, device="cpu"):
    """Seeded torch work with reductions and a matrix product: bit-identity across executors."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64).to(device)
    gram = x.T @ x
    return {"trace": float(gram.trace()), "sum": float(x.sum()), "norm": float(torch.linalg.norm(gram)),
            "threads": torch.get_num_threads()}


@experiment("fixture_slow")
def slow(x=0, delay=0.2):
    """Sleeps, then logs its point and the time to $ASSOCMEM_TEST_LOG (to count computations across
    processes, and to tell which finished before an interruption)."""
    time.sleep(delay)
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as handle:
            handle.write(f"{x} {time.time()!r}\n")
    return [{"x2": x * x}, {"x2": -x * x}]


@experiment("fixture_fails")
def fails(x=0):
    """Raises for x == 3."""
    if x == 3:
        raise RuntimeError("boom at x=3")
    return {"ok": x}


class _SignalsWhenCollected:
    """Sends ``signum`` to this process from its finaliser: a signal that lands while a finaliser runs,
    as when Dask's futures release themselves in ``__del__``."""

    def __init__(self, signum: int):
        self.signum = signum

    def __del__(self):
        os.kill(os.getpid(), self.signum)


@experiment("fixture_signal_in_finalizer")
def signal_in_finalizer(x=0, at=2, signum="SIGTERM"):
    """At ``x == at``, signals this process from a finaliser, then finishes the point; logs each point
    like ``fixture_slow``."""
    if x == at:
        _SignalsWhenCollected(getattr(signal, signum))  # collected at once
    log = os.environ.get(LOG_ENV)
    if log:
        with open(log, "a") as handle:
            handle.write(f"{x} {time.time()!r}\n")
    return {"x2": x * x}
