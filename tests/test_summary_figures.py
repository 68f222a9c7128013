"""Summary figures: which are drawn (one gate, when summarizing and when redrawing a committed
summary), what decay_vs_slope compares, and titles and legends in words (figure_label).

Summaries are made from runs frames directly (cells.make_summary), as publish.redraw makes them
from a committed runs.csv: no run.json is needed."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest

from slopestudy.config import Init, StudyConfig
from slopestudy.science.profiles import theory_decay_per_layer
from slopestudy.study.publish import redraw
from slopestudy.summary import figures as figs
from slopestudy.summary.cells import make_summary
from slopestudy.summary.plotgrid import figure_label, slope_label

# a figure of runs without per-layer norms (a runs.csv) draws panels with no labelled lines
pytestmark = pytest.mark.filterwarnings("ignore:No artists with labels:UserWarning")


def runs_frame(grid: dict, epochs: int = 6, acc: float = 0.95, seeds: int = 2, **fixed) -> pd.DataFrame:
    """One completed run per combination of `grid` and seed, with plausible results: `acc` the
    accuracy (0.1 with a loss above chance's: at chance), no end-of-training numbers where
    epochs == 0 (a step-0 probe)."""
    keys = ["slope", "depth", *[k for k in grid if k not in ("slope", "depth")]]
    grid = {"slope": [0.0, 0.2], "depth": [5, 10], **grid}
    rows = []
    for values in itertools.product(*(grid[k] for k in keys), range(seeds)):
        row = {"width": 32, "init": "kaiming", "act": "leaky_relu", "norm": "none", "residual": False,
               "lr": 0.01, "optimizer": "sgd", **fixed,
               **dict(zip(keys, values[:-1], strict=True))}  # fmt: skip
        trained = epochs > 0
        loss = 0.2 if acc > 0.2 else 2.35
        row.update(seed=values[-1], epochs=epochs, status="completed", val_acc=acc, val_loss=loss,
                   test_acc=acc, test_loss=loss, decay_step0=0.1 + 0.01 * values[-1], decay_theory=0.1,
                   decay_end=0.05 if trained else np.nan, dead_frac_step0=0.3,
                   dead_frac_end=0.4 if trained else np.nan,
                   steps_to_90=100 if trained else np.nan)  # fmt: skip
        rows.append(row)
    return pd.DataFrame(rows)


def epochs_frame(runs: pd.DataFrame) -> pd.DataFrame:
    """epochs.csv of these runs: validation accuracy after each epoch, rising to the run's own."""
    return pd.DataFrame(
        [{"run": i, "epoch": e, "step": 100 * e, "val_acc": r["val_acc"] * (0.5 + e / (2 * r["epochs"])),
          "test_acc": r["test_acc"]} for i, r in runs.iterrows() for e in range(r["epochs"] + 1)]
    )  # fmt: skip


def drawn(summary, tmp_path, **kw) -> set[str]:
    summary.out_dir = tmp_path
    return {p.stem for p in figs.draw_all(summary, **kw)}


def titles(fig) -> list[str]:
    return [ax.get_title() for ax in fig.axes if ax.get_visible() and ax.get_subplotspec() is not None]


def legend_labels(fig) -> set[str]:
    return {t.get_text() for ax in fig.axes if ax.get_legend() for t in ax.get_legend().get_texts()}


# --- which figures are drawn -------------------------------------------------------------------
def test_step0_probes_get_no_accuracy_figures_and_their_dead_units_are_at_init(tmp_path):
    runs = runs_frame({"init": ["kaiming", "pytorch"]}, epochs=0)
    s = make_summary(runs, tmp_path)
    assert figs.not_applicable(s).keys() == {"test_acc_vs_depth", "val_curves"}
    (tmp_path / "test_acc_vs_depth.png").write_bytes(b"\x89PNG stale")  # an earlier summary's
    names = drawn(s, tmp_path)
    assert "test_acc_vs_depth" not in names and {"decay_heatmap", "dead_frac_vs_depth"} <= names
    assert not (tmp_path / "test_acc_vs_depth.png").exists()
    fig = figs.dead_frac_vs_depth(s)
    assert fig._suptitle.get_text().endswith("at init") and "end" not in fig._suptitle.get_text()
    trained = figs.dead_frac_vs_depth(make_summary(runs_frame({"init": ["kaiming"]}), tmp_path))
    assert "end (solid), init (dotted)" in trained._suptitle.get_text()


def test_a_sweep_where_no_run_learned_gets_no_accuracy_figures(tmp_path):
    runs = runs_frame({}, epochs=6, acc=0.1)  # every run at chance
    s = make_summary(runs, tmp_path, epochs=epochs_frame(runs))
    assert "at chance" in figs.not_applicable(s)["test_acc_vs_depth"]
    assert drawn(s, tmp_path).isdisjoint({"test_acc_vs_depth", "val_curves"})
    learned = runs_frame({}, epochs=6)
    s = make_summary(learned, tmp_path, epochs=epochs_frame(learned))
    assert figs.not_applicable(s) == {} and {"test_acc_vs_depth", "val_curves"} <= drawn(s, tmp_path)


def test_a_heatmap_of_48_panels_is_drawn_its_colour_bar_is_not_a_panel(tmp_path):
    s = make_summary(runs_frame({"width": list(range(8, 8 + 48))}, seeds=1), tmp_path)
    only = tuple(set(figs.FIGURES) - {"decay_heatmap"})
    assert drawn(s, tmp_path, skip=only) == {"decay_heatmap"}
    s = make_summary(runs_frame({"width": list(range(8, 8 + 49))}, seeds=1), tmp_path)
    assert drawn(s, tmp_path, skip=only) == set()


# --- decay_vs_slope ----------------------------------------------------------------------------
def test_decay_vs_slope_needs_two_slopes_per_init(tmp_path):
    one_slope = runs_frame({"init": ["kaiming", "pytorch"], "slope": [0.01]})
    assert figs.decay_vs_slope(make_summary(one_slope, tmp_path)) is None
    # an init with one slope is left out; one with two is compared with its theory
    mixed = pd.concat([one_slope[one_slope["init"] == "pytorch"], runs_frame({"init": ["kaiming"]})])
    fig = figs.decay_vs_slope(make_summary(mixed.reset_index(drop=True), tmp_path))
    assert legend_labels(fig) == {"He init"}


def test_decay_vs_slope_gives_each_init_gain_its_own_theory_curve(tmp_path):
    runs = runs_frame({"init_gain": [1.0, 2.0]}, init="scaled")
    fig = figs.decay_vs_slope(make_summary(runs, tmp_path))
    assert legend_labels(fig) == {"σ²-scaled init, σ²=1", "σ²-scaled init, σ²=2"}
    dashed = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert len(dashed) == 2
    for line, gain in zip(dashed, (1.0, 2.0), strict=True):
        expected = theory_decay_per_layer(StudyConfig(init=Init.scaled, init_gain=gain, slope=0.0, width=32))
        assert line.get_ydata()[0] == pytest.approx(expected)
    assert dashed[0].get_ydata()[0] != pytest.approx(dashed[1].get_ydata()[0])
    # one sigma^2 in the whole sweep: still the runs' own, not the config's default (2)
    fig = figs.decay_vs_slope(make_summary(runs_frame({}, init="scaled", init_gain=1.0), tmp_path))
    (dashed,) = [line for line in fig.axes[0].get_lines() if line.get_linestyle() == "--"]
    assert dashed.get_ydata()[0] == pytest.approx(
        theory_decay_per_layer(StudyConfig(init=Init.scaled, init_gain=1.0, slope=0.0, width=32))
    )


# --- publish.redraw ----------------------------------------------------------------------------
def committed_summary(folder, runs: pd.DataFrame, epochs: pd.DataFrame | None = None, stale=()):
    folder.mkdir(parents=True)
    runs.to_csv(folder / "runs.csv", index=False)
    if epochs is not None:
        epochs.to_csv(folder / "epochs.csv", index=False)
    for name in stale:  # figures an older code drew
        (folder / f"{name}.png").write_bytes(b"\x89PNG stale")
    return folder


def test_redraw_deletes_the_figures_that_no_longer_apply(tmp_path):
    runs = runs_frame({"init": ["kaiming", "pytorch"], "slope": [0.01]}, epochs=0)
    stale = ("test_acc_vs_depth", "val_curves", "decay_vs_slope", "decay_heatmap", "signal_norm_step0")
    folder = committed_summary(tmp_path / "probe", runs, stale=stale)
    written = {p.stem for p in redraw(folder)}
    left = {p.stem for p in folder.glob("*.png")}
    assert {"decay_heatmap", "dead_frac_vs_depth"} <= written <= left
    # step-0 probes: no accuracy figures; one slope per init: no decay_vs_slope
    assert left.isdisjoint({"test_acc_vs_depth", "val_curves", "decay_vs_slope"})
    assert "signal_norm_step0" in left  # drawn from the sweep folders only: not redrawn, kept


def test_redraw_draws_val_curves_where_the_summary_keeps_epochs_csv(tmp_path):
    runs = runs_frame({"init": ["kaiming", "pytorch"]})
    with_epochs = committed_summary(tmp_path / "a", runs, epochs_frame(runs))
    assert "val_curves" in {p.stem for p in redraw(with_epochs)}
    assert (with_epochs / "val_curves.png").read_bytes()[:4] == b"\x89PNG"
    without = committed_summary(tmp_path / "b", runs, stale=("val_curves",))
    assert "val_curves" not in {p.stem for p in redraw(without)}
    assert (without / "val_curves.png").read_bytes() == b"\x89PNG stale"  # it needs the sweep folders


# --- titles and legends in words ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ({"init": "kaiming", "act": "leaky_relu", "slope": 0.2}, "He init, LeakyReLU a=0.2"),
        ({"init": "pytorch", "act": "gelu", "slope": 0.01, "norm": "none", "residual": False},
         "default init, GELU"),
        ({"init": "lecun", "act": "selu", "slope": 0.01}, "LeCun init, SELU"),
        ({"init": "xavier", "act": "tanh"}, "Xavier init, tanh"),
        ({"init": "pytorch", "act": "leaky_relu", "norm": "layer", "residual": "False"},
         "default init, LeakyReLU, LayerNorm"),
        ({"norm": "batch"}, "BatchNorm"),
        ({"residual": True, "residual_branch": "act_linear"}, "pre-act skips"),
        ({"residual": "True", "residual_branch": "linear_act"}, "skips"),
        ({"residual": False, "residual_branch": "act_linear", "slope_rule": "tat"}, "TAT slope"),
        ({"slope_rule": "fixed"}, ""),
        ({"lr": 0.01, "optimizer": "adam"}, "Adam, lr 0.01"),
        ({"depth": 30, "width": 256}, "depth 30, width 256"),
        ({"act": "prelu", "slope": 0.25, "prelu_params": "unit"}, "PReLU from a=0.25, one slope per unit"),
        ({"prelu_params": "layer"}, "one slope per layer"),
        ({"init": "scaled", "init_gain": 1.4}, "σ²-scaled init, σ²=1.4"),
        ({"bias_shift": 0.1, "tat_eta": 0.9}, "bias shift 0.1, tat_eta=0.9"),
        ({"residual_branch": float("nan"), "norm": None}, ""),
        ({}, ""),
    ],
)  # fmt: skip
def test_figure_label_says_a_cell_in_words(cell, words):
    assert figure_label(cell) == words


