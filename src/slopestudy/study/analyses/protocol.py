"""The validation protocol's tables, for any section that follows it (2: init x depth, 3: width x
depth, 5: init x depth on Fashion-MNIST): the learning rate each cell chose on validation, the
final runs' k/n learned and accuracy, and each slope against slope 0 with Holm and paired by seed.

Every function takes `rows`, the keys of a table row besides the slope (the columns are slopes);
the statistics are stats.py's: per cell k/n learned with its exact interval, the mean and its
t-interval over the runs that learned only, and the median of all runs where some failed; each
slope against slope 0 by Welch where neither side failed, else Fisher on the learned rates, and,
since the slopes of a cell share seeds (batch order, initial draws), also paired by seed; each
analysis Holm-corrected over all comparisons of its block.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from slopestudy.science import stats
from slopestudy.science.stats import fmt_ci, fmt_p
from slopestudy.summary.cells import SENSITIVITY, failed
from slopestudy.summary.collect import done
from slopestudy.summary.tables import ci_text, md_table

ROWS = ("init", "depth")
INITS = ("kaiming", "pytorch")  # the order of init rows

UNTRAINABLE = (
    "untrainable on the grid: every lr at chance; the lr with the lowest validation loss (at chance the "
    "validation loss usually falls as the lr shrinks, so mostly the grid's smallest)"
)


def grid(df: pd.DataFrame, value: Callable[[pd.Series], str], rows: tuple[str, ...] = ROWS,
         header: str | None = None) -> str:  # fmt: skip
    """`rows` x slope columns (rows in the frame's order), `value(row)` in each cell; with a
    `header`, one column of that name instead (rows that are not a slope apart: section 8's fixes)."""
    if header is not None:
        return md_table([*rows, header], [[*map(str, key), value(r)] for key, r in
                                          df.set_index(list(rows), drop=False).iterrows()])  # fmt: skip
    slopes = sorted(df["slope"].unique())
    lines = []
    for key, part in df.groupby(list(rows), sort=False):
        by_slope = {r["slope"]: r for _, r in part.iterrows()}
        lines.append([*map(str, key), *(value(by_slope[a]) if a in by_slope else "–" for a in slopes)])
    return md_table([*rows, *(f"a={a:g}" for a in slopes)], lines)


def order(df: pd.DataFrame, rows: tuple[str, ...] = ROWS, inits: pd.Series | None = None) -> pd.DataFrame:
    """Rows by `rows` (init in INITS' order), then slope; a summary of one init has no init
    column: it gets the one value of `inits` (its runs' init column)."""
    if "init" in rows and "init" not in df:
        df = df.assign(init=inits.iloc[0])
    rank = {init: i for i, init in enumerate(INITS)}
    keys = ["_r" if k == "init" else k for k in rows]
    df = df.assign(_r=df["init"].map(rank)) if "init" in rows else df.assign(_r=0)
    return df.sort_values([*keys, "slope"]).drop(columns="_r")


def tuned_by_init(results: Path, folder: str) -> pd.DataFrame | None:
    """The tuned.csv of each init's tuning summary (`folder` with `{init}`), one frame with an
    init column, in INITS' order; None when none is committed yet."""
    parts = [pd.read_csv(path).assign(init=init) for init in INITS
             if (path := results / folder.format(init=init) / "tuned.csv").exists()]  # fmt: skip
    return order(pd.concat(parts)) if parts else None


def untrainable(r: pd.Series) -> bool:
    """tuned.csv's flag; a tuned.csv from before the flag: the chosen lr never learned."""
    flag = r.get("untrainable_on_grid")
    return bool(flag) if flag is not None and pd.notna(flag) else r["failures"] >= r["n"]


def tuned_cell(r: pd.Series) -> str:
    """'0.05 (0.975; +0.001 over 0.1)': the lr, its mean val accuracy and its margin over the
    runner-up; an untrainable cell has no margin (every lr at chance)."""
    lr = f"{r['lr']:g}{'*' if r['at_edge'] else ''}"
    if untrainable(r):
        return f"{lr} (untrainable)"
    if r["failures"] >= r["n"]:
        return f"{lr} (never learned)"
    # with a failed run the choice was made on the mean over all runs (`score`), not on the
    # learners' mean accuracy: show that mean, and how many failed
    acc = (f"{r['val_acc']:.3f}" if not r["failures"] or "score" not in r
           else f"{r['score']:.3f} over all runs, {int(r['failures'])}/{int(r['n'])} failed")  # fmt: skip
    margin = r.get("margin")
    if margin is None or pd.isna(margin) or pd.isna(r.get("runner_up")):
        return f"{lr} ({acc})"
    return f"{lr} ({acc}; {margin:+.3f} over {r['runner_up']:g})"


def cells_list(t: pd.DataFrame, rows: tuple[str, ...] = ROWS) -> str:
    """' (pytorch depth 20 a=0, 0.01; ...)': the cells of `t`, grouped by `rows`."""
    if t.empty:
        return ""
    groups = [" ".join(f"{k} {v}" if k != "init" else str(v) for k, v in zip(rows, key, strict=True))
              + " a=" + ", ".join(f"{a:g}" for a in part["slope"])
              for key, part in t.groupby(list(rows), sort=False)]  # fmt: skip
    return " (" + "; ".join(groups) + ")"


def tuned_section(t: pd.DataFrame, rows: tuple[str, ...] = ROWS, budget: str = "2 seeds x 2 epochs",
                  header: str | None = None) -> list[str]:  # fmt: skip
    """The lr each cell chose (tuned.csv rows, ordered), with edges, untrainable cells and fragile
    margins counted below the grid."""
    edges = t[t["at_edge"]]
    bad = t[t.apply(untrainable, axis=1)]
    fragile = t[(t["margin"] < 0.005) & ~t.apply(untrainable, axis=1)] if "margin" in t else t.iloc[:0]
    by = t.groupby("init", sort=False)["grid"] if "init" in t else [("all", t["grid"])]
    grids = "; ".join(f"{i}: " + " or ".join(f"{g} ({n} cells)" for g, n in part.value_counts().items())
                      for i, part in by)  # fmt: skip
    return [
        f"### Learning rate chosen per cell on validation accuracy ({budget})",
        "",
        "`lr*`: the best value is at an edge of its grid. In brackets the mean validation accuracy there "
        "and its margin over the runner-up lr (the chosen lr is an estimate: a small margin is a fragile "
        "choice); only exactly equal mean scores count as a tie, which goes to the lower validation loss. "
        f"`untrainable`: {UNTRAINABLE}.",
        "",
        grid(t, tuned_cell, rows, header),
        "",
        f"{len(edges)} of {len(t)} cells chose an edge of the grid; {len(bad)} of {len(t)} are untrainable "
        f"on the grid{cells_list(bad, rows)}; {len(fragile)} of the {len(t) - len(bad)} trainable cells "
        f"(edges included) chose by a margin under 0.005 in mean validation accuracy. Grids: {grids}.",
        "",
    ]


def ci_cell(r: pd.Series) -> str:
    """tables.ci_text: 'k/n [exact]: mean [t] (over the runs that learned); median of all' ."""
    if "learned" not in r:  # a summary from before k/n: say only what it has
        text = fmt_ci(r["test_acc"], r["test_acc_lo"], r["test_acc_hi"])
        return text + (f" ({int(r['failures'])}/{int(r['n'])} failed)" if r["failures"] else "")
    strict = int(r["n"]) - int(r[SENSITIVITY])
    if strict != int(r["learned"]):  # runs between the two thresholds: half-learned, no mean of them
        rate = stats.fmt_rate(int(r["learned"]), int(r["n"]))
        at = f"{strict}/{int(r['n'])} at {stats.SECOND_THRESHOLD:g}"
        return f"{rate}; {at}; median {r['test_acc_median']:.3f}"
    return ci_text(r, "test_acc")


def final_section(folder: Path, rows: tuple[str, ...] = ROWS) -> list[str]:
    """A final-runs summary (accuracy_ci.csv, vs_slope0.csv, runs.csv): k/n and accuracy per
    cell, the differences against slope 0, and the plateau check."""
    if not (folder / "accuracy_ci.csv").exists():
        return ["Final runs: not run yet."]
    runs = pd.read_csv(folder / "runs.csv")
    ci = order(pd.read_csv(folder / "accuracy_ci.csv"), rows, runs.get("init"))
    out = [
        "### Test accuracy at each cell's lr: runs that learned, and their accuracy",
        "",
        f"k/n learned ({stats.LEARNED_RULE}) [exact Clopper–Pearson 95 % "
        "interval]: mean test accuracy [95 % t-interval] over the runs that learned only; where some failed, "
        "also the median of all n runs, and where the count differs at val acc >= "
        f"{stats.SECOND_THRESHOLD:g}, that count and the median only (runs between the two thresholds "
        "learned partly: no mean over them). No t-interval includes a run that failed.",
        "",
        grid(ci, ci_cell, rows),
        "",
    ]
    if (folder / "vs_slope0.csv").exists():
        vs = order(pd.read_csv(folder / "vs_slope0.csv"), rows, runs.get("init"))
        out += difference_section(vs if "p" not in vs else with_paired(vs, runs, rows), rows, seeds_of(runs))
    return out + [plateau_sentence(runs, rows), ""]


def seeds_of(runs: pd.DataFrame) -> str:
    seeds = sorted(int(s) for s in done(runs)["seed"].unique())
    contiguous = seeds == list(range(seeds[0], seeds[-1] + 1))
    return f"{seeds[0]}–{seeds[-1]}" if contiguous and len(seeds) > 2 else ", ".join(map(str, seeds))


def with_paired(vs: pd.DataFrame, runs: pd.DataFrame, rows: tuple[str, ...] = ROWS) -> pd.DataFrame:
    """vs_slope0 plus the paired-by-seed analysis: where Welch applies (neither side failed),
    the mean of the per-seed differences (slope minus slope 0, same `rows` and seed) with its
    t-interval and the paired t test's p (stats.paired_interval, paired_p); elsewhere the same
    Fisher p. p_paired_holm: Holm over all rows, like p_holm."""
    runs = done(runs)
    if "init" in rows and "init" not in runs:
        runs = runs.assign(init="")
    out_rows = []
    for _, r in vs.iterrows():
        same = pd.Series(True, index=runs.index)
        for k in rows:
            same &= runs[k] == r[k]
        base = runs[same & (runs["slope"] == 0)].set_index("seed")["test_acc"]
        this = runs[same & (runs["slope"] == r["slope"])].set_index("seed")["test_acc"]
        seeds = base.index.intersection(this.index)
        if r["test"] == "welch":
            a, b = base.loc[seeds].to_numpy(), this.loc[seeds].to_numpy()
            d, lo, hi = stats.paired_interval(a, b)
            out_rows.append(dict(d_paired=d, d_paired_lo=lo, d_paired_hi=hi, p_paired=stats.paired_p(a, b),
                                 pairs=len(seeds)))  # fmt: skip
        else:
            out_rows.append(dict(d_paired=math.nan, d_paired_lo=math.nan, d_paired_hi=math.nan,
                                 p_paired=r["p"], pairs=len(seeds)))  # fmt: skip
    out = vs.reset_index(drop=True).join(pd.DataFrame(out_rows))
    out["p_paired_holm"] = stats.holm(out["p_paired"])
    return out


def comparison_row(r: pd.Series, rows: tuple[str, ...] = ROWS) -> list[str]:
    k, k0 = int(r["n"] - r["failures"]), int(r["n_base"] - r["failures_base"])
    learned = f"{k}/{int(r['n'])} vs {k0}/{int(r['n_base'])}"
    welch = r["test"] == "welch"
    diff = fmt_ci(r["d_test_acc"], r["d_test_acc_lo"], r["d_test_acc_hi"]) if welch else "–"
    paired = fmt_ci(r["d_paired"], r["d_paired_lo"], r["d_paired_hi"]) if welch else "–"
    mark = lambda p: "**" if p < stats.ALPHA else ""  # noqa: E731
    return [*(str(r[k]) for k in rows), f"{r['slope']:g}", learned, diff, r["test"], fmt_p(r["p"]),
            f"{mark(r['p_holm'])}{fmt_p(r['p_holm'])}{mark(r['p_holm'])}", paired,
            fmt_p(r["p_paired"]) if welch else "(Fisher)",
            f"{mark(r['p_paired_holm'])}{fmt_p(r['p_paired_holm'])}{mark(r['p_paired_holm'])}"]  # fmt: skip


def difference_section(d: pd.DataFrame, rows: tuple[str, ...] = ROWS, seeds: str = "100–104") -> list[str]:
    """Each slope minus slope 0: Welch or Fisher, and paired by seed, each Holm-corrected over
    the block's comparisons; a summary from before the tests (no `p`): the Welch grid only."""
    if "p" not in d:
        return old_difference_section(d, rows)
    m = int(d["p"].notna().sum())
    welch = d[d["test"] == "welch"]
    excl = welch[(welch["d_test_acc_lo"] > 0) | (welch["d_test_acc_hi"] < 0)]
    excl_paired = welch[(welch["d_paired_lo"] > 0) | (welch["d_paired_hi"] < 0)]
    fisher = d[d["test"] == "fisher"]
    bound = welch[["d_test_acc_lo", "d_test_acc_hi"]].abs().max(axis=1)
    header = [*rows, "a", "learned (a vs 0)", "Δ test acc [Welch 95 %]", "test", "p", "p Holm",
              "Δ paired by seed [95 %]", "paired p", "paired p Holm"]  # fmt: skip
    same = " and ".join(rows)
    return [
        f"### Each slope's test accuracy minus slope 0's, same {same}",
        "",
        "Where both sides all learned: the difference of mean test accuracy with Welch's 95 % interval and "
        "p. Where either side has a failure (outcomes are bimodal): no mean difference; Fisher's exact test "
        f"of the learned rates. The slopes of a cell share seeds {seeds} (the same batch order and the same "
        "random draws for the initial weights), so the runs are also pairs: the paired columns take the "
        "per-seed differences (paired t interval and p, stats.paired_p; the Fisher cells keep Fisher's p). "
        f"Family: all {m} comparisons of this block; each analysis Holm-corrected over its {m} p-values; "
        f"**bold**: Holm p < {stats.ALPHA:.2f}.",
        "",
        md_table(header, [comparison_row(r, rows) for _, r in d.iterrows()]),
        "",
        f"Welch intervals that exclude 0 (raw): {len(excl)} of {len(welch)}; paired intervals: "
        f"{len(excl_paired)} of {len(welch)}. Raw p < 0.05: {int((d['p'] < stats.ALPHA).sum())} of {m} "
        f"(Welch/Fisher), {int((d['p_paired'] < stats.ALPHA).sum())} of {m} (paired/Fisher). "
        f"Survive Holm over the {m}: {int(d['resolved'].sum())} (Welch/Fisher), "
        f"{int((d['p_paired_holm'] < stats.ALPHA).sum())} (paired/Fisher). {len(fisher)} comparisons have a "
        f"failure on a side (Fisher). The largest |difference| a Welch interval allows: {bound.max():.3f}; "
        f"the median of those bounds: {bound.median():.3f}.",
        "",
        survivors_line(d, rows),
        "",
    ]


def survivors_line(d: pd.DataFrame, rows: tuple[str, ...] = ROWS) -> str:
    """Which differences survive Holm under each analysis, with their sign."""

    def name(r: pd.Series) -> str:
        return " ".join(str(r[k]) if k == "init" else f"{k} {r[k]}" for k in rows)

    def cells(mask: pd.Series, p: str) -> str:
        hits = d[mask]
        if hits.empty:
            return "none"
        return "; ".join(f"{name(r)} a={r['slope']:g} ({describe(r)}, Holm p {fmt_p(r[p])})"
                         for _, r in hits.iterrows())  # fmt: skip

    return (f"Survive Holm, Welch/Fisher: {cells(d['p_holm'] < stats.ALPHA, 'p_holm')}. "
            f"Paired/Fisher: {cells(d['p_paired_holm'] < stats.ALPHA, 'p_paired_holm')}.")  # fmt: skip


def describe(r: pd.Series) -> str:
    if r["test"] == "welch":
        return f"{r['d_test_acc']:+.3f}"
    k, k0 = int(r["n"] - r["failures"]), int(r["n_base"] - r["failures_base"])
    return f"learned {k}/{int(r['n'])} vs {k0}/{int(r['n_base'])}, Fisher"


def old_difference_section(d: pd.DataFrame, rows: tuple[str, ...] = ROWS) -> list[str]:
    """A summary from before the tests: each slope minus slope 0 (Welch)."""
    diff = grid(d, lambda r: fmt_ci(r["d_test_acc"], r["d_test_acc_lo"], r["d_test_acc_hi"]), rows)
    none = int(d["d_test_acc"].isna().sum())
    d = d.dropna(subset=["d_test_acc"])
    resolved = d[(d["d_test_acc_lo"] > 0) | (d["d_test_acc_hi"] < 0)]
    bound = d[["d_test_acc_lo", "d_test_acc_hi"]].abs().max(axis=1)
    return [
        f"### Each slope's test accuracy minus slope 0's, same {' and '.join(rows)} (Welch 95 % interval)",
        "",
        diff,
        "",
        f"Intervals that exclude 0: {len(resolved)} of {len(d)}"
        + (f" ({none} cells without a run that learned on one side: –)" if none else "")
        + f". The largest |difference| any interval allows: {bound.max():.3f}; the median of those bounds: "
        f"{bound.median():.3f}.",
        "",
    ]


def plateau_sentence(runs: pd.DataFrame, rows: tuple[str, ...] = ROWS) -> str:
    """How much the runs that learned still gained over their second half and their last epoch."""
    runs = done(runs)
    runs = runs[~failed(runs)]
    cells = runs.groupby([*rows, "slope"])
    gain, last = cells["val_gain_last_half"].mean(), cells["val_gain_last_epoch"].mean()
    epochs = int(runs["epochs"].max())
    return (f"Plateau check, mean per cell over the runs that learned: validation accuracy gained from "
            f"epoch {epochs // 2} to {epochs}: median {gain.median():+.4f}, largest {gain.max():+.4f} "
            f"({', '.join(map(str, gain.idxmax()))}); in the last epoch alone: median {last.median():+.4f}, "
            f"largest {last.max():+.4f} ({', '.join(map(str, last.idxmax()))}).")  # fmt: skip
