"""assocmem.plotting: figures fit the book's column, legends go off the data, the style is applied."""

import matplotlib

matplotlib.use("Agg")

import matplotlib as mpl  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from assocmem import plotting  # noqa: E402


@pytest.mark.parametrize("ncols, width, expected", [(1, 4.2, 4.2), (2, 4.2, plotting.COLUMN_WIDTH),
                                                    (3, 3.9, plotting.COLUMN_WIDTH), (1, 5.2, 5.2)])
def test_figure_never_wider_than_the_column(ncols, width, expected):
    fig, axes = plotting.figure(ncols, width=width, height=3.0)
    try:
        assert fig.get_size_inches() == pytest.approx((expected, 3.0))
        assert len(np.atleast_1d(axes)) == ncols
    finally:
        plt.close(fig)


def test_importing_applies_the_book_style():
    plotting.use_book_style()
    for key, value in plotting.STYLE.items():
        assert mpl.rcParams[key] == value, key


@pytest.mark.parametrize("where", ["below", "right", "above"])
def test_legend_outside_does_not_cover_the_data(where):
    fig, ax = plotting.figure()
    try:
        x = np.logspace(0, 3, 30)
        plotting.loglog(ax, "x", "y", "title")
        ax.plot(x, x ** -0.5, label="a long label for a curve")
        ax.plot(x, x ** -1.0, label="another")
        assert plotting.legend_outside(ax, where) is None
        fig.canvas.draw()
        legend = ax.get_legend().get_window_extent()
        frame = ax.get_window_extent()
        assert not legend.overlaps(frame), (legend, frame)
        assert len(ax.get_legend().get_texts()) == 2
    finally:
        plt.close(fig)


def test_legend_outside_rejects_an_unknown_place():
    fig, ax = plotting.figure()
    try:
        with pytest.raises(ValueError, match="where"):
            plotting.legend_outside(ax, "inside")
    finally:
        plt.close(fig)
