"""Panels in rows: the layout every summary figure shares.

At most MAX_COLS panels in a row; panels that share a meaning share one y axis (sharey over the
whole figure, not per row); y labels on each row's first panel; constrained layout, so titles
and colour bars never overlap.
"""

from __future__ import annotations

import math
import textwrap

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

MAX_COLS = 4  # panels per row: a wider strip is unreadable once it is shrunk to a page
CHANCE = 0.1  # accuracy of a 10-class guess (MNIST, Fashion-MNIST)


def grid(n: int, width: float, height: float, ncols: int | None = None, sharey: bool = True):
    """A figure of n panels in rows of at most MAX_COLS (or `ncols`), one y axis shared by all
    of them; unused cells hidden. Returns (fig, the n axes in reading order)."""
    ncols = max(1, min(ncols or MAX_COLS, MAX_COLS, n))
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, sharey=sharey, layout="constrained",
                             figsize=(width * ncols, height * nrows))  # fmt: skip
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.set_visible(False)
    return fig, flat[:n]


def rows_by_variant(variants_: list, depths: list) -> tuple[list, int]:
    """(variant label, rows, depth) panels, each variant starting a new row: padded with None."""
    ncols = min(MAX_COLS, len(depths))
    panels = []
    for label, part in variants_:
        row = [(label, part[part["depth"] == d], d) for d in depths]
        panels += row + [None] * (-len(row) % ncols)
    return panels, ncols


def finish(fig: plt.Figure, axes: list, ylabel: str, title: str, legend: dict | None = None) -> plt.Figure:
    """y label on each row's first panel, the legend on the first panel (and on any later panel
    that draws a label the panels before it did not: cells that differ in their slopes), a title."""
    shown: set[str] = set()
    for i, ax in enumerate(axes):
        if ax.get_visible() and ax.get_subplotspec().is_first_col():
            ax.set_ylabel(ylabel, fontsize=8)
        labels = {label for label in ax.get_legend_handles_labels()[1] if not label.startswith("_")}
        if i == 0 or (ax.get_visible() and labels - shown):
            ax.legend(fontsize=7, **(legend or {}))
        shown |= labels
    # wrapped to the figure's width: a one-panel figure is narrower than most titles
    fig.suptitle(textwrap.fill(title, width=max(40, int(fig.get_figwidth() * 13))), fontsize=10)
    return fig


def slope_colors(slopes):
    cmap = plt.get_cmap("viridis")
    slopes = sorted(slopes)
    return {s: cmap(i / max(1, len(slopes) - 1)) for i, s in enumerate(slopes)}


def panel_title(ax, text: str, fontsize: int = 8) -> None:
    """A panel's title, wrapped so that long cell labels do not run into the next panel."""
    ax.set_title(textwrap.fill(text, width=48), fontsize=fontsize)
