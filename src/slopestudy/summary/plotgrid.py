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

from slopestudy.config import SLOPED_ACTS  # noqa: E402

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


# --- a cell in words ---------------------------------------------------------------------------
# what a figure says for a config value ("" = nothing: the plain default of a key that varies)
_WORDS = {
    "init": {"kaiming": "He init", "pytorch": "default init", "xavier": "Xavier init", "lecun": "LeCun init",
             "scaled": "σ²-scaled init"},
    "act": {"leaky_relu": "LeakyReLU", "prelu": "PReLU", "gelu": "GELU", "selu": "SELU", "tanh": "tanh",
            "elu": "ELU", "silu": "SiLU"},
    "norm": {"none": "", "layer": "LayerNorm", "batch": "BatchNorm"},
    "slope_rule": {"fixed": "", "tat": "TAT slope"},
    "prelu_params": {"layer": "one slope per layer", "unit": "one slope per unit"},
    "optimizer": {"sgd": "SGD", "adam": "Adam"},
    "data.name": {"mnist": "MNIST", "fashion": "Fashion-MNIST"},
}  # fmt: skip
_NUMBERS = {"depth": "depth {}", "width": "width {}", "lr": "lr {}", "init_gain": "σ²={}",
            "momentum": "momentum {}", "bias_shift": "bias shift {}", "epochs": "{} epochs",
            "batch_size": "batch {}"}  # fmt: skip
# the order a label reads in, whatever order the keys come in; keys not named here follow
_ORDER = ("depth", "width", "init", "init_gain", "act", "slope", "slope_rule", "prelu_params", "norm",
          "residual", "residual_branch", "bias_shift", "optimizer", "lr", "momentum")  # fmt: skip
_SLOPED = {str(a) for a in SLOPED_ACTS}


def _unset(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


def _true(v) -> bool:
    return str(v).strip().lower() in ("true", "1", "1.0")


def has_slope(act) -> bool:
    """Whether an activation has a negative slope (None, unset: LeakyReLU, the default)."""
    return _unset(act) or str(act) in _SLOPED


def slope_label(slope, act=None) -> str:
    """A legend entry for a slope: `a=0.2`, or `no slope` for an activation without one (GELU,
    SELU, tanh carry the config's default slope, which they never use)."""
    return f"a={float(slope):g}" if has_slope(act) else "no slope"


def _number(v) -> str:
    return f"{float(v):g}" if isinstance(v, int | float) or str(v).replace(".", "", 1).isdigit() else str(v)


def figure_label(cell: dict) -> str:
    """A cell's fixed keys in words, for a panel title or a legend: {init: kaiming, act: gelu,
    norm: layer, residual: False} -> "He init, GELU, LayerNorm". Defaults that only say "not
    this fix" (norm none, no skips, a fixed slope) say nothing; a slope shows only with an
    activation that has one; an unknown key reads k=v. "" when nothing is left to say."""
    act = cell.get("act")
    parts = []
    for key in sorted(cell, key=lambda k: _ORDER.index(k) if k in _ORDER else len(_ORDER)):
        v = cell[key]
        if _unset(v):
            continue
        if key == "slope":
            if has_slope(act) and "act" not in cell:  # with an act, the act says it
                parts.append(f"a={_number(v)}")
        elif key == "act":
            word = _WORDS["act"].get(str(v), str(v))
            slope = cell.get("slope")
            if has_slope(v) and not _unset(slope):
                word += f" from a={_number(slope)}" if str(v) == "prelu" else f" a={_number(slope)}"
            parts.append(word)
        elif key == "residual":
            if _true(v):
                parts.append("pre-act skips" if str(cell.get("residual_branch")) == "act_linear" else "skips")
        elif key == "residual_branch":
            if "residual" not in cell and str(v) == "act_linear":  # skips everywhere: which kind
                parts.append("pre-act skips")
        elif key in _WORDS:
            parts.append(_WORDS[key].get(str(v), f"{key}={v}"))
        elif key in _NUMBERS:
            parts.append(_NUMBERS[key].format(_number(v)))
        else:
            parts.append(f"{key}={_number(v)}")
    return ", ".join(p for p in parts if p)
