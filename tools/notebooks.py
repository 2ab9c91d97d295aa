"""Chapters as paired files: ``book/twins/NAME.md`` (MyST, reviewed in diffs) and ``book/NAME.ipynb``
(executed, with stored outputs and widget state; what Sphinx renders and nbval validates).

    python tools/notebooks.py execute [TWIN_OR_NOTEBOOK ...]   # md -> executed ipynb, twin resynced
    python tools/notebooks.py check                            # every pair in sync (exit 1 if not)

With no file, ``execute`` runs every chapter. Execution uses the current interpreter's kernel, runs in
``book/`` and writes through a temporary file, so an interrupted run never leaves a broken notebook.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import jupytext
import nbformat
from nbclient import NotebookClient

from assocmem._io import atomic_write_text

BOOK = Path(__file__).resolve().parent.parent / "book"
TWINS = BOOK / "twins"
TWIN_FORMAT = "md:myst"
PAIRING = {"jupytext": {"formats": "ipynb,twins//md:myst"}}


def chapter_names(paths: list[str]) -> list[str]:
    if not paths:
        return sorted(p.stem for p in TWINS.glob("*.md"))
    return [Path(p).stem for p in paths]


def execute(name: str) -> None:
    """Read the twin, execute it, store the notebook with outputs and widget state, resync the twin."""
    twin = TWINS / f"{name}.md"
    nb = jupytext.read(twin, fmt=TWIN_FORMAT)
    nb.metadata.pop("jupytext", None)
    nb.metadata.update(PAIRING)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    start = time.perf_counter()
    NotebookClient(nb, timeout=900, kernel_name="python3", store_widget_state=True,
                   resources={"metadata": {"path": str(BOOK)}}).execute()
    print(f"{name}: executed in {time.perf_counter() - start:.0f} s", flush=True)
    atomic_write_text(BOOK / f"{name}.ipynb", nbformat.writes(nb))
    atomic_write_text(twin, jupytext.writes(nb, fmt=TWIN_FORMAT))


def out_of_sync() -> list[str]:
    """Names of chapters whose notebook and twin differ in cells, sources or tags (or lack a partner)."""
    notebooks = {p.stem for p in BOOK.glob("*.ipynb")}
    twins = {p.stem for p in TWINS.glob("*.md")}
    drifted = sorted(notebooks ^ twins)
    for name in sorted(notebooks & twins):
        if _cells(jupytext.read(BOOK / f"{name}.ipynb")) != _cells(jupytext.read(TWINS / f"{name}.md")):
            drifted.append(name)
    return drifted


def _cells(nb) -> list[tuple]:
    return [(c.cell_type, c.source.strip(), tuple(c.metadata.get("tags", []))) for c in nb.cells]


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in {"execute", "check"}:
        print(__doc__)
        return 2
    if argv[0] == "check":
        drifted = out_of_sync()
        for name in drifted:
            print(f"out of sync: book/{name}.ipynb and book/twins/{name}.md (run `make notebooks`)")
        return 1 if drifted else 0
    for name in chapter_names(argv[1:]):
        execute(name)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
