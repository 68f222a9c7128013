"""Section 8 of results/README.md, what fixes vanishing gradients: each fix of conf/fix/ (named in
its runs' job folders, `+fix=...`) at step 0 against its own mean-field theory (fixes_step0), and
trained (fixes_tune, fixes_final_d10/30/50): lr per fix and depth on validation, k/n learned with exact
intervals, accuracy where every run learned, the gradient ratio after training, and the time
per step, all runs of one sweep on one machine."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.science import stats
from slopestudy.study.analyses import protocol, replications
from slopestudy.study.analyses.replications import markdown
from slopestudy.summary.cells import accuracy_ci, learned
from slopestudy.summary.collect import done
from slopestudy.summary.tables import committed, md_table, pm

ROWS = ("fix", "depth")
FINAL_DEPTHS = (10, 30, 50)  # results/fixes_final_d<depth>: one summary per depth (sections.py)


def with_fix(runs: pd.DataFrame) -> pd.DataFrame:
    """The run frame with a `fix` column: the conf/fix/ choice its job folder names."""
    return runs.assign(fix=runs["job"].str.extract(r"\+fix=([a-z_]+)")[0])


def step0_vs_theory(runs: pd.DataFrame, by: tuple[str, ...] = ("depth",)) -> pd.DataFrame:
    """Per fix (the conf/fix/ choice in the job name) and depth: the measured step-0 signal decay
    per layer (mean ± sd over seeds), the mean-field prediction for that activation and init (none
    where norms or skips break the plain recursion), their gap, and the weight-gradient ratio."""
    fix = with_fix(runs)["fix"]
    grouped = runs.groupby([fix, *(runs[k] for k in by)])
    table = grouped.agg(decay=("decay_step0", "mean"), sd=("decay_step0", "std"), n=("decay_step0", "size"),
                        theory=("decay_theory", "mean"), grad_ratio=("grad_ratio_step0", "mean"))  # fmt: skip
    table = table.reset_index()
    sd = table["sd"].map("{:.3f}".format)
    table["measured (log10/layer)"] = table["decay"].map("{:.3f}".format) + " ± " + sd
    gap = table["decay"] - table["theory"]
    table["gap"] = gap.map(lambda v: "–" if pd.isna(v) else f"{round(v, 3) + 0.0:+.3f}")  # + 0.0: no "-0.000"
    table["theory"] = table["theory"].map(lambda v: "–" if pd.isna(v) else f"{v:.3f}")
    table["log10 grad first/last"] = table["grad_ratio"].map("{:.2f}".format)
    return table[["fix", *by, "n", "measured (log10/layer)", "theory", "gap", "log10 grad first/last"]]


def fixes_block(results: Path) -> str:
    runs = committed(results, "fixes_step0")
    if runs is None:
        return "Fixes at step 0: not run yet."
    parts = [markdown(step0_vs_theory(runs), drop=())]
    wide = committed(results, "fixes_step0_gelu_width")
    if wide is not None:
        parts += ["", "GELU with He init at depth 30, wider nets:", "",
                  markdown(step0_vs_theory(wide, by=("depth", "width")), drop=())]  # fmt: skip
    checks = sorted((results / "forward_check").glob("*.csv"))
    if checks:
        frame = pd.concat([pd.read_csv(path) for path in checks])
        parts += ["", "GELU with He init: which half of the theory misses "
                  "(`slopestudy.tools.forward_check`, decay in log10 per layer, mean ± sd over seeds "
                  "0–19, one batch of the first 128 training examples):", "",
                  markdown(forward_check_table(frame), drop=())]  # fmt: skip
    return "\n".join(parts)


def tuned_with_fix(tuned: pd.DataFrame, tune_runs: pd.DataFrame) -> pd.DataFrame:
    """tuned.csv's rows (cells named by config keys) labelled with the fix whose runs they are."""
    keys = [k for k in tuned.columns[: list(tuned.columns).index("tuned_key")] if k in tune_runs]
    labels = with_fix(tune_runs)[[*keys, "fix"]].drop_duplicates()
    return tuned.merge(labels, on=keys, how="left")


