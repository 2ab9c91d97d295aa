"""The API reference is complete: every public function and method of the package documents every
parameter in a NumPy-style ``Parameters`` section, every registered experiment documents its
parameters and the rows it returns, every module has its page in the API appendix, and the package
docstring names every module.

A failure names the function and the parameters it leaves out, e.g.
``assocmem.memory.population_errors: Parameters section lacks E, U``; fix it in the docstring.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import assocmem
from assocmem.sweep import Experiment, experiments

ROOT = Path(__file__).resolve().parent.parent
API = ROOT / "book" / "api"
# Functions whose docstrings were incomplete when this test was written: each is an expected failure,
# and a strict one, so documenting a function makes its test XPASS and fail until the name is
# removed from this file. Any function not listed must be complete.
KNOWN = ROOT / "tests" / "api_docs_known.txt"
KNOWN_INCOMPLETE = {line.strip() for line in KNOWN.read_text().splitlines()
                    if line.strip() and not line.startswith("#")} if KNOWN.is_file() else set()


def modules() -> list[str]:
    """Every module of the package (``assocmem.x`` and ``assocmem.theory.y``), private ones excluded."""
    names = []
    for info in pkgutil.walk_packages(assocmem.__path__, "assocmem."):
        if not any(part.startswith("_") for part in info.name.split(".")[1:]):
            names.append(info.name)
    return sorted(names)


def _public(module) -> list[str]:
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [n for n in vars(module) if not n.startswith("_")
            and getattr(getattr(module, n), "__module__", None) == module.__name__]


def public_functions() -> dict[str, object]:
    """Qualified name -> function, for the public functions and public methods of public classes."""
    found = {}
    for name in modules():
        module = importlib.import_module(name)
        for attr in _public(module):
            obj = getattr(module, attr)
            if isinstance(obj, Experiment):
                continue   # checked by test_experiment_documents_parameters_and_rows
            if inspect.isfunction(obj) and obj.__module__ == name:
                found[f"{name}.{attr}"] = obj
            elif inspect.isclass(obj) and obj.__module__ == name:
                for meth_name, meth in vars(obj).items():
                    if meth_name.startswith("_") or not inspect.isfunction(meth):
                        continue
                    found[f"{name}.{attr}.{meth_name}"] = meth
    return dict(sorted(found.items()))


def documented_parameters(doc: str) -> set[str] | None:
    """Names in the docstring's ``Parameters`` section (``None`` when it has none)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    for i in range(len(lines) - 1):
        if lines[i].strip() == "Parameters" and set(lines[i + 1].strip()) == {"-"}:
            break
    else:
        return None
    names, indent = set(), None
    for line in lines[i + 2:]:
        if not line.strip():
            continue
        width = len(line) - len(line.lstrip())
        if indent is None:
            indent = width
        if width < indent or (width == indent and i + 1 < len(lines) and re.match(r"^\s*-{3,}\s*$", line)):
            break
        if width == indent:
            if re.match(r"^[A-Z][A-Za-z ]+$", line.strip()):   # the next section's title
                break
            head = line.split(" : ")[0] if " : " in line else line
            for part in head.split(","):
                names.add(part.strip().lstrip("*"))
    return names


def signature_parameters(fn) -> list[str]:
    params = inspect.signature(fn).parameters.values()
    return [p.name for p in params if p.name not in {"self", "cls"}]


def missing(fn, doc: str | None = None) -> str | None:
    """Why ``fn``'s docstring is incomplete, or None."""
    wanted = signature_parameters(fn)
    if not wanted:
        return None
    have = documented_parameters(doc if doc is not None else fn.__doc__)
    if have is None:
        return f"no Parameters section (parameters: {', '.join(wanted)})"
    lacking = [p for p in wanted if p not in have]
    if lacking:
        return f"Parameters section lacks {', '.join(lacking)}"
    return None


FUNCTIONS = public_functions()


def _cases(names):
    return [pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason=f"listed in {KNOWN.name}: remove it from there once documented"))
        if name in KNOWN_INCOMPLETE else name for name in names]


@pytest.mark.parametrize("qualname", _cases(FUNCTIONS))
def test_public_function_documents_every_parameter(qualname):
    problem = missing(FUNCTIONS[qualname])
    assert problem is None, f"{qualname}: {problem}"


EXPERIMENTS = experiments()


@pytest.mark.parametrize("name", _cases(EXPERIMENTS))
def test_experiment_documents_parameters_and_rows(name):
    exp = EXPERIMENTS[name]
    where = f"experiment {name!r} ({exp.fn.__module__}.{exp.fn.__name__})"
    problem = missing(exp.fn, exp.doc)
    assert problem is None, f"{where}: {problem}"
    doc = inspect.cleandoc(exp.doc)
    assert re.search(r"^Returns\n-+$", doc, re.M), f"{where}: no Returns section describing its rows"


@pytest.mark.parametrize("name", list(EXPERIMENTS))
def test_help_on_an_experiment_shows_its_function(name):
    import pydoc

    exp = EXPERIMENTS[name]
    text = pydoc.render_doc(exp, renderer=pydoc.plaintext)
    first = inspect.cleandoc(exp.doc).splitlines()[0]
    assert first in text, f"help({exp.fn.__module__}.{exp.fn.__name__}) does not show its docstring"
    assert "class Experiment" not in text, "help() shows the generic Experiment class"


@pytest.mark.parametrize("name", modules())
def test_every_module_has_an_api_page(name):
    page = API / f"{name.removeprefix('assocmem.')}.md"
    assert page.is_file(), f"{name} has no page in the API appendix: add book/api/{page.name}"
    assert f"automodule:: {name}\n" in page.read_text(), f"{page} does not document {name}"


def test_package_docstring_names_every_module():
    top = sorted({name.split(".")[1] for name in modules()})
    lacking = [m for m in top if f"``{m}``" not in assocmem.__doc__]
    assert lacking == [], f"assocmem/__init__.py's docstring does not name {lacking}"


def test_known_list_names_only_existing_functions():
    stale = sorted(KNOWN_INCOMPLETE - set(FUNCTIONS) - set(EXPERIMENTS))
    assert stale == [], f"{KNOWN.name} lists names that no longer exist: {stale}"


def test_documented_parameters_parser():
    doc = """Summary.

    Parameters
    ----------
    x, y : array_like
        Points.
    seed : int
        Seed.
    **kwargs
        Passed on.

    Returns
    -------
    float
    """
    assert documented_parameters(doc) == {"x", "y", "seed", "kwargs"}
    assert documented_parameters("No sections.") is None
