"""Hostile-input fuzzing of the public API (used by ``test_fuzz_api.py``; runnable on its own).

Every public function and class of every package module, enumerated from the module's ``__all__`` (so a
new function is covered without editing this file), is called with valid small arguments (a *baseline*:
the parameter's default, or a small value from ``VALID`` chosen by the parameter's name), then once per
parameter and per *bad value* of that parameter's kind (``bad_values``): NaN, infinities, zero, negative,
non-integer, huge (``10**12``), wrong types, empty or NaN-holding or wrongly shaped arrays, unknown choices.
Each call must end, within ``SOFT_S`` seconds, in one of these ways:

- ``clear``: a ``ValueError``/``TypeError`` whose message names the parameter (as a word), or
- ``finite``: a return value whose every number is finite (the bad value was in fact legal), or
- ``documented``: a NaN the function documents as its answer (``DOCUMENTED_NONFINITE``, with the reason).

Anything else is a finding: ``unnamed`` (the error does not name the parameter), ``other`` (another
exception type), ``nonfinite`` (NaN or inf returned silently), ``hang`` (over the time bound).

A function needs to declare nothing: its baseline is built from defaults and ``VALID``; where that cannot
give a valid call (a shape, a choice or a size particular to the function), ``BASELINES`` holds a few
keyword arguments for it, used in preference to the rest. When no baseline can be built (a required
argument of a kind ``VALID`` does not know, or the baseline itself fails within ``BASELINE_S``), the
function is reported as *unreached* and not fuzzed. ``NOT_RUN`` lists the few hostile cases that are
legal calls writing where a test must not (a committed data file). Records (dataclasses), plotting and
widget helpers and registered experiments are not fuzzed (``skip_reason``, ``SKIP_MODULES``). The calls
run in a scratch directory, with the default sweep cache there too. The harness runs in a child process with a memory
limit, writing one JSON line per case, so a crash or a hard hang in C code is recorded and the run resumes
after it.

    python tests/fuzz_api.py drive OUT.jsonl     # every case, then the figures
    python tests/fuzz_api.py summary OUT.jsonl   # the figures of a finished run
    python tests/fuzz_api.py known OUT.jsonl > tests/fuzz_known.json   # its findings, as the known list
    ASSOCMEM_FUZZ_ONLY=assocmem.zipf,assocmem.memory python tests/fuzz_api.py drive OUT.jsonl   # some modules
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import json
import math
import numbers
import os
import pkgutil
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings

import numpy as np
import torch

SOFT_S = 5.0      # a call running longer than this is a hang (the alarm interrupts Python code)
HARD_S = 20.0     # a call stuck in C code this long ends the child process (recorded as a hang)
BASELINE_S = 30.0  # the bound of a baseline call: generous, so that a loaded machine (the suite shares its
# CPUs) does not turn a slow first call (imports, torch's warm-up) into an unreached function
MEMORY_BYTES = 6 * 2**30  # address space the child may add: a huge allocation fails instead of swapping
SKIP_MODULES = {"assocmem.plotting", "assocmem.widgets", "assocmem.__main__"}  # figure/explorer helpers take Axes

N, M, D = 12, 3, 6
_rng = np.random.default_rng(0)
_gen = torch.Generator().manual_seed(0)


def _probs():
    p = 1.0 / np.arange(1, N + 1) ** 1.5
    return p / p.sum()


def _signs(k, d=D):
    return torch.where(torch.rand(k, d, generator=_gen) < 0.5, -1.0, 1.0).double()


def _tensor(*shape):
    """A maker of a standard normal float64 tensor of ``shape``."""
    return lambda: torch.randn(*shape, generator=_gen, dtype=torch.float64)


def _embeddings(rows, runs=None, scale=None):
    """A maker of Gaussian embeddings, (rows, D) or (runs, rows, D), entries N(0, scale²) (default 1/D)."""
    shape = (rows, D) if runs is None else (runs, rows, D)
    return lambda: torch.randn(*shape, generator=_gen, dtype=torch.float64) * (scale or 1 / math.sqrt(D))


def _model():
    from assocmem.transformer import CausalTransformer

    return CausalTransformer(7, d_emb=8, n_layers=1, n_heads=2, context=8, seed=0)


def _tokens():
    return np.random.default_rng(1).integers(0, 7, 400)


def _corpus():
    from assocmem.corpora import Corpus

    return Corpus("fuzz", _tokens(), np.random.default_rng(2).integers(0, 7, 200), tuple("abcdefg"))


def _fit():
    from assocmem.fitting import fit_power_law

    return fit_power_law([1, 2, 4, 8], [1.0, 0.5, 0.26, 0.124])


def _run():
    from assocmem.transformer import TrainingRun

    return TrainingRun(steps=[0, 10, 20, 30], train_loss=[2.0, 1.5, 1.2, 1.1], val_loss=[2.0, 1.6, 1.3, 1.2],
                       batch_loss=[2.0, 1.5, 1.2, 1.1])


def _training_point(full: bool = False) -> dict:
    """The cheapest point of the paper's training grid (one full-batch Adam step of 80 small runs), as a
    sweep override or (``full``) the experiment's full configuration."""
    from assocmem.training import optimization_grid

    point = {"d": 10, "T": 1024, "batch_size": 1024, "optimizer": "adam", "model": "relu"}
    return optimization_grid.config(point) if full else point


