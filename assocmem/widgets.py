"""ipywidgets explorers: sliders and menus that redraw a figure from package functions."""

from __future__ import annotations

from collections.abc import Callable

import ipywidgets as widgets
import matplotlib.pyplot as plt


def explorer(draw: Callable, **controls) -> widgets.VBox:
    """An explorer that calls ``draw(**values)`` whenever a control changes.

    ``controls`` maps each keyword of ``draw`` to an ipywidgets control (``FloatSlider``,
    ``Dropdown``, ...). ``draw`` makes a matplotlib figure; the explorer shows it in an output area
    below the controls. The first drawing happens at once, so the saved notebook shows a figure;
    make the explorer the last expression of its cell so Jupyter displays it.
    """
    if not controls:
        raise ValueError("controls must name at least one control")
    for name, control in controls.items():
        if not isinstance(control, widgets.ValueWidget):
            raise TypeError(f"control {name!r} must be an ipywidgets value widget, got {control!r}")
        control.description = control.description or name
        control.style = {"description_width": "initial"}
    output = widgets.Output()

    def redraw(_change=None):
        with output:
            output.clear_output(wait=True)
            draw(**{name: control.value for name, control in controls.items()})
            plt.show()

    for control in controls.values():
        control.observe(redraw, names="value")
    redraw()
    box = widgets.VBox([widgets.HBox(list(controls.values()), layout={"flex_flow": "row wrap"}), output])
    return box