def tuning_figure(results: Path):
    """Validation accuracy (mean of the tuning seeds; 0 where a run diverged) against lr, one line
    per fix, a panel per depth; the lr each cell chose ringed: where the choice sits on its curve,
    and whether the grid reaches past it. None before the tuning summary exists."""
    folder, runs = results / "fixes_tune", committed(results, "fixes_tune")
    scores_csv, tuned_csv = folder / "tuning_scores.csv", folder / "tuned.csv"
    if not scores_csv.exists() or not tuned_csv.exists() or runs is None:
        return None
    from matplotlib.ticker import NullFormatter

    from slopestudy.summary.plotgrid import CHANCE, finish, grid, panel_title, plt

    lrs = [c for c in pd.read_csv(scores_csv).columns if c.startswith("lr=")]
    scores = tuned_with_fix(pd.read_csv(scores_csv).assign(tuned_key="lr"), runs)
    tuned = tuned_with_fix(pd.read_csv(tuned_csv), runs).set_index(list(ROWS))
    depths = sorted(scores["depth"].unique())
    fixes_ = sorted(scores["fix"].unique())
    colors = {f: plt.get_cmap("tab10")(i) for i, f in enumerate(fixes_)}
    fig, axes = grid(len(depths), 4.2, 3.4, ncols=len(depths))
    for ax, depth in zip(axes, depths, strict=True):
        for fix in fixes_:
            row = scores[(scores["depth"] == depth) & (scores["fix"] == fix)][lrs].iloc[0]
            x = [float(c.removeprefix("lr=")) for c, v in row.items() if pd.notna(v)]
            ax.plot(
                x,
                row.dropna().to_numpy(),
                "o-",
                ms=3,
                lw=1.2,
                color=colors[fix],
                label=FIX_WORDS.get(fix, fix),
            )
            chosen = tuned.loc[(fix, depth)]
            ax.plot([chosen["lr"]], [row[f"lr={chosen['lr']:g}"]], "o", ms=9, mfc="none", color=colors[fix])
        ax.axhline(CHANCE, color="grey", ls=":", lw=1)
        ax.set_xscale("log")
        grid_lrs = sorted(float(c.removeprefix("lr=")) for c in lrs)
        ax.set_xticks(grid_lrs, [f"{v:g}" for v in grid_lrs], fontsize=7, rotation=45)
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1)
        ax.set_xlabel("learning rate")
        ax.grid(alpha=0.3)
        panel_title(ax, f"depth {depth}")
    title = ("Tuning each fix's lr on validation: mean of the tuning runs (0 = diverged; dotted: "
             "chance); ringed: the lr each cell chose")  # fmt: skip
    return finish(fig, axes, "validation accuracy (2 seeds, 2 epochs)", title, legend={"loc": "lower left"})


def trained_table(final: pd.DataFrame) -> str:
    """fix rows x depth columns: k/n learned [exact] and test accuracy where all learned (as in
    § 2), then the log10 first/last-layer gradient ratio after training."""
    runs = with_fix(done(final))
    ci = accuracy_ci(runs, list(ROWS)).set_index(list(ROWS))
    grad = runs.groupby(list(ROWS))["grad_ratio_end"].mean()
    depths = sorted(runs["depth"].unique())
    rows = []
    for fix in dict.fromkeys(runs["fix"]):
        acc = [protocol.ci_cell(ci.loc[(fix, d)]) if (fix, d) in ci.index else "–" for d in depths]
        rows.append([fix, *acc, " / ".join(f"{grad.get((fix, d), float('nan')):.2f}" for d in depths)])
    header = ["fix", *(f"depth {d}" for d in depths), "log10 grad first/last after training (by depth)"]
    return md_table(header, rows)


REFERENCE = "leaky_he"  # the plain net every fix is compared with: LeakyReLU a=0.2, He init
# each conf/fix/ preset in words, for figure legends (tables keep the preset names a reader types)
FIX_WORDS = {"leaky_default": "no fix (default init)", "leaky_he": "He init", "leaky_layernorm": "LayerNorm",
             "leaky_batchnorm": "BatchNorm", "leaky_residual": "skips", "selu_lecun": "SELU + LeCun",
             "gelu_he": "GELU + He", "tanh_xavier": "tanh + Xavier"}  # fmt: skip


def vs_reference(final: pd.DataFrame) -> pd.DataFrame:
    """Per depth, every fix against the plain He net: learned k/n vs k/n with Fisher's exact test,
    and, where both arms learned in every run, the difference of mean test accuracy with Welch's
    95 % interval. Holm within each depth (the family: that depth's fixes against the reference),
    over the Welch p values and over the Fisher p values separately; and, as a stricter check, Holm
    over the Welch p values of every depth together."""
    runs = with_fix(done(final))
    rows = []
    for depth, part in runs.groupby("depth"):
        arms = {fix: g for fix, g in part.groupby("fix")}
        if REFERENCE not in arms:
            continue
        table = replications.compare_arms({REFERENCE: arms[REFERENCE], **arms}, REFERENCE)
        table = table[table["arm"] != REFERENCE].assign(depth=depth)
        for col, holm in (("Welch p", "Welch p (Holm)"), (f"fisher p vs {REFERENCE}", "Fisher p (Holm)")):
            if col in table:
                ok = table[col].notna()
                table.loc[ok, holm] = stats.holm(table.loc[ok, col].to_numpy()) if ok.any() else None
        rows.append(table)
    if not rows:
        return pd.DataFrame()
    table = pd.concat(rows, ignore_index=True)
    if "Welch p" in table and table["Welch p"].notna().any():
        ok = table["Welch p"].notna()
        table.loc[ok, "Welch p (Holm, all depths)"] = stats.holm(table.loc[ok, "Welch p"].to_numpy())
    return table