def _experiment(name: str):
    from assocmem.sweep import get_experiment

    return get_experiment(name)


def _grid_cache():
    """A sweep cache in the working directory (the run's scratch one) holding one point of the paper's
    training grid, computed once (one full-batch Adam step: 80 runs in a few hundredths of a second)."""
    from assocmem import sweep

    sweep.run_sweep("optimization_grid", [_training_point()], cache="grid-cache", progress=False)
    return os.path.abspath("grid-cache")


def _phase_table():
    """Rows of one small cell of the phase diagram (:func:`assocmem.capacity.phase_cell`), with the cell's
    ``d, T, alpha`` columns as the sweep adds them."""
    import pandas as pd

    from assocmem.capacity import phase_cell

    rows = phase_cell(N=N, d=D, T=16, trials=2, batch_size=4, opt_steps=3)
    return pd.DataFrame(rows).assign(d=D, T=16, alpha=1.0)


def _balance_table():
    """Rows of :func:`assocmem.transformer.nd_balance` for one ``(d_emb, seed)`` at three data sizes."""
    import pandas as pd

    return pd.DataFrame({"d_emb": 8, "seed": 0, "N": 840, "D": [512, 1024, 2048], "gap_paper": [0.9, 0.3, 0.01],
                         "gap_book": [0.8, 0.25, 0.02], "min_val_loss": [3.1, 2.9, 2.8],
                         "final_train_loss": [2.0, 2.5, 2.7]})


def _balance_grid():
    """Rows of :func:`assocmem.transformer.nd_balance` for three widths (an OLS slope with a finite
    standard error) and two seeds, at three data sizes each."""
    import pandas as pd

    one = _balance_table().assign(converged=1)
    return pd.concat([one.assign(d_emb=d, N=12 * d * d + 9 * d, D=one.D * k, seed=s)
                      for d, k in [(8, 1), (16, 2), (32, 3)] for s in (0, 1)], ignore_index=True)


def _grid_runs():
    """Runs of the training grid (the columns of :func:`assocmem.training.load_grid`) for two cells."""
    import pandas as pd

    return pd.DataFrame({"model": "W", "optimizer": "sgd", "lr": 1.0, "d": [6, 6, 12, 12], "T": 64,
                         "batch_size": 16, "layer_norm": False, "seed": [0, 1, 0, 1], "error": [0.5, 0.4, 0.3, 0.35],
                         "diverged": False})


def _grid_cells():
    from assocmem.theory.predictor import grid_cells

    return grid_cells(_grid_runs())


def _calibration():
    from assocmem.theory.predictor import calibration

    return calibration(_grid_cells(), samples=2, N=N, M=M)


def _model_error():
    from assocmem.theory.predictor import model_error

    return model_error(_calibration(), "d")


def _model_bias():
    from assocmem.theory.predictor import model_bias

    return model_bias(_calibration(), "d")


