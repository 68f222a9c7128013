"""Figures of a sweep summary (PNG), also written into TensorBoard as the run `summary`.

Each takes the typed Summary (its run, per-layer and per-epoch frames and its cells); none reads
a run.json. Panels that share a meaning share their y axis (and heatmaps one colour scale), at
most MAX_COLS panels in a row, and no axis limit hides the runs that stayed at chance.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from slopestudy.config import Init, StudyConfig  # noqa: E402
from slopestudy.run.records import Status
from slopestudy.science.profiles import theory_decay_per_layer  # noqa: E402
from slopestudy.summary.cells import Summary, learned, variants  # noqa: E402
from slopestudy.summary.collect import done  # noqa: E402
from slopestudy.summary.phase_figure import phase_diagram  # noqa: E402
from slopestudy.summary.plotgrid import (  # noqa: E402
    CHANCE,
    figure_label,
    finish,
    grid,
    has_slope,
    panel_title,
    rows_by_variant,
    slope_colors,
    slope_label,
)


def _variants(df, keys: list[str]) -> list[tuple[dict, object]]:
    """cells.variants' panels (the same rows, the same order), each named by its fixed keys as a
    dict for figure_label rather than by cells.variants' k=v label (which names the CSV files)."""
    others = [k for k in keys if k not in ("slope", "depth")]
    return [({k: part[k].iloc[0] for k in others}, part) for _, part in variants(df, keys)]


def _act(summary: Summary, part):
    """The activation of a panel's rows (or of the whole sweep, where it is not a cell key);
    None where it is not one."""
    for frame in (part, summary.runs):
        if "act" in frame and frame["act"].nunique(dropna=False) == 1:
            return frame["act"].iloc[0]
    return None


def _layer_values(summary: Summary, quantity: str, runs) -> np.ndarray:
    """(runs, layers) array of one per-layer quantity for these runs (rows of summary.runs)."""
    long = summary.layers
    if long.empty:
        return np.empty((0, 0))
    long = long[(long["quantity"] == quantity) & long["run"].isin(runs.index)]
    return long.pivot_table(index="run", columns="layer", values="value").to_numpy()