def vs_reference_table(final: pd.DataFrame) -> str:
    t = vs_reference(final)
    if t.empty:
        return ""
    lines = []
    for _, r in t.iterrows():
        welch = r.get("test acc difference (Welch)")
        holm = r.get("Welch p (Holm)")
        lines.append([r["arm"], str(r["depth"]), f"{r['k']}/{r['n']}",
                      stats.fmt_p(r["Fisher p (Holm)"]) if pd.notna(r.get("Fisher p (Holm)")) else "–",
                      welch if isinstance(welch, str) else "– (a run failed)",
                      stats.fmt_p(holm) if pd.notna(holm) else "–",
                      stats.fmt_p(r["Welch p (Holm, all depths)"]) if pd.notna(holm) else "–",
                      "yes" if pd.notna(holm) and holm < 0.05 else "no"])  # fmt: skip
    header = ["fix", "depth", "learned", f"Fisher p vs {REFERENCE} (Holm)",
              f"test acc − {REFERENCE} [Welch 95 %, unadjusted]", "Welch p (Holm)",
              "Welch p (Holm over all depths)", "resolved"]  # fmt: skip
    return md_table(header, lines)


def endpoint_sensitivity(final: pd.DataFrame, epochs: pd.DataFrame, last: int = 3) -> pd.DataFrame:
    """The declared test (test accuracy after the last epoch) at other endpoints: per depth, each
    fix whose runs all learned against the reference, the difference of mean test accuracy after
    each of the `last` epochs and at each run's best-validation epoch, Welch p Holm-corrected over
    that depth's fixes at each endpoint. A robustness check, not a further test. `epochs` is a
    summary's epochs.csv (`run` = the row of its runs.csv); `final` that summary's runs.csv."""
    runs = with_fix(done(final)).assign(learned=learned)
    runs = runs[runs.groupby(["depth", "fix"])["learned"].transform("all")]
    ep = epochs[epochs["epoch"] > 0].merge(runs[["depth", "fix"]], left_on="run", right_index=True)
    n_epochs = int(ep["epoch"].max())
    best = ep.loc[ep.groupby("run")["val_acc"].idxmax()].assign(endpoint="best val")
    points = [
        ep[ep["epoch"] == e].assign(endpoint=f"epoch {e}") for e in range(n_epochs - last + 1, n_epochs + 1)
    ]
    rows = []
    for (depth, endpoint), part in pd.concat([*points, best]).groupby(["depth", "endpoint"], sort=False):
        ref = part.loc[part["fix"] == REFERENCE, "test_acc"]
        arms = [(fix, g["test_acc"]) for fix, g in part.groupby("fix") if fix != REFERENCE]
        if ref.empty or not arms:
            continue
        ps = [stats.welch_p(ref, acc) for _, acc in arms]
        for (fix, acc), p_holm in zip(arms, stats.holm(ps), strict=True):
            rows.append({"depth": depth, "fix": fix, "endpoint": endpoint,
                         "diff": acc.mean() - ref.mean(), "Holm p": p_holm})  # fmt: skip
    return pd.DataFrame(rows)


def endpoint_table(final: pd.DataFrame, epochs: pd.DataFrame) -> str:
    t = endpoint_sensitivity(final, epochs)
    if t.empty:
        return ""
    cells = t.assign(
        cell=[f"{d:+.3f} ({stats.fmt_p(p)})" for d, p in zip(t["diff"], t["Holm p"], strict=True)]
    )
    wide = cells.pivot_table(
        index=["fix", "depth"], columns="endpoint", values="cell", aggfunc="first", sort=False
    )
    wide = wide[list(dict.fromkeys(t["endpoint"]))]
    rows = [[fix, str(depth), *wide.loc[(fix, depth)]] for fix, depth in wide.index]
    return md_table(["fix", "depth", *wide.columns], rows)