# Small valid values by parameter name; a list holds alternatives (a name with several meanings), tried
# in turn until the baseline call succeeds. Size-like names override a parameter's default too
# (``SMALL``), so that every call stays cheap.
SMALL = {
    "N": N, "M": M, "d": D, "T": 40, "trials": 2, "steps": 3, "K": 4, "n": 10, "P": 3, "batch_size": 4,
    "probes": 4, "points": 3, "iterations": 50, "epochs": 2, "opt_steps": 3, "max_patterns": 16,
    "n_train": 200, "n_validation": 50, "n_boot": 50, "queries": 4, "iters": 5, "max_iter": 20, "eval_every": 1,
    "eval_windows": 4, "n_windows": 4, "n_sequences": 4, "n_patterns": 8, "n_points": 4, "context": 8,
    "d_emb": 8, "n_layers": 1, "n_heads": 2, "vocab_size": 7, "grid_points": 10, "norm_nodes": 4, "N_max": 8,
    "block": 256, "chunk": 16, "n_tokens": 100,
}
VALID = {
    "labels": lambda: np.arange(N) % M, "p": [_probs, lambda: 0.5, _probs], "probs": _probs, "q": _probs,
    "qs": lambda: [_probs(), _probs()], "counts": lambda: np.array([9, 6, 4, 3, 3, 2, 1, 1, 1, 0, 0, 0]),
    # the third alternative: a batch of R = 2 runs or trials, (R, N, d), (R, M, d), (R, d, d)
    "E": [_embeddings(N), _embeddings(N), _embeddings(N, runs=2)],
    "U": [_embeddings(M), _embeddings(M), _embeddings(M, runs=2)],
    "W": [_embeddings(D, scale=1.0), _embeddings(D, scale=1.0), _embeddings(D, runs=2, scale=1.0)],
    "input_embeddings": lambda: torch.randn(N, D, generator=_gen, dtype=torch.float64),
    "output_embeddings": lambda: torch.randn(M, D, generator=_gen, dtype=torch.float64),
    "d_grid": lambda: [2, 4, 6], "T_grid": lambda: [10, 20, 40], "P_grid": lambda: [1, 2, 3],
    "patterns": lambda: _signs(4), "states": lambda: _signs(2), "anchor": lambda: _signs(2),
    "x": [lambda: _signs(2), lambda: [1.0, 2.0, 4.0, 8.0]], "y": lambda: [1.0, 0.5, 0.26, 0.124],
    "keys": lambda: _signs(4), "values": lambda: _signs(4), "betas": lambda: [0.5, 1.0],
    "weights": [_probs, lambda: _signs(4).T @ _signs(4)], "a": [2, lambda: np.linspace(-1, 1, 3)],
    "b": lambda: np.linspace(-1, 1, 3), "alpha": 1.5, "beta": 1.0, "rho": 1.0, "gamma": 1.0, "seed": 0,
    "lr": [0.1, lambda: [0.1, 1.0]], "lrs": lambda: (0.1, 1.0), "p1": 0.75, "p1s": lambda: [0.6, 0.75],
    "cosines": lambda: [0.9], "model": [_model, "W"], "tokens": _tokens, "pattern_tokens": _tokens,
    "probe_tokens": _tokens, "corpus": _corpus, "generator": lambda: torch.Generator().manual_seed(0),
    "fit": _fit, "predicted": -1.0, "run": _run, "value": 0.123, "name": ["x", "grammar"], "scheme": "top",
    "load": 0.1, "eta": 0.5, "g": lambda: np.array([0.5, 1.0]), "norms": lambda: np.array([1.0, 2.0]),
    "min_energy": -1.0, "layers": 2, "Z": lambda: np.array([2.0, 3.0]), "log_Z": lambda: np.array([0.5]),
    "separation": 1.0, "distance": 0.1, "bits": 2.0, "bits_grid": lambda: [1.0, 2.0], "capacity": 10.0,
    "error": 0.01, "r": 1.0, "idx": lambda: torch.tensor([0, 1, 2]), "optimizer": "sgd",
    "data_sizes": lambda: [100, 200, 400], "gaps": lambda: [0.1, 0.05, 0.01], "window": 5,
    "losses": lambda: np.linspace(1.0, 0.1, 50), "clusters": 2, "per_cluster": 3, "fraction": 0.1,
    "factor": 2, "layer_energies": lambda: torch.tensor([1.0, -0.5, 0.25]), "rule": "sgd",
    "windows": lambda: torch.randint(0, 7, (4, 8), generator=_gen), "cosine": 0.95, "level": 0.95,
    "k": lambda: np.array([1, 2, 4]), "runs_seeds": lambda: [0, 1], "scores": _tensor(2, M, N),
    "errors": lambda: np.random.default_rng(3).uniform(0, 1, (2, 3, 2)),  # (trials, len(P_grid or T_grid), d)
}

