"""Section 9 of results/README.md, where the slope decides: the kernel. At step 0, how alike each
arm makes different inputs layer by layer (1 - the mean pair cosine of z_l, the kernel probe)
against the correlation map from the same pairs' input cosines, at depths 50, 100, 200, from the
committed kernel_tune_d<depth> summaries (step 0 depends on the seed, not on the lr)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D

from slopestudy.science import stats
from slopestudy.science.theory import tat_slope
from slopestudy.summary.cells import failed
from slopestudy.summary.collect import done
from slopestudy.summary.figures import plt  # the project's matplotlib, set up for files (Agg)
from slopestudy.summary.tables import committed, md_table

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
    runs, layers = committed(results, folder.name), committed(results, folder.name, "kernel_layers.csv")
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


# --- trained: the 5-seed final runs (kernel_final_d<depth>) ------------------------------------
REFERENCE = "ReLU"
FAMILY = [(depth, name) for depth in DEPTHS for name in ARM_ORDER if name != REFERENCE]  # 9, declared


def final_runs(results: Path) -> pd.DataFrame | None:
    """Every committed final run of the section, with its arm and whether it learned (the
    project's one rule, cells.failed)."""
    parts = [f for d in DEPTHS if (f := committed(results, f"kernel_final_d{d}")) is not None]
    if not parts:
        return None
    runs = pd.concat(parts, ignore_index=True)
    return runs.assign(arm=runs.apply(arm, axis=1), learned=~failed(runs))


def comparison(part: pd.DataFrame, ref: pd.DataFrame) -> dict:
    """One declared comparison of an arm with ReLU at one depth: Fisher's exact test on k/n
    learned; where both learned every run, Welch on final test accuracy (the test the family
    uses), with the difference's 95 % interval."""
    k, n, k0, n0 = int(part["learned"].sum()), len(part), int(ref["learned"].sum()), len(ref)
    row = {"learned": f"{k}/{n} vs {k0}/{n0}", "fisher p": stats.fisher_p(k, n, k0, n0)}
    if k == n and k0 == n0:
        d, lo, hi = stats.welch_interval(ref["test_acc"], part["test_acc"])  # arm - ReLU
        row.update({"test acc − ReLU [95 % CI]": stats.fmt_ci(d, lo, hi), "test": "Welch",
                    "p": stats.welch_p(ref["test_acc"], part["test_acc"])})  # fmt: skip
    else:
        row.update({"test acc − ReLU [95 % CI]": "–", "test": "Fisher", "p": row["fisher p"]})
    return row


def family_table(runs: pd.DataFrame) -> pd.DataFrame:
    """The 9 declared comparisons; Holm over all 9, a comparison not run yet counted as p = 1 (so
    the adjusted p of those that ran can only be too large, never too small)."""
    rows = []
    for depth, name in FAMILY:
        here = runs[runs["depth"] == depth]
        part, ref = here[here["arm"] == name], here[here["arm"] == REFERENCE]
        row = {"depth": depth, "arm": name}
        row.update(
            comparison(part, ref) if len(part) and len(ref) else {"learned": "not run yet", "p": np.nan}
        )
        rows.append(row)
    table = pd.DataFrame(rows)
    table["p (Holm, 9)"] = stats.holm(table["p"].fillna(1.0).to_numpy())
    table.loc[table["p"].isna(), "p (Holm, 9)"] = np.nan
    return table


def arms_table(runs: pd.DataFrame) -> str:
    """Per depth and arm: its lr, k/n learned with the exact interval, test accuracy of the runs
    that learned, steps to 90 % validation accuracy, and 1 − cos at the top hidden layer at
    step 0 and at the end."""
    rows = []
    for depth in DEPTHS:
        here = runs[runs["depth"] == depth]
        for name in [a for a in ARM_ORDER if a in set(here["arm"])]:
            part = here[here["arm"] == name]
            k, n = int(part["learned"].sum()), len(part)
            ok = part[part["learned"]]
            acc = f"{ok['test_acc'].mean():.3f} ± {ok['test_acc'].std():.3f}" if k > 1 else (
                f"{ok['test_acc'].iloc[0]:.3f}" if k else "–")  # fmt: skip
            reached = part["steps_to_90"].dropna()
            steps = f"{reached.median():.0f} ({len(reached)}/{n})" if len(reached) else f"never (0/{n})"
            slope = part["slope"].iloc[0]
            rows.append([str(depth), name, f"{slope:.3g}", f"{part['lr'].iloc[0]:g}", stats.fmt_rate(k, n),
                         acc, f"{part['test_acc'].min():.3f}", steps,
                         f"{part['kernel_gap_step0'].mean():.4f}",
                         f"{part['kernel_gap_end'].mean():.3f}"])  # fmt: skip
    header = ["depth", "arm", "slope", "lr", "learned [95 % CI]", "test acc (learned runs, mean ± sd)",
              "lowest test acc", "steps to 90 % val (median, runs that got there)",
              "1 − cos top layer, step 0", "… at the end"]  # fmt: skip
    return md_table(header, rows)


def final_block(results: Path) -> str:
    runs = final_runs(results)
    if runs is None:
        return "_The final runs are not committed yet._"
    fam = family_table(runs)
    shown = [[str(r["depth"]), r["arm"], r["learned"], r.get("test", "–") if pd.notna(r["p"]) else "–",
              r.get("test acc − ReLU [95 % CI]", "–") if pd.notna(r["p"]) else "–",
              stats.fmt_p(r["p"]) if pd.notna(r["p"]) else "–",
              stats.fmt_p(r["p (Holm, 9)"]) if pd.notna(r["p (Holm, 9)"]) else "–",
              ("**resolved**" if r["p (Holm, 9)"] < 0.05 else "not resolved") if pd.notna(r["p"]) else "–"]
             for _, r in fam.iterrows()]  # fmt: skip
    header = ["depth", "arm vs ReLU", "learned (arm vs ReLU)", "test", "test acc − ReLU [95 % CI]", "p",
              "p (Holm over 9)", ""]  # fmt: skip
    ran = sorted(set(runs["depth"]))
    return "\n".join([
        f"Final runs at depth {', '.join(map(str, ran))} (5 seeds, 100–104, 6 epochs, each arm at its "
        f"tuned lr; learned: {stats.LEARNED_RULE}):", "",
        arms_table(runs), "",
        "The declared family (9 comparisons with ReLU; Holm over all 9, those not run yet counted as p = 1):",
        "", md_table(header, shown), *relu_lr_check(results, runs)])  # fmt: skip


def relu_lr_check(results: Path, runs: pd.DataFrame) -> list[str]:
    """The robustness check added after the final runs (outside the family): ReLU at depth 100 at
    a lower lr (kernel_relu_lr_d100, the same seeds) next to ReLU at its tuned lr, and each other
    depth-100 arm's Welch difference against it (raw p: not a declared test)."""
    check = committed(results, "kernel_relu_lr_d100")
    if check is None:
        return []
    check = check.assign(learned=~failed(check))
    here = runs[runs["depth"] == 100]
    tuned = here[here["arm"] == "ReLU"]
    lines = [
        "",
        f"Robustness check, added after the runs and not part of the family: ReLU at depth 100 at lr "
        f"{check['lr'].iloc[0]:g} (seeds {check['seed'].min()}–{check['seed'].max()}, 6 epochs; "
        f"`results/kernel_relu_lr_d100/`) learned {stats.fmt_rate(int(check['learned'].sum()), len(check))}, "
        f"test accuracy {check['test_acc'].mean():.3f} ± {check['test_acc'].std():.3f} (mean ± sd), against "
        f"{tuned['test_acc'].mean():.3f} ± {tuned['test_acc'].std():.3f} at its tuned lr "
        f"{tuned['lr'].iloc[0]:g}. Each depth-100 arm against this ReLU (Welch, raw p):",
        "",
    ]
    for name in [n for n in ARM_ORDER if n != "ReLU"]:
        part = here[here["arm"] == name]["test_acc"]
        if part.empty:
            continue
        mean, lo, hi = stats.welch_interval(check["test_acc"], part)
        p = stats.welch_p(check["test_acc"], part)
        lines.append(f"- {name}: {stats.fmt_ci(mean, lo, hi)}, p {stats.fmt_p(p)}")
    return lines


def final_figure(results: Path):
    """Test accuracy of every final run against depth, one colour per arm (dots side by side at
    each depth), k/n learned above each column."""
    runs = final_runs(results)
    if runs is None:
        return None
    fig, ax = plt.subplots(figsize=(7.2, 4.2))
    offsets = dict(zip(ARM_ORDER, np.linspace(-0.3, 0.3, len(ARM_ORDER)), strict=True))
    depths = [d for d in DEPTHS if d in set(runs["depth"])]
    for i, depth in enumerate(depths):
        here = runs[runs["depth"] == depth]
        for name in ARM_ORDER:
            part = here[here["arm"] == name]
            if part.empty:
                continue
            x = i + offsets[name] + np.linspace(-0.04, 0.04, len(part))
            ax.scatter(
                x, part["test_acc"], s=22, color=COLORS[name], edgecolor="white", linewidth=0.5, zorder=3
            )
            ax.text(i + offsets[name], 1.005, f"{int(part['learned'].sum())}/{len(part)}", ha="center",
                    va="bottom", fontsize=7, color=COLORS[name])  # fmt: skip
    ax.axhline(0.1, color="grey", lw=0.8, ls=":")
    ax.text(len(depths) - 0.5, 0.11, "chance", fontsize=7, color="grey", ha="right")
    ax.set_xticks(range(len(depths)), [f"depth {d}" for d in depths])
    ax.set_xlim(-0.6, len(depths) - 0.4)
    ax.set_ylim(0, 1.06)
    ax.set_ylabel("test accuracy after 6 epochs (each dot a run)")
    ax.set_title(
        "MLPs of width 256, He init, SGD, 6 epochs: who trains at depth (k/n: runs that learned)", fontsize=9
    )
    ax.grid(alpha=0.3, axis="y")
    handles = [Line2D([], [], marker="o", ls="", color=COLORS[a]) for a in ARM_ORDER]
    ax.legend(handles, ARM_ORDER, loc="lower left", fontsize=8, frameon=False)
    fig.tight_layout()
    return fig


# --- the best slope against depth (kernel_slopes_final_d<depth>, with kernel_final's 0 and 0.2) -
SLOPE_DEPTHS = (100, 200)
SLOPE_SEEDS = (100, 101, 102)  # the curve's seeds: kernel_final's ReLU and a = 0.2 runs share them
BOOTSTRAP = 10_000


def slope_runs(results: Path) -> pd.DataFrame | None:
    """Every plain fixed-slope run of the curve at each depth that has its slopes committed: slopes
    0 and 0.2 from kernel_final (seeds 100-102 of its 5), the rest from kernel_slopes_final."""
    parts = []
    for depth in SLOPE_DEPTHS:
        slopes, final = (
            committed(results, f"kernel_slopes_final_d{depth}"),
            committed(results, f"kernel_final_d{depth}"),
        )
        if slopes is None or final is None:
            continue
        final = final.assign(arm=final.apply(arm, axis=1))
        plain = final[final["arm"].isin(["ReLU", "a = 0.2"]) & final["seed"].isin(SLOPE_SEEDS)]
        parts += [done(plain.drop(columns="arm")), done(slopes)]  # results only: no running or failed job
    if not parts:
        return None
    runs = pd.concat(parts, ignore_index=True)
    # a diverged run counts as chance in the means
    score = runs["val_acc"].where(runs["status"] != "diverged").fillna(0.1)
    return runs.assign(learned=~failed(runs), score=score)


def best_slopes(runs: pd.DataFrame, rng: np.random.Generator | None = None) -> dict:
    """Per depth, the slope with the best mean final validation accuracy (`score`: a diverged run
    counts as chance), and, from BOOTSTRAP resamples of the seeds (every slope of a depth ran the
    same seeds, so they are drawn together), how often
    each depth's best slope is the same and how often the best slope at the larger depth is
    larger (the declared prediction; descriptive, 3 seeds a cell, resampled as pairs)."""
    rng = rng or np.random.default_rng(0)  # fixed: the page is the same bytes each time
    best, picked = {}, {}
    for depth, part in runs.groupby("depth"):
        # slope x seed: every slope ran the same seeds, so seeds are resampled jointly (pairs)
        grid = part.pivot_table(index="slope", columns="seed", values="score")
        slopes = grid.index.to_numpy()
        best[depth] = float(slopes[np.nanargmax(grid.mean(axis=1).to_numpy())])
        draws = rng.integers(0, grid.shape[1], size=(BOOTSTRAP, grid.shape[1]))
        means = np.nanmean(grid.to_numpy()[:, draws], axis=2)  # (slopes, resamples)
        picked[depth] = slopes[np.nanargmax(means, axis=0)]
    depths = sorted(best)
    out = {"best": best, "same": {d: float((picked[d] == best[d]).mean()) for d in depths}}
    if len(depths) == 2:
        out["moves up"] = float((picked[depths[1]] > picked[depths[0]]).mean())
    return out


def slopes_block(results: Path) -> str:
    runs = slope_runs(results)
    if runs is None:
        return "_The best-slope runs are not committed yet._"
    rows = []
    for (depth, slope), g in runs.groupby(["depth", "slope"]):
        k, n = int(g["learned"].sum()), len(g)
        rows.append([str(depth), f"{slope:g}", f"{g['lr'].iloc[0]:g}", stats.fmt_rate(k, n),
                     f"{g['score'].mean():.3f} ± {g['score'].std():.3f}", f"{g['score'].min():.3f}",
                     f"{g['test_acc'].where(g['status'] != 'diverged').fillna(0.1).mean():.3f}"])  # fmt: skip
    header = ["depth", "slope", "lr (tuned)", "learned [95 % CI]",
              "val acc (mean ± sd, all runs; diverged = 0.1)", "lowest val acc",
              "test acc (mean; diverged = 0.1)"]  # fmt: skip
    b = best_slopes(runs)
    lines = [f"- depth {d}: best slope {s:g} (validation; TAT's slope {tat_slope(d):.3f}); the same best "
             f"slope in {b['same'][d]:.0%} of {BOOTSTRAP:,} bootstrap resamples of the seeds"
             for d, s in b["best"].items()]  # fmt: skip
    if "moves up" in b:
        lines.append(f"- the best slope larger at depth {max(b['best'])} than at {min(b['best'])}: "
                     f"{'yes' if b['best'][max(b['best'])] > b['best'][min(b['best'])] else 'no'}; "
                     f"in {b['moves up']:.0%} of the resamples")  # fmt: skip
    return "\n".join([
        f"Plain MLPs, width 256, He init, 6 epochs, seeds {SLOPE_SEEDS[0]}–{SLOPE_SEEDS[-1]}, each slope "
        "at its own lr (validation, 2 seeds × 2 epochs); slopes 0 and 0.2 are kernel_final's runs of "
        "these seeds:",
        "", md_table(header, rows), "", *lines])  # fmt: skip


def slopes_figure(results: Path):
    """Final validation accuracy against the slope, one colour per depth (each dot a run, the line
    through the means), TAT's slope for each depth dashed."""
    runs = slope_runs(results)
    if runs is None:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for depth, color in zip(SLOPE_DEPTHS, ("#1f77b4", "#d62728"), strict=True):
        part = runs[runs["depth"] == depth]
        if part.empty:
            continue
        means = part.groupby("slope")["score"].mean()
        ax.plot(means.index, means.values, "-", color=color, lw=1.4, label=f"depth {depth}")
        ax.scatter(part["slope"], part["score"], s=16, color=color, alpha=0.7, edgecolor="none")
        ax.axvline(tat_slope(depth), color=color, ls="--", lw=1)
        ax.text(tat_slope(depth), 0.02, f" TAT {tat_slope(depth):.2f}", color=color, fontsize=7, rotation=90,
                va="bottom")  # fmt: skip
    ax.set_xlabel("negative slope a (He init matched to it)")
    ax.set_ylabel("validation accuracy after 6 epochs")
    ax.set_ylim(0, 1.02)
    shown = " and ".join(str(d) for d in SLOPE_DEPTHS if d in set(runs["depth"]))
    ax.set_title(f"Which slope trains best at depth {shown}\n(dots: runs, a diverged one at 0.1; line: "
                 "means; dashed: TAT's slope)", fontsize=8)  # fmt: skip
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower left")  # the right end holds the diverged runs
    fig.tight_layout()
    return fig