def endpoint_learned_table(final: pd.DataFrame, epochs: pd.DataFrame, last: int = 3) -> str:
    """The success rates at other endpoints: per fix, k/n runs learned (the one rule, on that
    epoch's validation accuracy and loss) after each of the `last` epochs and at each run's
    best-validation epoch (early stopping's pick). A run that diverged before an epoch did not
    learn at it. Empty when the summary's epochs.csv has no validation losses."""
    if "val_loss" not in epochs or epochs["val_loss"].isna().all():
        return ""
    runs = with_fix(done(final))
    ep = epochs[epochs["epoch"] > 0].merge(runs[["depth", "fix"]], left_on="run", right_index=True)
    ep = ep.assign(learned=stats.learned(ep["val_acc"], [False] * len(ep), ep["val_loss"]))
    n_epochs = int(ep["epoch"].max())
    points = {f"epoch {e}": ep[ep["epoch"] == e] for e in range(n_epochs - last + 1, n_epochs + 1)}
    points["best val"] = ep.loc[ep.groupby("run")["val_acc"].idxmax()]
    n = runs.groupby(["fix", "depth"]).size()
    rows = []
    for (fix, depth), total in n.items():
        counts = [int(p[(p["fix"] == fix) & (p["depth"] == depth)]["learned"].sum()) for p in points.values()]
        rows.append([fix, str(depth), *(f"{k}/{total}" for k in counts)])
    return md_table(["fix", "depth", *points], rows)


def epoch_means_table(final: pd.DataFrame, epochs: pd.DataFrame) -> str:
    """Mean validation accuracy after each epoch, per fix (every run, failed ones too): the curves
    behind the endpoint check, as numbers."""
    ep = epochs[epochs["epoch"] > 0].merge(with_fix(final)[["depth", "fix"]], left_on="run", right_index=True)
    wide = ep.pivot_table(index=["fix", "depth"], columns="epoch", values="val_acc", aggfunc="mean")
    rows = [[fix, str(depth), *(f"{v:.3f}" for v in wide.loc[(fix, depth)])] for fix, depth in wide.index]
    return md_table(["fix", "depth", *(f"epoch {e}" for e in wide.columns)], rows)


def cost_table(bench: pd.DataFrame, rounds: pd.DataFrame | None = None) -> str:
    """bench_fixes.csv (python -m slopestudy.tools.bench --fixes) as fix rows x depth: ms per step and
    the ratio to the plain net's, both medians over interleaved rounds, with the ratios' quartiles;
    with the rounds (bench_fixes_rounds.csv), in how many rounds the fix was the slower one."""
    ratio = next(c for c in bench.columns if c.startswith("ratio_to_"))
    depths = sorted(bench["depth"].unique())
    cells = bench.set_index(["fix", "depth"])
    slower = None
    if rounds is not None:
        slower = (
            rounds.assign(slower=rounds[ratio] > 1).groupby(["fix", "depth"])["slower"].agg(["sum", "size"])
        )

    def cell(fix: str, d: int) -> str:
        c = cells.loc[(fix, d)]
        spread = f" [{c['ratio_q1']:.2f}, {c['ratio_q3']:.2f}]" if "ratio_q1" in c else ""
        count = ""
        if slower is not None and (fix, d) in slower.index and fix != ratio.removeprefix("ratio_to_"):
            count = (
                f", slower in {int(slower.loc[(fix, d), 'sum'])}/{int(slower.loc[(fix, d), 'size'])} rounds"
            )
        return f"{c['ms_per_step']:.1f} (×{c[ratio]:.2f}{spread}{count})"

    rows = [[fix, *(cell(fix, d) for d in depths)] for fix in dict.fromkeys(bench["fix"])]
    ref = ratio.removeprefix("ratio_to_")
    return md_table(["fix", *(f"depth {d}: ms/step (× {ref})" for d in depths)], rows)


def endpoint_section(results: Path, parts: dict[int, pd.DataFrame | None]) -> list[str]:
    """The endpoint check (differences and success rates) for every depth whose summary has
    epochs.csv (summaries keep it since e941cf9, with the losses since the learned rule's check)."""
    tables = []
    for d, part in parts.items():
        path = results / f"fixes_final_d{d}" / "epochs.csv"
        if part is None:
            continue
        if not path.exists():
            tables += [f"Depth {d}: no per-epoch records in its summary (written before they were kept).", ""]
            continue
        epochs = pd.read_csv(path)
        rates = endpoint_learned_table(part, epochs)
        tables += [f"Depth {d}, test accuracy − {REFERENCE} (Holm p):", "",
                   endpoint_table(part, epochs), "",
                   f"Depth {d}, runs that learned (k/n) at each endpoint:", "",
                   rates or "(its epochs.csv has no per-epoch validation loss: not checked)", "",
                   f"Depth {d}, mean validation accuracy after each epoch:", "",
                   epoch_means_table(part, epochs), ""]  # fmt: skip
    if not tables:
        return []
    return ["Is the declared endpoint fragile? The same comparison (test accuracy − "
            f"{REFERENCE}, Holm p over the depth's fixes in brackets) after each of the last epochs "
            "and at each run's best-validation epoch; a robustness check, not a further test:", "",
            *tables]  # fmt: skip