# Per-function baselines, for the functions whose baseline the names above cannot build (a shape, a
# choice or a size that only makes sense for that function). Keyed by qualified name; each entry gives
# keyword arguments (values or makers, as in ``VALID``) that take precedence over ``SMALL``, ``VALID`` and
# the defaults, the other arguments being built as usual. Each baseline call takes well under a second.
BASELINES = {
    "assocmem.capacity.optimised_memory":                # (R, N, d) runs, one weighting for all of them
        {"E": _embeddings(N, runs=2), "U": _embeddings(M, runs=2), "weights": _probs},
    "assocmem.finite_sample.count_weights": {"d_grid": lambda: [12, 24]},  # the default scheme "top" needs it
    "assocmem.finite_sample.error_grid": {"weights": lambda: np.ones((2, 1, N))},  # (trials, G, N)
    "assocmem.gd_dynamics.classifier_coordinates": {"U": _tensor(2, D)},   # two classes, one run
    "assocmem.gd_dynamics.classifier_plane_losses":      # one two-class run in d = 2
        {"E": _tensor(N, 2), "U": _tensor(2, 2), "labels": lambda: np.arange(N) % 2},
    "assocmem.gd_dynamics.load_scan":                    # window and every inside steps = 3; one run
        {"ds": lambda: (2,), "lrs": lambda: (1.0,), "trials": 1, "window": 2, "every": 1},
    "assocmem.gd_dynamics.segmented_sgd":                # 40 steps, not the default's 1000 evaluated each
        {"segments": lambda: ((10.0, 20), (0.3, 20))},
    "assocmem.hopfield.dense_capacity": {"d": lambda: [8, 12], "error": 0.1, "probes": 8},  # a crossing inside
    "assocmem.hopfield.thresholded_memory_capacity":     # the grid of K, so that a capacity is read off
        {"d": lambda: [4, 6], "eta": 0.2, "error": 0.1, "max_patterns": 32},
    "assocmem.hopfield.hopfield_attention": {"queries": lambda: _signs(2)},       # not a number of queries
    "assocmem.hopfield.thresholded_memory_scores": {"queries": lambda: _signs(2)},
    "assocmem.memory.scheme_weights": {"scheme": "power"},                  # "top" is not one of its schemes
    "assocmem.theory.interference.scheme_exponent": {"scheme": "power"},
    "assocmem.theory.capacity.fano_phi": {"P": lambda: [0.0, 0.25, 0.5]},    # in [0, 1 - 1/M]
    "assocmem.theory.dynamics.minibatch_q": {"counts": lambda: np.ones((3, N))},  # (steps, N)
    "assocmem.theory.hopfield.modern_capacity_lower_bound":  # d large enough for the theorem's condition
        {"K": 1.0, "d": 64, "p": 0.5},
    "assocmem.theory.predictor.predict_error":           # rule "sgd" needs both; 2 draws, not 16
        {"lr": 0.5, "batch_size": 4, "samples": 2},
    "assocmem.theory.volume.log_lower_gamma_regularized":
        {"a": lambda: np.array([0.5, 1.0, 2.0]), "x": lambda: np.array([0.5, 1.0, 4.0])},
    "assocmem.training.gradients":                       # R = 2 runs of P = 3 points each
        {"W": _embeddings(D, runs=2, scale=1.0), "E": _embeddings(N, runs=2), "U": _embeddings(M, runs=2),
         "labels": lambda: torch.arange(N) % M, "idx": lambda: torch.tensor([[0, 1, 2], [3, 4, 5]]),
         "weights": lambda: torch.full((2, 3), 1 / 3, dtype=torch.float64)},
    "assocmem.training.train": {"E": _embeddings(N, runs=2), "U": _embeddings(M, runs=2), "steps": 3},
    "assocmem.training.write_grid_file":                 # never the committed file: a scratch path and cache
        {"path": lambda: os.path.abspath("grid.csv.gz"), "cache": lambda: _grid_cache()},
    "assocmem.transformer.nearest_neighbour_distances": {"points": lambda: _signs(4)},
    "assocmem.capacity.phase_winners": {"table": _phase_table, "n_boot": 20},
    "assocmem.capacity.overflow_agreement": {"table": _phase_table, "n_boot": 20},
    "assocmem.executors.compute_point":                  # the cheap point of the training grid
        {"name": "optimization_grid", "module": "assocmem.training", "config": lambda: _training_point(full=True)},
    "assocmem.gd_dynamics.top_hessian_eigenvalue":       # a quadratic with Hessian 2 I per run
        {"fn": lambda: (lambda params: (params**2).sum(-1)), "params": _tensor(2, 3)},
    "assocmem.sweep.get_experiment": {"name_or_experiment": "optimization_grid"},
    "assocmem.sweep.config_key":
        {"experiment": lambda: _experiment("optimization_grid"), "config": lambda: _training_point(full=True)},
    "assocmem.sweep.PointLock": {"path": lambda: os.path.abspath("point.lock")},
    "assocmem.sweep.run_sweep":
        {"experiment": "optimization_grid", "configs": lambda: [_training_point()], "progress": False},
    "assocmem.theory.predictor.grid_cells": {"runs": _grid_runs},
    "assocmem.theory.predictor.calibration": {"cells": _grid_cells, "samples": 2},
    "assocmem.theory.predictor.calibration_summary": {"table": _calibration},
    "assocmem.theory.predictor.calibration_half": {"cells": _grid_cells},   # its lr, B on the grid's values
    "assocmem.theory.predictor.model_error": {"table": _calibration, "by": "d"},
    "assocmem.theory.predictor.with_model_error": {"table": _calibration, "sigma": lambda: _model_error()},
    "assocmem.theory.predictor.model_bias": {"table": _calibration, "by": "d"},
    "assocmem.theory.predictor.with_model_bias": {"table": _calibration, "bias": lambda: _model_bias()},
    "assocmem.transformer.balanced_sizes": {"table": _balance_table},
    "assocmem.transformer.balance_exponent": {"table": _balance_grid},
    "assocmem.transformer.flag_diverged": {"table": _balance_table},
}
# Hostile cases never run, with the reason: legal values whose call would write where the fuzz must not.
NOT_RUN = {
    "assocmem.training.write_grid_file|path|None": "the default path is the committed data/training_grid file",
}
# Cases whose non-finite result is the documented answer, not a silent one (recorded as "documented").
DOCUMENTED_NONFINITE = {
    "assocmem.training.scores_error|scores|nan inside":
        "a run whose scores are not all finite (it diverged) gets nan, never a number (its docstring)",
}
NO_BASELINE = object()
SKIP_ALL = 10**9  # resume past every case of a function (its baseline hung)
SKIP_ENV = "ASSOCMEM_FUZZ_SKIP"  # a JSON list of case keys not to run (known hangs)
ONLY_ENV = "ASSOCMEM_FUZZ_ONLY"  # comma-separated module names: fuzz only these (a quick check while fixing)
FINDINGS = ("unnamed", "other", "nonfinite", "hang")


