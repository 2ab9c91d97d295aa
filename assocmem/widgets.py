"""Explorers: controls that redraw a figure, working both in Jupyter and in the static HTML book.

A reader of the HTML has no kernel, so an explorer precomputes its figures on a small grid of its
controls' values when the chapter executes; the controls pick among the stored images in the browser
(ipywidgets ``jslink`` to nested ``Stack`` widgets, saved in the notebook's widget state and run by the
widget manager in the page). In Jupyter, the first change of a control switches the explorer to live
mode: the original controls (full resolution) replace the snapped ones and every change redraws.
"""

from __future__ import annotations

import io
import itertools
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

#: Default cap on the bytes of PNG data one explorer stores in the widget state; with the controls,
#: links and base64 overhead a page with one explorer stays below 3 MB of widget state.
BUDGET_BYTES = 2_000_000
#: Default cap on the number of precomputed figures (bounds the chapter's execution time).
MAX_FIGURES = 24
#: Resolution of the stored images, in pixels per inch of figure (2x the screen's 100 px/inch).
IMAGE_DPI = 200

_SLIDERS = (widgets.IntSlider, widgets.FloatSlider, widgets.FloatLogSlider)
_BOOLEANS = (widgets.Checkbox, widgets.ToggleButton)


@dataclass
class _Axis:
    """One control's full set of positions and the subset precomputed for the HTML."""

    name: str
    control: widgets.ValueWidget
    labels: list[str]
    values: list
    default: int                 # index of the control's initial value in ``values``
    chosen: list[int] | None = None   # indices precomputed, ascending, containing ``default``


