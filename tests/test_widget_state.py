"""Every stored explorer has its widget state: a chapter whose explorer points at a widget missing from
the notebook's saved state (what a save from Jupyter Lab without "save widget state" writes) renders an
empty box in the HTML while the build still succeeds, so the tests catch it here."""

import json
import re
from pathlib import Path

import pytest

BOOK = Path(__file__).resolve().parent.parent / "book"
CHAPTERS = sorted(BOOK.glob("[0-9][0-9]_*.ipynb"))
VIEW = "application/vnd.jupyter.widget-view+json"
STATE = "application/vnd.jupyter.widget-state+json"


def widget_problems(notebook: dict) -> list[str]:
    """What is wrong with a notebook's widgets: a view (an output displaying a widget) whose model is not
    in the saved state, or a saved model referring (``IPY_MODEL_<id>``) to a model that is not there."""
    state = notebook.get("metadata", {}).get("widgets", {}).get(STATE, {}).get("state", {})
    problems = []
    for index, cell in enumerate(notebook.get("cells", [])):
        for output in cell.get("outputs", []):
            view = output.get("data", {}).get(VIEW)
            if view is not None and view.get("model_id") not in state:
                problems.append(f"cell {index} displays widget {view.get('model_id')}, absent from the saved state")
    for model_id, model in state.items():
        for ref in set(re.findall(r"IPY_MODEL_([0-9a-f]+)", json.dumps(model))):
            if ref not in state:
                problems.append(f"widget {model_id} refers to widget {ref}, absent from the saved state")
    return problems


def explorer_cells(notebook: dict) -> list[int]:
    """Code cells that call ``explorer(`` (each must display a widget)."""
    return [i for i, cell in enumerate(notebook.get("cells", []))
            if cell.get("cell_type") == "code" and "explorer(" in "".join(cell.get("source", ""))]


@pytest.mark.parametrize("chapter", CHAPTERS, ids=lambda p: p.stem)
def test_every_stored_explorer_has_its_widget_state(chapter):
    notebook = json.loads(chapter.read_text())
    assert widget_problems(notebook) == []
    for index in explorer_cells(notebook):
        outputs = notebook["cells"][index].get("outputs", [])
        assert any(VIEW in output.get("data", {}) for output in outputs), \
            f"{chapter.name}: cell {index} calls explorer(...) but stores no widget (run make notebooks NB=...)"


def test_the_check_catches_a_missing_widget():
    model = {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_bb"]}}
    view = {"output_type": "display_data", "data": {VIEW: {"model_id": "aa", "version_major": 2}}}
    notebook = {"cells": [{"cell_type": "code", "source": "explorer(f)", "outputs": [view]}],
                "metadata": {"widgets": {STATE: {"state": {"aa": model, "bb": {"state": {}}}}}}}
    assert widget_problems(notebook) == [] and explorer_cells(notebook) == [0]
    del notebook["metadata"]["widgets"][STATE]["state"]["bb"]
    assert widget_problems(notebook) == ["widget aa refers to widget bb, absent from the saved state"]
    notebook["metadata"] = {}
    assert widget_problems(notebook) == ["cell 0 displays widget aa, absent from the saved state"]