def key(function: str, param: str | None, value: str) -> str:
    """The name of a case in the list of known findings."""
    return f"{function}|{param}|{value}"


def public_callables():
    """``(qualified name, callable)`` for every name in every package module's ``__all__``."""
    import assocmem

    only = {m for m in os.environ.get(ONLY_ENV, "").split(",") if m}
    for info in pkgutil.walk_packages(assocmem.__path__, "assocmem."):
        if info.name.rsplit(".", 1)[-1].startswith("_") or info.name in SKIP_MODULES:
            continue
        if only and info.name not in only:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if callable(obj) and skip_reason(obj) is None:
                yield f"{info.name}.{name}", obj


def skip_reason(obj) -> str | None:
    from assocmem.sweep import Experiment

    if isinstance(obj, Experiment):
        return "a registered experiment (its parameters reach the API functions fuzzed here)"
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        return "a record (dataclass) holding results, not a computation"
    if inspect.isclass(obj) and issubclass(obj, BaseException):
        return "an exception type"
    return None


def _value(spec, alternative: int):
    if isinstance(spec, list):
        spec = spec[min(alternative, len(spec) - 1)]
    return spec() if callable(spec) else spec


def baseline_kwargs(fn, alternative: int = 0, qualname: str = ""):
    """Valid small keyword arguments for ``fn`` (named ``qualname`` in ``BASELINES``), or ``NO_BASELINE``
    when a required one is unknown."""
    kwargs, table = {}, BASELINES.get(qualname, {})
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        if p.name in table:
            kwargs[p.name] = _value(table[p.name], alternative)
        elif p.name in SMALL and (p.default is p.empty or _same_kind(p.default, SMALL[p.name])):
            kwargs[p.name] = SMALL[p.name]
        elif p.default is not p.empty:
            continue
        elif p.name in VALID:
            kwargs[p.name] = _value(VALID[p.name], alternative)
        else:
            return NO_BASELINE
    return kwargs


