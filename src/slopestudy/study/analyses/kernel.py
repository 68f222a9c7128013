"""Section 9 of results/README.md, where the slope decides: the kernel. At step 0, how alike each
arm makes different inputs layer by layer (1 - the mean pair cosine of z_l, the kernel probe)
against the correlation map from the same pairs' input cosines, at depths 50, 100, 200, from the
committed kernel_tune_d<depth> summaries (step 0 depends on the seed, not on the lr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from slopestudy.summary.figures import plt  # the project's matplotlib, set up for files (Agg)
from slopestudy.summary.tables import md_table

DEPTHS = (50, 100, 200)
ARM_ORDER = ("ReLU", "a = 0.2", "TAT", "pre-act ReLU residual")
COLORS = {"ReLU": "#1f77b4", "a = 0.2": "#2ca02c", "TAT": "#d62728", "pre-act ReLU residual": "#9467bd"}


def arm(row: pd.Series) -> str:
    """The arm of a run of kernel_tune/kernel_final, in words."""
    if row.get("slope_rule") == "tat":
        return "TAT"
    if bool(row.get("residual")) and str(row.get("residual")) != "False":
        return "pre-act ReLU residual"
    return "ReLU" if row["slope"] == 0 else f"a = {row['slope']:g}"


def step0_profiles(results: Path, depth: int) -> pd.DataFrame | None:
    """Per arm, seed and layer: measured and predicted 1 - mean pair cosine at step 0 (one row per
    net: runs that share a seed share their init, whatever their lr)."""
    folder = results / f"kernel_tune_d{depth}"
    if not (folder / "kernel_layers.csv").exists():
        return None
    runs = pd.read_csv(folder / "runs.csv")
    layers = pd.read_csv(folder / "kernel_layers.csv")
    runs = runs.assign(arm=runs.apply(arm, axis=1))[["arm", "seed"]]
    wide = layers[layers["quantity"].isin(["kernel_cos_step0", "kernel_cos_theory"])].pivot_table(
        index=["run", "layer"], columns="quantity", values="value"
    )
    wide = wide.reset_index().join(runs, on="run")
    wide = wide.groupby(["arm", "seed", "layer"], as_index=False).first()
    return wide.assign(measured=1 - wide["kernel_cos_step0"], theory=1 - wide["kernel_cos_theory"])


def step0_figure(results: Path):
    """1 - mean pair cosine against the hidden layer at step 0, one panel per depth, one colour per
    arm: each net a thin line, theory dashed (log y: the gap spans decades)."""
    frames = {d: step0_profiles(results, d) for d in DEPTHS}
    frames = {d: f for d, f in frames.items() if f is not None}
    if not frames:
        return None
    fig, axes = plt.subplots(1, len(frames), figsize=(4.6 * len(frames), 3.8), sharey=True, squeeze=False)
    for ax, (depth, f) in zip(axes[0], frames.items(), strict=True):
        f = f[f["layer"] < depth - 1]  # hidden layers: the logits' cosine is over 10 units only
        for name in [a for a in ARM_ORDER if a in set(f["arm"])]:
            part = f[f["arm"] == name]
            for _, net in part.groupby("seed"):
                ax.plot(net["layer"], net["measured"], color=COLORS[name], lw=1, alpha=0.8)
            th = part.groupby("layer")["theory"].mean()
            ax.plot(th.index, th.values, color=COLORS[name], ls="--", lw=1.6)
        ax.set_yscale("log")
        ax.set_title(f"He init, width 256, depth {depth}")
        ax.set_xlabel("layer l (0 = input side)")
        ax.grid(alpha=0.3, which="both")
    axes[0][0].set_ylabel("1 − mean cosine of z_l between\ndifferent examples (step 0)")
    shown = [a for a in ARM_ORDER if any(a in set(f["arm"]) for f in frames.values())]
    handles = [Line2D([], [], color=COLORS[a], lw=2) for a in shown]
    handles += [Line2D([], [], color="grey", lw=1), Line2D([], [], color="grey", ls="--", lw=1.6)]
    labels = [*shown, "measured (one line per net)", "theory (correlation map)"]
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.16, 1, 1))
    return fig


def step0_table(results: Path) -> str:
    """Per depth and arm: 1 - mean pair cosine at the last hidden layer at step 0, measured (mean,
    range over the seeds' nets) and predicted."""
    rows = []
    for depth in DEPTHS:
        f = step0_profiles(results, depth)
        if f is None:
            continue
        top = f[f["layer"] == depth - 2]
        for name in [a for a in ARM_ORDER if a in set(top["arm"])]:
            part = top[top["arm"] == name]
            th = part["theory"].mean()
            rows.append([str(depth), name, str(len(part)), f"{part['measured'].mean():.4f}",
                         f"{part['measured'].min():.4f}–{part['measured'].max():.4f}",
                         f"{th:.4f}" if np.isfinite(th) else "–"])  # fmt: skip
    if not rows:
        return "_No kernel summary committed yet._"
    header = ["depth", "arm", "nets", "measured (mean)", "range over nets", "theory"]
    return md_table(header, rows)
