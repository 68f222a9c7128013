"""Figures of a sweep summary (PNG), also written into TensorBoard as the run `summary`.

Each takes the typed Summary (its run, per-layer and per-epoch frames and its cells); none reads
a run.json."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from slopestudy.cells import Summary, variants  # noqa: E402
from slopestudy.collect import done  # noqa: E402
from slopestudy.model import theory_decay_per_layer  # noqa: E402


def _slope_colors(slopes):
    cmap = plt.get_cmap("viridis")
    slopes = sorted(slopes)
    return {s: cmap(i / max(1, len(slopes) - 1)) for i, s in enumerate(slopes)}


def _layer_values(summary: Summary, quantity: str, runs) -> np.ndarray:
    """(runs, layers) array of one per-layer quantity for these runs (rows of summary.runs)."""
    long = summary.layers
    if long.empty:
        return np.empty((0, 0))
    long = long[(long["quantity"] == quantity) & long["run"].isin(runs.index)]
    return long.pivot_table(index="run", columns="layer", values="value").to_numpy()


def signal_norm_step0(summary: Summary) -> plt.Figure:
    """log10 ||dL/dz_l|| at step 0 per layer; panels: variant x depth; dashed: theory."""
    runs = done(summary.runs)
    panels = variants(runs, summary.keys)
    depths = sorted(runs["depth"].unique())
    colors = _slope_colors(runs["slope"].unique())
    fig, axes = plt.subplots(len(panels), len(depths), squeeze=False,
                             figsize=(3.2 * len(depths), 2.8 * len(panels)))  # fmt: skip
    for r, (label, part) in enumerate(panels):
        for c, depth in enumerate(depths):
            ax = axes[r][c]
            for slope, group in part[part["depth"] == depth].groupby("slope"):
                norms = _layer_values(summary, "signal_norm_step0", group)
                if norms.size == 0:
                    continue
                with np.errstate(divide="ignore"):
                    logs = np.log10(norms).mean(axis=0)  # geometric mean over seeds
                layers = np.arange(len(logs))
                ax.plot(layers, logs, "o-", ms=3, color=colors[slope], label=f"a={slope:g}")
                theory = group["decay_theory"].iloc[0]
                if depth >= 3 and np.isfinite(logs[depth - 2]):
                    hidden = layers[:-1]
                    ax.plot(
                        hidden,
                        logs[depth - 2] - theory * (depth - 2 - hidden),
                        "--",
                        color=colors[slope],
                        lw=1,
                    )
            ax.set_title(f"depth {depth}\n{label}", fontsize=8)
            ax.set_xlabel("layer (0 = input side)", fontsize=8)
            if c == 0:
                ax.set_ylabel("log10 ||dL/dz_l|| at step 0", fontsize=8)
            ax.tick_params(labelsize=7)
    axes[0][-1].legend(fontsize=7, title="slope (dashed: theory)", title_fontsize=7)
    fig.suptitle("Backprop signal norm per layer at initialization (mean over seeds)", fontsize=10)
    fig.tight_layout()
    return fig


def decay_heatmap(summary: Summary) -> plt.Figure:
    agg = summary.agg
    panels = variants(agg, summary.keys)
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.6))
    for ax, (label, part) in zip(axes[0], panels, strict=True):
        m = part.pivot_table(index="depth", columns="slope", values="decay_step0_mean", dropna=False)
        th = part.pivot_table(index="depth", columns="slope", values="decay_theory_mean", dropna=False)
        if not np.isfinite(m.values).any():  # depth < 3 everywhere: no hidden-layer fit
            ax.set_axis_off()
            ax.set_title(f"{label}: no depth >= 3 to fit", fontsize=9)
            continue
        # One colour scale for every panel: 0 (no decay) to the worst theory value, 0.389.
        vmax = max(0.4, np.nanmax(m.values))
        im = ax.imshow(m.values, cmap="magma_r", aspect="auto", vmin=min(0, np.nanmin(m.values)), vmax=vmax)
        ax.set_xticks(range(len(m.columns)), [f"{s:g}" for s in m.columns])
        ax.set_yticks(range(len(m.index)), m.index)
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if np.isfinite(m.values[i, j]):
                    text = f"{m.values[i, j]:.3f}\n[th {th.values[i, j]:.3f}]"
                    color = "white" if m.values[i, j] > vmax / 2 else "black"
                    ax.text(j, i, text, ha="center", va="center", fontsize=7, color=color)
        ax.set_xlabel("negative_slope")
        ax.set_ylabel("depth")
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, label="decay/layer (log10)")
    fig.suptitle("Signal decay per layer at step 0, measured [theory]", fontsize=10)
    fig.tight_layout()
    return fig


def decay_vs_slope(summary: Summary) -> plt.Figure | None:
    """Measured step-0 decay per layer against the slope (one marker per depth >= 5), with the
    mean-field curve -1/2 log10(sigma^2 (1+a^2)/2) per init: the study's headline comparison."""
    runs = done(summary.runs)[lambda d: d["depth"] >= 5]
    runs = runs[np.isfinite(runs["decay_step0"])]
    if runs.empty:
        return None  # no depth >= 5: nothing to compare
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    grid = np.linspace(0, max(1.0, runs["slope"].max()), 200)
    for color, (init, part) in zip(plt.get_cmap("tab10").colors, runs.groupby("init"), strict=False):
        means = part.groupby("slope")["decay_step0"].agg(["mean", "std"])
        ax.errorbar(means.index, means["mean"], yerr=means["std"].fillna(0), fmt="o", color=color, capsize=3,
                    label=f"{init}: measured (depth >= 5, all seeds)")  # fmt: skip
        width = int(part["width"].iloc[0])
        ax.plot(grid, [theory_decay_per_layer(init, a, width) for a in grid], "--", color=color,
                label=f"{init}: theory")  # fmt: skip
    ax.set_xlabel("negative_slope a")
    ax.set_ylabel("signal decay per layer at step 0 (log10)")
    ax.set_title("Each layer shrinks ||dL/dz|| by 10^decay toward the input", fontsize=10)
    ax.axhline(0, color="k", lw=0.5)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def _metric_vs_depth(summary: Summary, metric: str, ylabel: str, title: str, extra=None) -> plt.Figure:
    agg = summary.agg
    panels = variants(agg, summary.keys)
    colors = _slope_colors(agg["slope"].unique())
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(4.2 * len(panels), 3.4), sharey=True)
    for ax, (label, part) in zip(axes[0], panels, strict=True):
        for slope, g in part.sort_values("depth").groupby("slope"):
            ax.errorbar(g["depth"], g[f"{metric}_mean"], yerr=g[f"{metric}_std"].fillna(0), marker="o",
                        capsize=3, color=colors[slope], label=f"a={slope:g}")  # fmt: skip
            if extra:
                extra(ax, g, colors[slope])
        ax.set_xlabel("depth (Linear layers)")
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7, title="slope", title_fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
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
    ncols = min(4, len(panels))  # rows of 4: 8 variants (init x start x per) stay readable
    nrows = -(-len(panels) // ncols)
    fig, axes = plt.subplots(nrows, ncols, squeeze=False, figsize=(4.2 * ncols, 3.4 * nrows), sharey=True)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    cmap = plt.get_cmap("viridis")
    depths = sorted(table["depth"].unique())
    for ax, (cell, part) in zip(axes.flat, panels, strict=False):
        for i, depth in enumerate(depths):
            g = part[part["depth"] == depth].sort_values("layer")
            low = (g["learned_slope"] - g["learned_slope_lo"]).fillna(0)
            high = (g["learned_slope_hi"] - g["learned_slope"]).fillna(0)
            ax.errorbar(g["layer"], g["learned_slope"], yerr=[low, high], marker="o", ms=3, capsize=2,
                        color=cmap(i / max(1, len(depths) - 1)), label=f"depth {depth}")  # fmt: skip
        cell = cell if isinstance(cell, tuple) else (cell,)
        ax.set_title(", ".join(f"{k}={v}" for k, v in zip(keys, cell, strict=True)), fontsize=8)
        ax.set_xlabel("hidden layer (0 = input side)")
        ax.axhline(0, color="k", lw=0.5)
        ax.grid(alpha=0.3)
    return _finish(fig, axes, "learned slope a (mean, 95 % CI over seeds)",
                   "PReLU: the slope gradient descent picks, per layer")  # fmt: skip


def phase_diagram(summary: Summary) -> plt.Figure | None:
    """Mean val accuracy over (sigma^2, depth), one panel per slope, with the critical gain
    2/(1+a^2) and theory contours of constant total shrinkage depth·|log10 g| = k."""
    agg = summary.agg
    if summary.phase.empty:
        return None
    slopes = sorted(agg["slope"].unique())
    fig, axes = plt.subplots(1, len(slopes), squeeze=False, figsize=(4.6 * len(slopes), 4.0), sharey=True)
    gains = np.array(sorted(agg["init_gain"].unique()))
    depths = np.array(sorted(agg["depth"].unique()))
    best = summary.phase[summary.phase["best"]].set_index("slope")["k"]
    for ax, slope in zip(axes[0], slopes, strict=True):
        part = agg[agg["slope"] == slope]
        m = part.pivot_table(index="depth", columns="init_gain", values="val_acc_mean").reindex(
            index=depths, columns=gains
        )
        im = ax.pcolormesh(_edges(gains), _edges(depths), m.values, cmap="viridis", vmin=0, vmax=1,
                           shading="flat")  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axvline(2 / (1 + slope**2), color="w", ls="--", lw=1.5, label="critical 2/(1+a²)")
        fine = np.geomspace(gains[0], gains[-1], 400)
        logg = np.abs(np.log10(fine * (1 + slope**2) / 2))
        for k in (1, 2, 4, 8):
            with np.errstate(divide="ignore"):
                d = np.where(logg > 1e-9, k / logg, np.inf)
            style = "-" if k == best.get(slope) else ":"
            ax.plot(fine, np.clip(d, depths[0] * 0.8, depths[-1] * 1.25), style, color="orange", lw=1)
            i = int(np.argmin(np.abs(np.log(fine / gains[0]))))
            ax.text(fine[i], min(d[i], depths[-1]), f"k={k}", color="orange", fontsize=7, va="bottom")
        ax.set_ylim(_edges(depths)[0], _edges(depths)[-1])
        ax.set_xticks(gains, [f"{g:.2g}" for g in gains], fontsize=7)
        ax.set_yticks(depths, [str(d) for d in depths], fontsize=7)
        ax.minorticks_off()
        k = best.get(slope)
        ax.set_title(
            f"slope a={slope:g} (solid: best-fitting k={k:g})" if k else f"slope a={slope:g}", fontsize=9
        )
        ax.set_xlabel("σ² (Var(W) = σ²/fan_in)")
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("depth (Linear layers)")
    fig.colorbar(im, ax=axes[0].tolist(), label="validation accuracy (mean over seeds)")
    fig.suptitle("Where deep LeakyReLU MLPs train: the slope shifts the edge like a rescaled init "
                 "(orange: depth·|log10 g| = k)", fontsize=10)  # fmt: skip
    return fig


def _finish(fig: plt.Figure, axes, ylabel: str, title: str) -> plt.Figure:
    """A row of panels: y label on the first, legend on the last, a title over all."""
    axes[0][0].set_ylabel(ylabel)
    axes[0][-1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _edges(centers: np.ndarray) -> np.ndarray:
    """Cell edges halfway (geometrically) between centers, for pcolormesh on log axes."""
    c = np.asarray(centers, dtype=float)
    mid = np.sqrt(c[1:] * c[:-1])
    return np.concatenate([[c[0] ** 2 / mid[0]], mid, [c[-1] ** 2 / mid[-1]]])


def val_curves(summary: Summary) -> plt.Figure | None:
    """Validation accuracy after each epoch (mean over seeds), a panel per depth (and variant),
    a line per slope: the plateau check behind an epoch budget. Diverged runs are left out (their
    curves stop where they diverged; the failure counts report them)."""
    runs = summary.runs[(summary.runs["status"] == "completed") & (summary.runs["epochs"] >= 2)]
    if runs.empty or runs["val_acc"].isna().all():
        return None
    evals = summary.epochs
    evals = evals[(evals["epoch"] > 0) & evals["run"].isin(runs.index)] if not evals.empty else evals
    curves = []
    for i, e in evals.groupby("run"):
        if e["val_acc"].notna().all():
            curves.append((runs.loc[i], e.sort_values("epoch")["val_acc"].tolist()))
    if not curves:
        return None
    keys = [k for k in summary.keys if k not in ("slope", "depth", "lr")]
    panels = sorted(
        {(tuple(r[k] for k in keys), r["depth"]) for r, _ in curves}, key=lambda p: (str(p[0]), p[1])
    )
    colors = _slope_colors(runs["slope"].unique())
    fig, axes = plt.subplots(1, len(panels), squeeze=False, figsize=(3.4 * len(panels), 3.4), sharey=True)
    for ax, (variant, depth) in zip(axes[0], panels, strict=True):
        mine = [(r, a) for r, a in curves if r["depth"] == depth and tuple(r[k] for k in keys) == variant]
        for slope in sorted({r["slope"] for r, _ in mine}):
            accs = [a for r, a in mine if r["slope"] == slope]
            arr = np.full((len(accs), max(map(len, accs))), np.nan)  # seeds may differ in length
            for row, a in zip(arr, accs, strict=True):
                row[: len(a)] = a
            ax.plot(np.arange(1, arr.shape[1] + 1), np.nanmean(arr, axis=0), "o-", ms=3, color=colors[slope],
                    label=f"a={slope:g}")  # fmt: skip
        label = ", ".join(f"{k}={v}" for k, v in zip(keys, variant, strict=True))
        ax.set_title(f"depth {depth}" + (f", {label}" if label else ""), fontsize=8)
        ax.set_xlabel("epoch")
        ax.set_ylim(max(0.0, ax.get_ylim()[0]), None)
        ax.grid(alpha=0.3)
    return _finish(fig, axes, "validation accuracy (mean over seeds)",
                   "Validation accuracy per epoch: has it plateaued?")  # fmt: skip


def draw_all(summary: Summary) -> list[Path]:
    def dead_at_init(ax, g, color):
        ax.plot(g["depth"], g["dead_frac_step0_mean"], ":", color=color)

    has_end = summary.agg["dead_frac_end_mean"].notna().any()
    figs = {
        "signal_norm_step0": signal_norm_step0(summary),
        "decay_heatmap": decay_heatmap(summary),
        "decay_vs_slope": decay_vs_slope(summary),
        "test_acc_vs_depth": _metric_vs_depth(
            summary, "test_acc", "test accuracy", "Test accuracy at the end (mean ± std over seeds)"
        ),
        "val_curves": val_curves(summary),
        "prelu_slopes": prelu_slopes(summary),
        "phase_diagram": phase_diagram(summary),
        "dead_frac_vs_depth": _metric_vs_depth(
            summary,
            "dead_frac_end" if has_end else "dead_frac_step0",
            "dead-unit fraction",
            "Dead (or negative-region) units on the probe batch: end"
            + (" (solid), init (dotted)" if has_end else ""),
            extra=dead_at_init if has_end else None,
        ),
    }
    paths = []
    for name, fig in figs.items():
        if fig is None:
            continue
        path = summary.out_dir / f"{name}.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    return paths


def read_image(path: Path) -> np.ndarray:
    """(H, W, 3) floats in [0, 1], as TensorBoard's add_image takes them."""
    return plt.imread(path)[..., :3]