def _same_kind(default, small) -> bool:
    return isinstance(default, numbers.Integral) and not isinstance(default, bool) and isinstance(small, int)


def parameters(fn):
    return [p for p in inspect.signature(fn).parameters.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]


def bad_values(value) -> list[tuple[str, object]]:
    """The hostile values for a parameter whose valid value is ``value`` (its kind decides)."""
    if value is None:
        return [("str", "x"), ("nan", math.nan)]
    if isinstance(value, bool):
        return [("str", "yes"), ("int 2", 2), ("None", None)]
    if isinstance(value, numbers.Integral):
        return [("0", 0), ("-1", -1), ("2.5", 2.5), ("True", True), ("str", "3"), ("None", None), ("nan", math.nan),
                ("1e12", 10**12)]
    if isinstance(value, numbers.Real):
        return [("nan", math.nan), ("inf", math.inf), ("-inf", -math.inf), ("str", "x"), ("None", None),
                ("-1", -1.0), ("0", 0.0), ("1e300", 1e300)]
    if isinstance(value, str):
        return [("unknown", "no-such-choice"), ("int", 3), ("None", None), ("array", np.array(["a", "b"]))]
    if isinstance(value, torch.dtype):
        return [("int64", torch.int64), ("str", "float32")]
    if isinstance(value, (np.ndarray, torch.Tensor, list, tuple)):
        arr = value
        empty = arr[:0] if isinstance(arr, (np.ndarray, torch.Tensor)) else type(arr)()
        out = [("empty", empty), ("None", None), ("str", "x"), ("strings", ["a"] * max(1, len(arr)))]
        try:
            floats = np.asarray(arr.detach().cpu() if isinstance(arr, torch.Tensor) else arr, dtype=np.float64)
            with_nan = floats.copy()
            with_nan.flat[0] = math.nan
            out.append(("nan inside", torch.as_tensor(with_nan) if isinstance(arr, torch.Tensor) else with_nan))
            out.append(("3-D", floats.reshape(1, 1, *floats.shape) if floats.ndim else floats.reshape(1, 1, 1)))
        except (TypeError, ValueError):
            pass
        return out
    return [("None", None), ("str", "x")]


def unreached_by_signature() -> dict[str, str]:
    """Functions with no baseline because a required argument is of a kind ``VALID`` does not know."""
    return {qualname: _no_baseline_reason(fn, qualname) for qualname, fn in public_callables()
            if baseline_kwargs(fn, 0, qualname) is NO_BASELINE}


def _no_baseline_reason(fn, qualname: str) -> str:
    known = VALID.keys() | SMALL.keys() | BASELINES.get(qualname, {}).keys()
    missing = [p.name for p in parameters(fn) if p.default is p.empty and p.name not in known]
    return f"no valid value known for {missing}"


def _callable(qualname: str):
    module, name = qualname.rsplit(".", 1)
    return getattr(importlib.import_module(module), name)


class _Hang(BaseException):
    """Raised by the alarm: a BaseException, so an ``except Exception`` in the code under test cannot
    swallow it."""


def _finite(value, depth: int = 0) -> bool:
    if depth > 4:
        return True
    if isinstance(value, bool) or value is None or isinstance(value, (str, bytes)):
        return True
    if isinstance(value, numbers.Number):
        return bool(np.isfinite(value)) if isinstance(value, numbers.Real) else np.isfinite(complex(value)).all()
    if isinstance(value, torch.Tensor):
        return bool(torch.isfinite(value).all()) if value.is_floating_point() or value.is_complex() else True
    if isinstance(value, np.ndarray):
        return bool(np.isfinite(value).all()) if np.issubdtype(value.dtype, np.number) else True
    if isinstance(value, torch.nn.Module):
        return all(_finite(t, depth + 1) for t in value.state_dict().values())
    if isinstance(value, dict):
        return all(_finite(v, depth + 1) for v in value.values())
    if isinstance(value, (list, tuple)):
        return all(_finite(v, depth + 1) for v in value[:10000])
    if dataclasses.is_dataclass(value):
        return all(_finite(getattr(value, f.name), depth + 1) for f in dataclasses.fields(value))
    return True