# --- per layer -------------------------------------------------------------------------------
def signal_norm_step0(summary: Summary) -> plt.Figure:
    """log10 ||dL/dz_l|| at step 0 per layer; a row of depths per variant, one y axis for all
    (a flat profile looks flat beside one that falls by decades); dashed: theory."""
    runs = done(summary.runs)
    panels, ncols = rows_by_variant(_variants(runs, summary.keys), sorted(runs["depth"].unique()))
    colors = slope_colors(runs["slope"].unique())
    fig, axes = grid(len(panels), 3.2, 2.8, ncols)
    for ax, panel in zip(axes, panels, strict=True):
        if panel is None or panel[1].empty:  # padding, or no run at this depth in this variant
            ax.set_visible(False)
            continue
        cell, part, depth = panel
        act = _act(summary, part)
        for slope, group in part.groupby("slope"):
            norms = _layer_values(summary, "signal_norm_step0", group)
            if norms.size == 0:
                continue
            with np.errstate(divide="ignore"):
                logs = np.log10(norms).mean(axis=0)  # geometric mean over seeds
            layers = np.arange(len(logs))
            ax.plot(layers, logs, "o-", ms=3, color=colors[slope], label=slope_label(slope, act))
            if depth >= 3 and np.isfinite(logs[depth - 2]):  # theory through the last hidden layer
                hidden = layers[:-1]
                theory = group["decay_theory"].iloc[0]
                ax.plot(
                    hidden, logs[depth - 2] - theory * (depth - 2 - hidden), "--", color=colors[slope], lw=1
                )
        panel_title(ax, figure_label({"depth": depth, **cell}))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("layer (0 = input side)", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return finish(fig, axes, "log10 ||dL/dz_l|| at step 0",
                   "Backprop signal norm per layer at initialization (mean over seeds; one y axis)",
                   {"title": "slope (dashed: theory)", "title_fontsize": 7})  # fmt: skip


def decay_heatmap(summary: Summary) -> plt.Figure:
    """Measured [theory] step-0 decay per layer over depth x slope, one colour scale for all."""
    agg = summary.agg
    tables = []
    for cell, part in _variants(agg, summary.keys):
        m, th = (part.pivot_table(index="depth", columns="slope", values=v, dropna=False)
                 for v in ("decay_step0_mean", "decay_theory_mean"))  # fmt: skip
        tables.append((cell, m, th, has_slope(_act(summary, part))))
    values = np.concatenate([m.to_numpy().ravel() for _, m, _, _ in tables])
    if not np.isfinite(values).any():  # depth < 3 everywhere: no hidden-layer fit
        fig, ax = plt.subplots(figsize=(4.2, 1.2))
        ax.set_axis_off()
        ax.set_title("no depth >= 3 to fit a decay", fontsize=9)
        return fig
    vmin, vmax = min(0.0, np.nanmin(values)), max(0.4, np.nanmax(values))  # 0.389: the worst theory
    # room for each cell's "measured\n[th theory]" text: a panel widens with its slopes, grows with its depths
    cols, rows = max(len(m.columns) for _, m, _, _ in tables), max(len(m.index) for _, m, _, _ in tables)
    fig, axes = grid(len(tables), max(4.0, 1.0 + 0.65 * cols), max(3.4, 1.2 + 0.4 * rows), sharey=False)
    for ax, (cell, m, th, sloped) in zip(axes, tables, strict=True):
        im = ax.imshow(m.values, cmap="magma_r", aspect="auto", vmin=vmin, vmax=vmax)
        # an activation without a slope carries the config's default one: no slope to show
        ax.set_xticks(range(len(m.columns)), [f"{s:g}" if sloped else "" for s in m.columns])
        ax.set_yticks(range(len(m.index)), m.index)
        for (i, j), v in np.ndenumerate(m.values):
            if np.isfinite(v):
                ax.text(j, i, f"{v:.3f}\n[th {th.values[i, j]:.3f}]", ha="center", va="center", fontsize=7,
                        color="white" if v > vmax / 2 else "black")  # fmt: skip
        ax.set_xlabel("negative slope a" if sloped else "(no slope)")
        ax.set_ylabel("depth")
        panel_title(ax, figure_label(cell), 9)
    fig.colorbar(im, ax=axes, label="decay/layer (log10)")
    fig.suptitle("Signal decay per layer at step 0, measured [theory]", fontsize=10)
    return fig


def decay_vs_slope(summary: Summary) -> plt.Figure | None:
    """Measured step-0 decay per layer against the slope (one marker per depth >= 5), with the
    mean-field curve -1/2 log10(sigma^2 (1+a^2)/2) per init (and per sigma^2, where an init=scaled
    sweep varies it): the study's headline comparison. None where no init has 2 slopes to compare
    (an init with one slope has no curve to compare against: it is left out)."""
    runs = done(summary.runs)[lambda d: d["depth"] >= 5]
    runs = runs[np.isfinite(runs["decay_step0"])]
    # the closed-form curve is LeakyReLU's in a plain stack: other activations, norms and skips
    # have their own theory (section 8's tables), and pooling them here would mislead
    # (PReLU starts at its slope, so at step 0 it is LeakyReLU)
    for key, plain in (("act", ("leaky_relu", "prelu")), ("norm", ("none",)), ("residual", (False,))):
        if key in runs:
            runs = runs[runs[key].fillna(plain[0]).isin(plain)]
    # one theory curve per init and sigma^2: runs at different init_gain (init=scaled) have different curves
    by = ["init"] + (["init_gain"] if "init_gain" in runs and runs["init_gain"].nunique() > 1 else [])
    groups = [(dict(zip(by, key if isinstance(key, tuple) else (key,), strict=True)), part)
              for key, part in runs.groupby(by)] if not runs.empty else []  # fmt: skip
    groups = [(cell, part) for cell, part in groups if part["slope"].nunique() >= 2]
    if not groups:
        return None  # no plain LeakyReLU net of depth >= 5 at 2 slopes or more: nothing to compare
    runs = pd.concat([part for _, part in groups])
    fig, ax = plt.subplots(figsize=(6.4 if len(groups) <= 4 else 8.4, 4.2), layout="constrained")
    grid_ = np.linspace(0, max(1.0, runs["slope"].max()), 200)
    cmap = plt.get_cmap("tab10" if len(groups) <= 10 else "viridis")
    colors = cmap.colors if len(groups) <= 10 else [cmap(i / (len(groups) - 1)) for i in range(len(groups))]
    for color, (cell, part) in zip(colors, groups, strict=False):
        means = part.groupby("slope")["decay_step0"].agg(["mean", "std"])
        ax.errorbar(means.index, means["mean"], yerr=means["std"].fillna(0), fmt="o", color=color, capsize=3,
                    label=figure_label(cell))  # fmt: skip
        width = int(part["width"].iloc[0])
        # init=scaled's sigma^2 is the runs' own (one per group), not the config's default
        gain = part["init_gain"].iloc[0] if "init_gain" in part else None
        gain = {"init_gain": float(gain)} if pd.notna(gain) else {}  # a runs.csv from before the key: 2
        theory = [theory_decay_per_layer(StudyConfig(init=Init(cell["init"]), slope=a, width=width, **gain))
                  for a in grid_]  # fmt: skip
        ax.plot(grid_, theory, "--", color=color)
    ax.set_xlabel("negative slope a")
    ax.set_ylabel("signal decay per layer at step 0 (log10)")
    ax.set_title("Each layer shrinks ||dL/dz|| by 10^decay toward the input", fontsize=10)
    ax.axhline(0, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    # many curves (a sweep over sigma^2): the legend beside the axes, not over the points
    outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1)} if len(groups) > 4 else {}
    ax.legend(fontsize=7, title="dots: measured (depth >= 5, all seeds)\ndashed: theory", title_fontsize=7,
              **outside)  # fmt: skip
    return fig