def explorer(draw: Callable, *, precompute: dict | None = None, max_figures: int = MAX_FIGURES,
             budget_bytes: int = BUDGET_BYTES, **controls) -> widgets.VBox:
    """An explorer of ``draw(**values)`` over the values of ``controls``, live in Jupyter and
    precomputed for the static HTML.

    When the cell runs, ``draw`` is called on a grid of the controls' values (the product of a few
    values per control, at most ``max_figures`` figures, always including the controls' initial
    values); each figure is stored as a PNG in the widget state, so the saved notebook and the HTML
    book show the explorer working with no kernel. In the page the controls *snap* to the precomputed
    values: a slider becomes a selection slider over its precomputed positions, a menu keeps the options
    that were precomputed, a check box becomes a pair of toggle buttons. In Jupyter, the first change
    of a control switches to live mode: the original controls, with all their positions and options,
    replace the snapped ones and each change calls ``draw`` again.

    How the grid is chosen (unless ``precompute`` names the values): every control starts with its initial
    value; then, repeatedly, the control with the fewest values so far (ties: the first one given)
    gains one, as long as the product stays within the figure budget. A menu or check box gains its
    options in order; a slider with ``k`` precomputed values uses ``k`` positions evenly spread over
    its range (snapped to its step), with the nearest one replaced by the initial value.

    Parameters
    ----------
    draw : callable
        Called with one keyword per control; makes one matplotlib figure (e.g. with
        :func:`assocmem.plotting.figure`) and returns nothing. Keep it cheap (well under a second):
        it runs up to ``max_figures`` times when the chapter executes.
    precompute : dict, optional
        Maps control names to the values to precompute for them (each must be one of the control's
        positions or options); the other controls get the automatic grid. The product of the sizes
        must stay within ``max_figures``.
    max_figures : int
        The most figures precomputed (default 24).
    budget_bytes : int
        The most bytes of PNG data stored (default 2 MB, which keeps one explorer's page under
        3 MB of widget state). The budget is checked against the size of the first figure, and the
        figure count lowered to fit; a warning says when the drawn figures exceed it.
    **controls : ipywidgets.ValueWidget
        One control per keyword of ``draw`` (any name but ``precompute``, ``max_figures`` and
        ``budget_bytes``): ``IntSlider``, ``FloatSlider``, ``FloatLogSlider``,
        ``Checkbox``, ``ToggleButton``, or a selection widget (``Dropdown``, ``SelectionSlider``,
        ``RadioButtons``, ``ToggleButtons``, ``Select``). Its description (or the keyword) labels it.

    Returns
    -------
    ipywidgets.VBox
        The explorer; make it the last expression of its cell so Jupyter displays it.
    """
    if not callable(draw):
        raise TypeError(f"draw must be callable, got {draw!r}")
    if not controls:
        raise ValueError("controls must name at least one control")
    if isinstance(max_figures, bool) or not isinstance(max_figures, int) or max_figures < 1:
        raise ValueError(f"max_figures must be a positive integer, got {max_figures!r}")
    if isinstance(budget_bytes, bool) or not isinstance(budget_bytes, int) or budget_bytes < 1:
        raise ValueError(f"budget_bytes must be a positive integer, got {budget_bytes!r}")
    precompute = dict(precompute or {})
    unknown = sorted(set(precompute) - set(controls))
    if unknown:
        raise ValueError(f"precompute names {unknown}, which are not controls "
                         f"(controls: {sorted(controls)})")
    axes = [_axis(name, control) for name, control in controls.items()]
    for axis in axes:
        axis.control.description = axis.control.description or axis.name
        axis.control.style = {"description_width": "initial"}
        if axis.name in precompute:
            axis.chosen = _chosen_from(axis, precompute[axis.name])

    first = _render(draw, {a.name: a.values[a.default] for a in axes})
    fixed = math.prod(len(a.chosen) for a in axes if a.chosen is not None)
    count = min(max_figures, max(1, budget_bytes // max(1, int(1.25 * len(first)))))
    if fixed > count:
        raise ValueError(f"precompute asks for {fixed} figures, more than the budget of {count} "
                         f"(max_figures={max_figures}, budget_bytes={budget_bytes})")
    _allocate(axes, count)

    images = {}
    for combo in itertools.product(*(a.chosen for a in axes)):
        if all(i == a.default for i, a in zip(combo, axes, strict=True)):
            png = first
        else:
            png = _render(draw, {a.name: a.values[i] for i, a in zip(combo, axes, strict=True)})
        images[combo] = widgets.Image(value=png, format="png", width=str(_css_width(png)),
                                      layout=widgets.Layout(max_width="100%", height="auto"))
    stored = sum(len(image.value) for image in images.values())
    if stored > budget_bytes:
        warnings.warn(f"explorer stores {stored} bytes of figures, over budget_bytes={budget_bytes}; "
                      "pass a smaller max_figures or precompute fewer values", stacklevel=2)

    snapped = [_snapped(a) for a in axes]
    links = []
    view = _stack(axes, snapped, images, (), links)
    note = widgets.HTML(f"<small>Precomputed: {len(images)} figures "
                        f"({_grid_text(axes)}). Run the notebook to explore every value.</small>")
    output = widgets.Output()
    row = widgets.HBox(snapped, layout={"flex_flow": "row wrap"})
    box = widgets.VBox([row, note, view])
    box.add_class("assocmem-explorer")
    box._assocmem_links = links   # kept for live mode, which closes them

    def redraw(_change=None):
        with output:
            output.clear_output(wait=True)
            draw(**{a.name: a.control.value for a in axes})
            plt.show()

    def go_live(_change):
        for control in snapped:
            control.unobserve(go_live, names="value")
        for axis, control in zip(axes, snapped, strict=True):
            axis.control.value = control.value
            axis.control.observe(redraw, names="value")
        for link in links:
            link.unlink()
        row.children = [a.control for a in axes]
        note.value = "<small>Live: every change redraws.</small>"
        box.children = [row, note, output]
        redraw()

    for control in snapped:
        control.observe(go_live, names="value")
    return box


def _axis(name: str, control) -> _Axis:
    if not isinstance(control, widgets.ValueWidget):
        raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {control!r}")
    if isinstance(control, _SLIDERS):
        lo, hi, step = control.min, control.max, control.step
        if not step or step <= 0:
            raise ValueError(f"control {name!r} needs a positive step, got {step!r}")
        n = int(math.floor((hi - lo) / step + 1e-9)) + 1
        exponents = [lo + k * step for k in range(n)]
        if isinstance(control, widgets.IntSlider):
            values = [int(v) for v in exponents]
        else:
            digits = max(0, -math.floor(math.log10(step)) + 2)
            values = [round(v, digits) for v in exponents]
            if isinstance(control, widgets.FloatLogSlider):
                values = [float(control.base) ** v for v in values]
        current = control.value
        if isinstance(control, widgets.FloatLogSlider):
            target = math.log(current, control.base) if current > 0 else lo
            default = int(np.argmin([abs(e - target) for e in exponents]))
        else:
            default = int(np.argmin([abs(v - current) for v in values]))
        fmt = control.readout_format
        return _Axis(name, control, [format(v, fmt) for v in values], values, default)
    if isinstance(control, _BOOLEANS):
        return _Axis(name, control, ["off", "on"], [False, True], int(bool(control.value)))
    if isinstance(control, widgets.widget_selection._Selection):
        values = list(control._options_values)
        labels = [str(label) for label in control._options_labels]
        if not values:
            raise ValueError(f"control {name!r} has no options")
        return _Axis(name, control, labels, values, control.index or 0)
    raise TypeError(f"control {name!r}: explorers support sliders, check boxes and selection widgets, "
                    f"got {type(control).__name__}")


def _chosen_from(axis: _Axis, wanted) -> list[int]:
    wanted = list(wanted) if not isinstance(wanted, str) else [wanted]
    chosen = set()
    for value in wanted:
        matches = [i for i, v in enumerate(axis.values)
                   if v == value or (isinstance(v, float) and isinstance(value, (int, float))
                                     and math.isclose(v, value, rel_tol=1e-9, abs_tol=1e-12))]
        if not matches:
            raise ValueError(f"precompute[{axis.name!r}] value {value!r} is not a position of the control "
                             f"(positions: {axis.labels[:5]}{' ...' if len(axis.labels) > 5 else ''})")
        chosen.add(matches[0])
    chosen.add(axis.default)
    return sorted(chosen)


def _spread(axis: _Axis, k: int) -> list[int]:
    """``k`` indices evenly spread over the axis, snapped to positions, containing the default."""
    n = len(axis.values)
    if k >= n:
        return list(range(n))
    if k == 1:
        return [axis.default]
    if axis.control is not None and not isinstance(axis.control, _SLIDERS):
        others = [i for i in range(n) if i != axis.default][: k - 1]
        return sorted([axis.default, *others])
    picks = sorted({round(j * (n - 1) / (k - 1)) for j in range(k)})
    nearest = min(picks, key=lambda i: (abs(i - axis.default), i))
    picks[picks.index(nearest)] = axis.default
    return sorted(set(picks))


def _allocate(axes: list[_Axis], count: int) -> None:
    """Give each control without a grid a number of values, the product staying within ``count``."""
    free = [a for a in axes if a.chosen is None]
    sizes = {a.name: 1 for a in free}
    fixed = math.prod(len(a.chosen) for a in axes if a.chosen is not None)
    while True:
        grown = False
        for axis in sorted(free, key=lambda a: sizes[a.name]):
            if sizes[axis.name] >= len(axis.values):
                continue
            trial = dict(sizes, **{axis.name: sizes[axis.name] + 1})
            if fixed * math.prod(trial.values()) <= count:
                sizes = trial
                grown = True
                break
        if not grown:
            break
    for axis in free:
        axis.chosen = _spread(axis, sizes[axis.name])


def _render(draw: Callable, values: dict) -> bytes:
    """PNG bytes of the figure ``draw(**values)`` makes (the last one it opens); closes its figures."""
    before = set(plt.get_fignums())
    with plt.ioff():
        draw(**values)
    new = [n for n in plt.get_fignums() if n not in before]
    if not new:
        raise ValueError(f"draw({values}) made no matplotlib figure")
    buffer = io.BytesIO()
    plt.figure(new[-1]).savefig(buffer, format="png", dpi=IMAGE_DPI, bbox_inches="tight")
    for n in new:
        plt.close(n)
    return _compress(buffer.getvalue())


def _compress(png: bytes) -> bytes:
    """The PNG with an adaptive 256-colour palette (line figures lose nothing visible, a third the size)."""
    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        quantized = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        out = io.BytesIO()
        quantized.save(out, format="png", optimize=True, dpi=(IMAGE_DPI, IMAGE_DPI))
    return out.getvalue() if out.tell() < len(png) else png


def _css_width(png: bytes) -> int:
    """Display width in CSS pixels: the image's pixels at 100 px per inch of figure."""
    width = int.from_bytes(png[16:20], "big")
    return max(1, round(width * 100 / IMAGE_DPI))


def _snapped(axis: _Axis):
    """The control shown in the page: the precomputed values of ``axis`` only."""
    options = [(axis.labels[i], axis.values[i]) for i in axis.chosen]
    common = dict(options=options, value=axis.values[axis.default],
                  description=axis.control.description, style={"description_width": "initial"},
                  disabled=len(options) == 1)
    if isinstance(axis.control, _SLIDERS):
        return widgets.SelectionSlider(continuous_update=False, **common)
    if isinstance(axis.control, _BOOLEANS):
        return widgets.ToggleButtons(**common)
    kind = type(axis.control)
    return kind(**common)


def _stack(axes, snapped, images, prefix: tuple, links: list):
    """Nested ``Stack`` widgets: level ``k`` is selected by control ``k`` through ``jslink``."""
    level = len(prefix)
    if level == len(axes):
        return images[prefix]
    children = [_stack(axes, snapped, images, (*prefix, i), links) for i in axes[level].chosen]
    stack = widgets.Stack(children, selected_index=axes[level].chosen.index(axes[level].default))
    links.append(widgets.jslink((snapped[level], "index"), (stack, "selected_index")))
    return stack


def _grid_text(axes) -> str:
    return "; ".join(f"{a.control.description or a.name}: "
                     + ", ".join(a.labels[i] for i in a.chosen) for a in axes)