def _classify(fn, kwargs: dict, param: str | None, seconds: float = SOFT_S) -> tuple[str, str]:
    """Call ``fn(**kwargs)`` under the time bound ``seconds`` and classify the outcome."""
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = fn(**kwargs)
        signal.setitimer(signal.ITIMER_REAL, 0)
        return ("finite", "") if _finite(result) else ("nonfinite", "a NaN or inf in the result")
    except _Hang:
        return "hang", f"over {seconds} s"
    except (ValueError, TypeError) as error:
        signal.setitimer(signal.ITIMER_REAL, 0)
        message = str(error)
        if param is None or re.search(rf"(?<![A-Za-z0-9_]){re.escape(param)}(?![A-Za-z0-9_])", message):
            return "clear", f"{type(error).__name__}: {message[:200]}"
        return "unnamed", f"{type(error).__name__}: {message[:200]}"
    except Exception as error:  # noqa: BLE001 - every other failure is a finding
        signal.setitimer(signal.ITIMER_REAL, 0)
        return "other", f"{type(error).__name__}: {str(error)[:200]}"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def run(out_path: str, resume: tuple[str, int] | None = None) -> None:
    """Run every case (from case ``resume[1]`` of function ``resume[0]`` on), appending to ``out_path`` a
    JSON line before each call (``start``) and one with its outcome."""
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    current = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    resource.setrlimit(resource.RLIMIT_AS, (current + MEMORY_BYTES, hard))
    torch.set_num_threads(1)

    def alarm(signum, frame):
        raise _Hang

    signal.signal(signal.SIGALRM, alarm)
    in_flight = {"since": None, "hard": HARD_S}

    def watchdog():
        while True:
            time.sleep(0.5)
            since = in_flight["since"]
            if since is not None and time.time() - since > in_flight["hard"]:
                os._exit(3)  # stuck in C code: the parent records a hang and resumes after this case

    threading.Thread(target=watchdog, daemon=True).start()
    skipping = resume is not None
    with open(out_path, "a") as out:
        def call(qualname, case, fn, kwargs, param, label):
            out.write(json.dumps({"start": qualname, "case": case, "param": param, "value": label}) + "\n")
            out.flush()
            seconds = SOFT_S if param is not None else BASELINE_S
            in_flight["since"], in_flight["hard"] = time.time(), HARD_S + seconds - SOFT_S
            began = time.perf_counter()
            outcome, detail = _classify(fn, kwargs, param, seconds)
            in_flight["since"] = None
            return {"function": qualname, "case": case, "param": param, "value": label, "outcome": outcome,
                    "detail": detail, "seconds": round(time.perf_counter() - began, 3)}

        skip = set(json.loads(os.environ.get(SKIP_ENV) or "[]"))
        for qualname, fn in public_callables():
            if skipping and qualname != resume[0]:
                continue
            first = resume[1] if skipping else 0
            skipping = False
            if first == SKIP_ALL:
                continue
            if baseline_kwargs(fn, 0, qualname) is NO_BASELINE:
                out.write(json.dumps({"function": qualname, "case": 0, "param": None, "value": "baseline",
                                      "outcome": "unreached", "detail": _no_baseline_reason(fn, qualname),
                                      "seconds": 0.0}) + "\n")
                continue
            chosen, record = None, None
            for alternative in range(3):  # the alternatives of the names with several meanings
                kwargs = baseline_kwargs(fn, alternative, qualname)
                if first > 0:  # resuming inside this function: its baseline was recorded already
                    if _classify(fn, kwargs, None, BASELINE_S)[0] == "finite":
                        chosen = alternative
                        break
                    continue
                record = call(qualname, 0, fn, kwargs, None, "baseline")
                if record["outcome"] == "finite":
                    chosen = alternative
                    break
            if record is not None:
                if chosen is None:
                    record["outcome"], record["detail"] = "unreached", f"the baseline call fails: {record['detail']}"
                else:
                    record["outcome"] = "baseline"
                out.write(json.dumps(record) + "\n")
            if chosen is None:
                continue
            kwargs = baseline_kwargs(fn, chosen, qualname)
            case = 0
            for p in parameters(fn):
                for label, bad in bad_values(kwargs.get(p.name, p.default)):
                    case += 1
                    if case < max(first, 1):
                        continue
                    if key(qualname, p.name, label) in NOT_RUN:
                        continue
                    if key(qualname, p.name, label) in skip:  # a known hang, not waited for again
                        record = {"function": qualname, "case": case, "param": p.name, "value": label,
                                  "outcome": "hang", "detail": "known hang, skipped", "seconds": 0.0}
                    else:
                        record = call(qualname, case, fn, {**kwargs, p.name: bad}, p.name, label)
                        reason = DOCUMENTED_NONFINITE.get(key(qualname, p.name, label))
                        if record["outcome"] == "nonfinite" and reason:
                            record["outcome"], record["detail"] = "documented", reason
                    out.write(json.dumps(record) + "\n")
            out.flush()


