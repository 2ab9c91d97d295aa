"""assocmem.widgets.explorer: the precomputed grid, the stacks the page selects from, live mode."""

import itertools

import matplotlib

matplotlib.use("Agg")

import ipywidgets as w  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from assocmem import widgets  # noqa: E402

CALLS = []


def draw(a, kind, flag=False):
    CALLS.append((a, kind, flag))
    fig, ax = plt.subplots(figsize=(2, 1.5))
    ax.plot([0, 1], [0, a if kind == "up" else -a], lw=1 + flag)
    ax.set_title(f"{a} {kind} {flag}")


def controls(**extra):
    return dict(a=w.FloatSlider(value=1.0, min=0.0, max=2.0, step=0.1, description="a"),
                kind=w.Dropdown(options=["up", "down", "flat"], value="down"), **extra)


def leaves(box):
    """Images reached by following each combination of snapped indices through the nested stacks."""
    row, _, view = box.children
    sizes = [len(c.options) for c in row.children]
    found = {}
    for combo in itertools.product(*(range(n) for n in sizes)):
        node = view
        for i in combo:
            node = node.children[i]
        found[tuple(c.options[i][1] for c, i in zip(row.children, combo, strict=True))] = node
    return found


def test_grid_fits_the_budget_and_contains_the_initial_values():
    box = widgets.explorer(draw, max_figures=12, **controls())
    row, _, view = box.children
    a, kind = row.children
    assert isinstance(a, w.SelectionSlider) and isinstance(kind, w.Dropdown)
    assert len(a.options) * len(kind.options) <= 12
    # fewest-first growth: the slider gets 4 positions, the menu all 3 options
    assert (len(a.options), len(kind.options)) == (4, 3)
    assert a.value == 1.0 and kind.value == "down"
    # 4 of the 21 positions spread evenly: 0, 0.7, 1.3, 2; the nearest to the initial 1.0 (0.7 and 1.3
    # tie, the lower wins) is replaced by it
    assert [v for _, v in a.options] == [0.0, 1.0, 1.3, 2.0]
    assert [label for label, _ in a.options] == ["0.00", "1.00", "1.30", "2.00"]


def test_each_stack_path_shows_the_figure_of_its_values():
    box = widgets.explorer(draw, max_figures=6, **controls())
    found = leaves(box)
    assert len(found) == 6
    for (a, kind), image in found.items():
        assert isinstance(image, w.Image)
        assert image.value == widgets._render(draw, {"a": a, "kind": kind})


def test_stacks_start_on_the_initial_figure():
    box = widgets.explorer(draw, max_figures=6, **controls())
    row, _, node = box.children
    while isinstance(node, w.Stack):
        node = node.children[node.selected_index]
    assert node.value == widgets._render(draw, {"a": 1.0, "kind": "down"})


def test_links_tie_each_control_to_every_stack_of_its_level():
    box = widgets.explorer(draw, max_figures=6, **controls())
    row, _, view = box.children
    links = box._assocmem_links
    # one stack at level 0, one per slider value at level 1
    assert len(links) == 1 + len(row.children[0].options)
    for link in links:
        (source, trait), (target, target_trait) = link.source, link.target
        assert trait == "index" and target_trait == "selected_index" and source in row.children
        assert isinstance(target, w.Stack)


def test_precompute_names_the_values_and_check_boxes_become_toggles():
    box = widgets.explorer(draw, precompute={"a": [0.5, 1.5]},
                           **controls(flag=w.Checkbox(value=True, description="flag")))
    row, _, _ = box.children
    assert [v for _, v in row.children[0].options] == [0.5, 1.0, 1.5]
    assert isinstance(row.children[2], w.ToggleButtons)
    assert row.children[2].value is True


def test_budget_bytes_lowers_the_count():
    first = widgets._render(draw, {"a": 1.0, "kind": "down"})
    box = widgets.explorer(draw, budget_bytes=int(1.25 * len(first)) * 2, **controls())
    assert len(leaves(box)) == 2


def test_live_mode_after_the_first_change():
    originals = controls()
    box = widgets.explorer(draw, max_figures=6, **originals)
    row, _, _ = box.children
    snapped_a = row.children[0]
    CALLS.clear()
    plt.close("all")
    snapped_a.value = snapped_a.options[-1][1]
    assert isinstance(box.children[2], w.Output)
    assert list(row.children) == [originals["a"], originals["kind"]]
    assert originals["a"].value == snapped_a.value
    assert CALLS[-1] == (snapped_a.value, "down", False)
    originals["a"].value = 0.3               # beyond the grid: drawn live
    assert CALLS[-1] == (0.3, "down", False)
    assert all(link.comm is None for link in box._assocmem_links), "links to the stacks are closed"


def test_bad_input():
    with pytest.raises(ValueError, match="controls"):
        widgets.explorer(draw)
    with pytest.raises(TypeError, match="control 'a'"):
        widgets.explorer(draw, a=w.Text("x"))
    with pytest.raises(TypeError, match="control 'a'"):
        widgets.explorer(draw, a=3)
    with pytest.raises(ValueError, match="precompute"):
        widgets.explorer(draw, precompute={"b": [1]}, **controls())
    with pytest.raises(ValueError, match=r"precompute\['a'\]"):
        widgets.explorer(draw, precompute={"a": [0.55]}, **controls())
    with pytest.raises(ValueError, match="max_figures"):
        widgets.explorer(draw, max_figures=0, **controls())
    with pytest.raises(ValueError, match="precompute asks for"):
        widgets.explorer(draw, max_figures=2, precompute={"a": [0.0, 0.5, 2.0]}, **controls())