def prelu_slopes(summary: Summary) -> plt.Figure | None:
    """Learned PReLU slope against the layer index, one line per depth, a panel per variant."""
    table = summary.prelu
    if table.empty:
        return None
    keys = [
        c for c in table.columns if c not in ("layer", "n", "depth") and not c.startswith("learned_slope")
    ]
    panels = list(table.groupby(keys, dropna=False)) if keys else [((), table)]
    fig, axes = grid(len(panels), 4.2, 3.4)
    cmap = plt.get_cmap("viridis")
    depths = sorted(table["depth"].unique())
    for ax, (cell, part) in zip(axes, panels, strict=True):
        for i, depth in enumerate(depths):
            g = part[part["depth"] == depth].sort_values("layer")
            low = (g["learned_slope"] - g["learned_slope_lo"]).fillna(0)
            high = (g["learned_slope_hi"] - g["learned_slope"]).fillna(0)
            ax.errorbar(g["layer"], g["learned_slope"], yerr=[low, high], marker="o", ms=3, capsize=2,
                        color=cmap(i / max(1, len(depths) - 1)), label=f"depth {depth}")  # fmt: skip
        cell = cell if isinstance(cell, tuple) else (cell,)
        panel_title(ax, figure_label({"act": "prelu", **dict(zip(keys, cell, strict=True))}))
        ax.set_xlabel("hidden layer (0 = input side)")
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(alpha=0.3)
    return finish(fig, axes, "learned slope a (mean, 95 % CI over seeds)",
                   "PReLU: the slope gradient descent picks, per layer")  # fmt: skip