def drive(out_path: str, *, skip: list[str] = (), python: str = sys.executable) -> list[dict]:
    """Run every case in child processes (resuming after a child that died in a case, which is recorded
    as a hang) and return the records; the cases named in ``skip`` are recorded as hangs, not run."""
    out_path = os.path.abspath(out_path)
    open(out_path, "w").close()
    resume: list[str] = []
    scratch = tempfile.mkdtemp(prefix="assocmem-fuzz-")  # the calls' working directory: a path-like bad value
    # (a checkpoint named "x") writes there, not into the caller's directory; so does the default sweep cache
    from assocmem.sweep import CACHE_ENV

    env = {**os.environ, SKIP_ENV: json.dumps(sorted(skip)), CACHE_ENV: os.path.join(scratch, "default-cache")}
    while True:
        child = subprocess.run([python, os.path.abspath(__file__), "run", out_path, *resume], capture_output=True,
                               text=True, env=env, cwd=scratch)
        lines = [json.loads(line) for line in open(out_path)]
        if child.returncode == 0:
            shutil.rmtree(scratch, ignore_errors=True)
            return [line for line in lines if "outcome" in line]
        last = lines[-1] if lines else None
        if not last or "start" not in last:
            raise RuntimeError(f"the fuzz child failed outside a case: {child.stderr[-2000:]}")
        baseline = last["case"] == 0  # a baseline that hangs: the function is unreached, skipped
        with open(out_path, "a") as out:
            out.write(json.dumps({"function": last["start"], "case": last["case"], "param": last["param"],
                                  "value": last["value"],
                                  "outcome": "unreached" if baseline else "hang", "seconds": HARD_S,
                                  "detail": f"the call ended its process (exit {child.returncode})"}) + "\n")
        resume = [last["start"], str(SKIP_ALL if baseline else last["case"] + 1)]


def summary(records: list[dict]) -> dict:
    """The figures: calls, how each ended, and the findings."""
    calls = [r for r in records if r["outcome"] not in ("baseline", "unreached")]
    counts = {}
    for r in calls:
        counts[r["outcome"]] = counts.get(r["outcome"], 0) + 1
    good = counts.get("clear", 0) + counts.get("finite", 0) + counts.get("documented", 0)
    return {"calls": len(calls), "outcomes": counts, "good_percent": 100.0 * good / max(len(calls), 1),
            "functions": len({r["function"] for r in records}),
            "unreached": sorted({r["function"] for r in records if r["outcome"] == "unreached"})}


if __name__ == "__main__":
    command, path = sys.argv[1], sys.argv[2]
    if command == "run":
        run(path, (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else None)
    elif command == "drive":
        print(json.dumps(summary(drive(path)), indent=1))
    elif command == "known":  # the findings of a finished run, as the list of known findings
        records = [json.loads(line) for line in open(path) if "outcome" in line]
        print(json.dumps({key(r["function"], r["param"], r["value"]): r["outcome"] for r in records
                          if r["outcome"] in FINDINGS and r["param"] is not None}, indent=0, sort_keys=True))
    else:
        print(json.dumps(summary([json.loads(line) for line in open(path) if "outcome" in line]), indent=1))