def fixes_train_block(results: Path) -> str:
    tuned, tune_runs = results / "fixes_tune" / "tuned.csv", committed(results, "fixes_tune")
    if not tuned.exists() or tune_runs is None:
        return "What fixes it, trained: not run yet."
    t = tuned_with_fix(pd.read_csv(tuned), tune_runs).sort_values(list(ROWS))
    out = protocol.tuned_section(t, ROWS, header="lr")  # no slope columns: only the leaky fixes have one
    parts = {d: committed(results, f"fixes_final_d{d}") for d in FINAL_DEPTHS}
    if all(p is None for p in parts.values()):
        return "\n".join([*out, "Final runs: not run yet."])
    final = pd.concat([p for p in parts.values() if p is not None], ignore_index=True)
    missing = [f"depth {d}" for d, p in parts.items() if p is None]
    if missing:
        out += [f"Final runs of {', '.join(missing)}: not run yet.", ""]
    out += ["### Trained: learned, accuracy and gradient ratio per fix", "", trained_table(final), "",
            f"Each fix against the plain net ({REFERENCE}) at the same depth; Holm within each depth "
            "(its fixes against the reference), 5 fresh seeds per arm; \"resolved\" = Holm-corrected "
            "Welch p < 0.05:", "", vs_reference_table(final), ""]  # fmt: skip
    out += endpoint_section(results, parts)
    bench = results / "bench_fixes.csv"
    if bench.exists():
        b = pd.read_csv(bench)
        how = (f"{b['rounds'].iloc[0]} interleaved rounds of {b['samples'].iloc[0]} samples, "
               f"{b['threads'].iloc[0]} thread, {b['data'].iloc[0]}; medians, "
               "the per-round ratios' quartiles in brackets")  # fmt: skip
        rounds = results / "bench_fixes_rounds.csv"
        if rounds.exists():
            how += "; every round in `results/bench_fixes_rounds.csv`"
        out += [f"### Cost per training step, side by side "
                f"(`python -m slopestudy.tools.bench --fixes`: {how})",
                "", cost_table(b, pd.read_csv(rounds) if rounds.exists() else None), "",
                # each ms median is over its own rounds; only a ratio pairs two fixes within a round
                "Compare fixes by the ratios (each round times every fix back to back); the ms "
                "columns' medians are taken per fix separately and are not a side-by-side comparison.",
                ""]  # fmt: skip
    return "\n".join(out)


# --- the forward check's table (results/forward_check/*.csv, `python -m slopestudy.tools.forward_check`) ---
FORWARD_CHECK_COLUMNS = {"measured": "measured", "plain": "plain recursion", "input_mix": "per-example q_in",
           "at_measured_q": "backward gain at measured q",
           "at_measured_units": "backward gain over the units"}  # fmt: skip


def forward_check_table(frame: pd.DataFrame) -> pd.DataFrame:
    """Per depth and width: mean ± sd over seeds of the measured decay and each prediction; the
    gap measured - at_measured_q (mean and largest) and their correlation over seeds (does the
    backward half follow each net?); the median q of the middle hidden layer, measured and from
    the per-example recursion (medians over examples both)."""
    rows = []
    for (depth, width), g in frame.groupby(["depth", "width"]):
        row = {"depth": depth, "width": width, "n": len(g)}
        # plain, input_mix: set by the batch (the seed moves the 4th digit)
        for c, name in FORWARD_CHECK_COLUMNS.items():
            row[name] = f"{g[c].mean():.3f}" if c in ("plain", "input_mix") else pm(g[c])
        gap = g["measured"] - g["at_measured_q"]
        row["gap to backward at measured q: mean, largest |.|, nets below"] = (
            f"{gap.mean():+.3f}, {gap.abs().max():.3f}, {int((gap < 0).sum())}/{len(gap)}"
        )
        row["r over seeds"] = f"{g['measured'].corr(g['at_measured_q']):.2f}"
        row["middle layer q, median over examples: measured (per-example recursion)"] = (
            f"{g['q_mid_measured'].median():.2g} ({g['q_mid_input_mix'].iloc[0]:.2g})"
        )
        rows.append(row)
    return pd.DataFrame(rows)