# --- per cell --------------------------------------------------------------------------------
def _metric_vs_depth(summary: Summary, metric: str, ylabel: str, title: str, extra=None) -> plt.Figure:
    """mean ± std of a metric against depth, a line per slope, a panel per variant."""
    agg = summary.agg
    panels = _variants(agg, summary.keys)
    colors = slope_colors(agg["slope"].unique())
    fig, axes = grid(len(panels), 4.2, 3.4)
    for ax, (cell, part) in zip(axes, panels, strict=True):
        act = _act(summary, part)
        for slope, g in part.sort_values("depth").groupby("slope"):
            ax.errorbar(g["depth"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"].fillna(0), marker="o",
                        capsize=3, color=colors[slope], label=slope_label(slope, act))  # fmt: skip
            if extra:
                extra(ax, g, colors[slope])
        if metric.endswith("_acc"):  # accuracies from 0 to 1, chance marked: nets that failed show
            ax.axhline(CHANCE, color="grey", ls=":", lw=1)
            ax.set_ylim(0, 1)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # depths, not 29.5
        ax.set_xlabel("depth (Linear layers)")
        panel_title(ax, figure_label(cell), 9)
        ax.grid(alpha=0.3)
    return finish(fig, axes, ylabel, title, {"title": "slope", "title_fontsize": 7})


def accuracy_vs_depth(summary: Summary) -> plt.Figure | None:
    """Test accuracy against depth, a panel per variant, a colour per slope: every run a dot, and
    the mean ± std line only through cells where every run learned. A mean over learners and
    failures describes neither (the k/n tables count those); partial cells are labelled k/n."""
    runs = done(summary.runs)
    if runs.empty or runs["test_acc"].isna().all():
        return None
    runs = runs.assign(learned=learned(runs))
    colors = slope_colors(runs["slope"].unique())
    depths = np.sort(runs["depth"].unique())
    step = np.diff(depths).min() if len(depths) > 1 else 4.0  # one depth: room for the slopes side by side
    panels = _variants(runs, summary.keys)
    fig, axes = grid(len(panels), 4.2, 3.4)
    for ax, (cell, part) in zip(axes, panels, strict=True):
        act = _act(summary, part)
        slopes = sorted(part["slope"].unique())
        for j, (slope, g) in enumerate(part.groupby("slope")):
            shift = (j - (len(slopes) - 1) / 2) * 0.12 * step  # side by side, not on top of each other
            ax.plot(g["depth"] + shift, g["test_acc"], ".", ms=4, alpha=0.6, color=colors[slope])
            cells = g.groupby("depth").agg(mean=("test_acc", "mean"), sd=("test_acc", "std"),
                                           k=("learned", "sum"), n=("learned", "size"))  # fmt: skip
            full = cells[cells["k"] == cells["n"]]
            ax.errorbar(full.index + shift, full["mean"], yerr=full["sd"].fillna(0), marker="o", ms=4,
                        capsize=3, color=colors[slope], label=slope_label(slope, act))  # fmt: skip
            for depth, c in cells[cells["k"] < cells["n"]].iterrows():
                ax.annotate(f"{int(c['k'])}/{int(c['n'])}", (depth + shift, 0.02 + 0.055 * j), fontsize=7,
                            ha="center",  # a row per slope: close depths' labels do not overlap
                            color=colors[slope])  # fmt: skip
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set_ylim(0, 1)
        ax.set_xticks(depths)
        ax.set_xlim(depths[0] - step / 2, depths[-1] + step / 2)
        ax.set_xlabel("depth (Linear layers)")
        panel_title(ax, figure_label(cell), 9)
        ax.grid(alpha=0.3)
    title = ("Test accuracy at the end (dots: runs; line: mean ± std where every run learned; "
             "k/n: runs that learned where some did not; dotted: chance)")  # fmt: skip
    return finish(fig, axes, "test accuracy", title, {"title": "slope", "title_fontsize": 7})


MAX_PANELS = 48  # a figure of more panels is a page-long strip nobody reads: not drawn


def val_curves(summary: Summary) -> plt.Figure | None:
    """Validation accuracy after each epoch: every run thin, the mean over seeds bold, a line
    colour per slope, a row of depths per variant, y from 0 to 1 so runs at chance show: the
    plateau check behind an epoch budget. Diverged runs are left out (their curves stop where
    they diverged; the failure counts report them)."""
    runs = summary.runs[(summary.runs["status"] == Status.completed) & (summary.runs["epochs"] >= 2)]
    evals = summary.epochs
    if runs.empty or runs["val_acc"].isna().all() or evals.empty:
        return None
    evals = evals[(evals["epoch"] > 0) & evals["run"].isin(runs.index)]
    curves = {i: e.sort_values("epoch")["val_acc"].to_numpy() for i, e in evals.groupby("run")}
    curves = {i: c for i, c in curves.items() if np.isfinite(c).all()}
    if not curves:
        return None
    runs = runs.loc[list(curves)]
    # lr names no panel where each cell has one (a tuned sweep: each slope at its own lr); where a
    # cell holds several (a tuning sweep), each lr gets its panels, so no mean mixes two lrs.
    cell = [k for k in summary.keys if k != "lr"] or ["slope"]
    mixed = "lr" in runs and runs.groupby(cell)["lr"].nunique().max() > 1
    keys = [k for k in summary.keys if k not in ("slope", "depth") and (k != "lr" or mixed)]
    panels, ncols = rows_by_variant(_variants(runs, keys), sorted(runs["depth"].unique()))
    if len(panels) > MAX_PANELS:  # a tuning sweep of many variants: a page-long strip nobody reads
        print(f"val_curves: {len(panels)} panels, more than {MAX_PANELS}: not drawn "
              "(TensorBoard's val/accuracy shows every run)")  # fmt: skip
        return None
    colors = slope_colors(runs["slope"].unique())
    fig, axes = grid(len(panels), 3.4, 3.0, ncols)
    for ax, panel in zip(axes, panels, strict=True):
        if panel is None or panel[1].empty:
            ax.set_visible(False)
            continue
        cell, part, depth = panel
        act = _act(summary, part)
        for slope, group in part.groupby("slope"):
            accs = [curves[i] for i in group.index]
            arr = np.full((len(accs), max(map(len, accs))), np.nan)  # seeds may differ in length
            for row, a in zip(arr, accs, strict=True):
                row[: len(a)] = a
            x = np.arange(1, arr.shape[1] + 1)
            ax.plot(x, arr.T, "-", lw=0.7, alpha=0.35, color=colors[slope])
            ax.plot(x, np.nanmean(arr, axis=0), "o-", ms=3, color=colors[slope],
                    label=slope_label(slope, act))  # fmt: skip
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set_ylim(0, 1)
        panel_title(ax, figure_label({"depth": depth, **cell}))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    return finish(fig, axes, "validation accuracy",
                   "Validation accuracy per epoch (thin: each run, bold: mean; dotted: chance): "
                   "has it plateaued?")  # fmt: skip


def dead_frac_vs_depth(summary: Summary) -> plt.Figure:
    """Dead-unit fraction against depth: at the end (solid) and at init (dotted) where the runs
    trained, at init alone where they did not (step-0 probes)."""

    def dead_at_init(ax, g, color):
        ax.plot(g["depth"], g["dead_frac_step0_mean"], ":", color=color)

    has_end = summary.agg["dead_frac_end_mean"].notna().any()
    title = "Dead (or negative-region) units on the probe batch" + (
        ": end (solid), init (dotted)" if has_end else " at init"
    )
    return _metric_vs_depth(summary, "dead_frac_end" if has_end else "dead_frac_step0", "dead-unit fraction",
                            title, extra=dead_at_init if has_end else None)  # fmt: skip


# every summary figure, by the name of its PNG
FIGURES = {
    "signal_norm_step0": signal_norm_step0,
    "decay_heatmap": decay_heatmap,
    "decay_vs_slope": decay_vs_slope,
    "test_acc_vs_depth": accuracy_vs_depth,
    "val_curves": val_curves,
    "prelu_slopes": prelu_slopes,
    "phase_diagram": phase_diagram,
    "dead_frac_vs_depth": dead_frac_vs_depth,
}
# figures drawn from per-layer norms, which a committed summary does not keep (collect.kept)
PER_LAYER_NORMS = ("signal_norm_step0",)
# figures of what training did: nothing to show where there was none, or where nothing learned
TRAINED = ("test_acc_vs_depth", "val_curves")


def not_applicable(summary: Summary) -> dict[str, str]:
    """The figures a summary's runs (runs.csv alone) rule out, each with why: the one gate, both
    where a sweep is summarized (draw_all) and where a committed summary is redrawn
    (publish.redraw, which deletes their stale PNGs)."""
    runs = done(summary.runs)
    why = ""
    if "epochs" in runs and not runs.empty and (runs["epochs"] == 0).all():
        why = "every run trained 0 epochs (step-0 probes)"
    elif "test_acc" in runs and not runs.empty and not learned(runs).any():
        why = "no run learned (every run at chance, diverged or its loss blew up)"
    return dict.fromkeys(TRAINED, why) if why else {}


def applicable(summary: Summary) -> set[str]:
    """The names of FIGURES the gate (not_applicable) leaves for this summary."""
    return set(FIGURES) - set(not_applicable(summary))


def panel_count(fig: plt.Figure) -> int:
    """A figure's drawn panels: its visible grid axes (a colour bar is not a panel)."""
    return sum(1 for ax in fig.axes if ax.get_visible() and ax.get_subplotspec() is not None)


def draw_all(summary: Summary, skip: tuple[str, ...] = ()) -> list[Path]:
    """Every figure the gate allows (less `skip`) into summary.out_dir; the PNGs written. The PNG
    of a figure the gate rules out is removed from it (an earlier summary's, now stale)."""
    for name, why in not_applicable(summary).items():
        print(f"{name}: not drawn: {why}")
        (summary.out_dir / f"{name}.png").unlink(missing_ok=True)
    paths, drawn = [], applicable(summary) - set(skip)
    for name in FIGURES:
        if name not in drawn:
            continue
        fig = FIGURES[name](summary)
        if fig is None:
            continue
        if (n := panel_count(fig)) > MAX_PANELS:  # one panel per cell of a many-variant tuning sweep
            print(f"{name}: {n} panels, more than {MAX_PANELS}: not drawn "
                  "(the summary's CSVs and TensorBoard hold the same numbers)")  # fmt: skip
            plt.close(fig)
            continue
        path = summary.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) floats in [0, 1], as TensorBoard's add_image takes them."""
    return plt.imread(path)[..., :3]
