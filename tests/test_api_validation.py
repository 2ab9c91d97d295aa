"""Bad input to every public function gets a clear error naming the parameter.

Table-driven over the public API: every public function of every package module is inspected; each
parameter whose name is in ``BAD`` is given each of its bad values while the other parameters keep
valid values (their defaults, or ``VALID`` below), and the call must raise ValueError or TypeError whose
message names the parameter — never a deep torch/numpy traceback, never a silent NaN. Functions whose
required arguments are not scalars in ``VALID`` (tensors, arrays) are covered by their module's tests;
the list of what this test reaches is itself checked, so it cannot silently shrink to nothing.
"""

import importlib
import inspect
import math
import pkgutil

import pytest

import assocmem

NAN, INF = math.nan, math.inf
# Universally invalid values for parameters that mean the same thing everywhere in the package.
BAD = {
    "N": [0, -3, 2.5, True], "M": [0, 1.5], "T": [-1, 3.5], "d": [0, -2, 1.5], "trials": [0, 2.5],
    "seed": [-1, 0.5, "0"], "alpha": [-1.0, NAN, INF, "2"], "beta": [NAN, INF, -1.0], "K": [0, 2.5],
    "batch_size": [0, -4], "lr": [NAN, INF], "rho": [NAN, -INF], "steps": [-1, 1.5], "n_layers": [0],
    "d_emb": [0, -8], "context": [0], "n_heads": [0], "probes": [0], "workers": [0, -1],
}
# Valid values for required parameters that have no default.
VALID = {
    "N": 20, "M": 3, "T": 50, "d": 8, "trials": 2, "seed": 0, "alpha": 1.5, "beta": 1.0, "K": 4, "n": 12,
    "batch_size": 4, "lr": 0.1, "rho": 1.0, "steps": 2, "n_layers": 1, "d_emb": 8, "context": 8, "n_heads": 2,
    "probes": 2, "a": 2, "P": 5, "gamma": 1.0,
}
SKIP_MODULES = {"plotting", "widgets", "__main__"}
# Where a name means something else: in [R20]'s bounds M is the largest pattern norm and K a real constant.
OTHER_MEANING = {("assocmem.theory.hopfield", "M"), ("assocmem.theory.hopfield", "K"), ("assocmem.hopfield", "K")}


def bad_values(module: str, name: str) -> list:
    if (module, name) in OTHER_MEANING:
        return []
    if module.startswith("assocmem.theory.") and name == "d":
        return [0, -2]  # closed forms may take a real dimension, e.g. to draw a smooth curve
    return BAD.get(name, [])


def public_functions():
    for info in pkgutil.walk_packages(assocmem.__path__, "assocmem."):
        short = info.name.rsplit(".", 1)[-1]
        if short.startswith("_") or short in SKIP_MODULES:
            continue
        module = importlib.import_module(info.name)
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if not name.startswith("_") and fn.__module__ == module.__name__:
                yield f"{info.name}.{name}", fn


def cases():
    for qualname, fn in public_functions():
        params = inspect.signature(fn).parameters.values()
        if any(p.kind in (p.VAR_POSITIONAL,) for p in params):
            continue
        required = [p.name for p in params if p.default is p.empty and p.kind != p.VAR_KEYWORD]
        if not set(required) <= set(VALID):
            continue
        kwargs = {name: VALID[name] for name in required}
        for p in params:
            for bad in bad_values(fn.__module__, p.name):
                yield pytest.param(fn, kwargs, p.name, bad, id=f"{qualname}-{p.name}={bad!r}")


CASES = list(cases())


def test_the_table_reaches_the_package():
    reached = {case.values[0].__module__ for case in CASES}
    assert {"assocmem.zipf", "assocmem.memory", "assocmem.hopfield"} <= reached, reached
    assert len(CASES) >= 40


@pytest.mark.parametrize("fn, kwargs, name, bad", CASES)
def test_bad_value_raises_naming_the_parameter(fn, kwargs, name, bad):
    with pytest.raises((ValueError, TypeError)) as info:
        fn(**{**kwargs, name: bad})
    assert name in str(info.value), f"the error does not name {name!r}: {info.value}"