def test_slope_labels_hide_the_default_slope_of_an_activation_without_one():
    assert slope_label(0.2) == slope_label(0.2, "leaky_relu") == slope_label(0.2, "prelu") == "a=0.2"
    assert slope_label(0.01, "gelu") == slope_label(0.01, "selu") == slope_label(0.01, "tanh") == "no slope"


def test_panel_titles_and_legends_are_words_not_config_strings(tmp_path):
    # a fixes sweep: each fix its own panel; GELU carries the config's default slope, 0.01
    leaky = runs_frame({"init": ["pytorch"], "norm": ["none", "layer"]})
    gelu = runs_frame({"slope": [0.01]}, act="gelu", init="kaiming")
    runs = pd.concat([leaky, gelu], ignore_index=True)
    s = make_summary(runs, tmp_path, epochs=epochs_frame(runs))
    panels = {"default init, LeakyReLU", "default init, LeakyReLU, LayerNorm", "He init, GELU"}
    for draw in (figs.accuracy_vs_depth, figs.dead_frac_vs_depth, figs.decay_heatmap):
        fig = draw(s)
        assert set(titles(fig)) == panels, draw.__name__
        plt.close(fig)
    fig = figs.val_curves(s)
    assert set(titles(fig)) == {f"depth {d}, {p}" for d in (5, 10) for p in panels}
    assert legend_labels(fig) == {"a=0", "a=0.2", "no slope"}  # never "a=0.01" for GELU
    heat = figs.decay_heatmap(s)
    gelu_ax = next(ax for ax in heat.axes if ax.get_title() == "He init, GELU")
    assert gelu_ax.get_xlabel() == "(no slope)" and [t.get_text() for t in gelu_ax.get_xticklabels()] == [""]
    plt.close("all")


def test_a_sweep_of_slopes_and_depths_only_has_no_placeholder_titles(tmp_path):
    runs = runs_frame({})
    s = make_summary(runs, tmp_path, epochs=epochs_frame(runs))
    for draw in (figs.accuracy_vs_depth, figs.dead_frac_vs_depth, figs.decay_heatmap):
        assert titles(draw(s)) == [""]
    assert titles(figs.val_curves(s)) == ["depth 5", "depth 10"]
    plt.close("all")


def test_prelu_panels_are_titled_in_words(tmp_path):
    s = make_summary(runs_frame({"init": ["kaiming"]}, act="prelu"), tmp_path)
    s.prelu = pd.DataFrame([{"slope": 0.25, "depth": 5, "init": "kaiming", "prelu_params": "layer",
                             "layer": i, "n": 2, "learned_slope": 0.2, "learned_slope_lo": 0.1,
                             "learned_slope_hi": 0.3} for i in range(4)])  # fmt: skip
    assert titles(figs.prelu_slopes(s)) == ["He init, PReLU from a=0.25, one slope per layer"]
    plt.close("all")
