"""A summary as tables: the CSVs and tables.md (one Markdown renderer, one interval formatter).

Every grid is built by `grids` (depth rows, slope columns, one grid per variant of the other
keys) and rendered by `markdown_table`; every interval is written by stats.fmt_ci/fmt_rate.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from slopestudy.science import stats
from slopestudy.summary.cells import LEARNS, METRICS, SENSITIVITY, Summary, variants
from slopestudy.summary.tuning import tuned_cell_keys, tuning_scores

CI_HEADER = (
    f"k/n learned [exact 95 % interval]: mean [95 % t-interval] over the runs that learned ("
    f"{stats.LEARNED_RULE}); where some failed at either threshold, the median "
    f"of all n runs; 'k/n at {stats.SECOND_THRESHOLD:g}': the count that learned at that threshold, "
    "where it differs"
)
TUNED_HEADER = (
    "val/test accuracy at the chosen value: mean [95 % t-interval] over the seeds that learned; "
    f"learned: k/n [exact 95 % interval] ({stats.LEARNED_RULE}). Test accuracy is "
    "shown, never used to choose. at_edge: the best value is at the grid's edge. Chosen by the best "
    "mean val accuracy (diverged = 0); a tie, by the lowest mean val loss (diverged = infinite); a "
    "cell where no run learned (untrainable on the grid), by the lowest mean val loss. margin: the "
    "chosen value's mean val accuracy minus the runner-up's."
)
# The mean ± std tables, in order; True: with the theory value
MEAN_STD = [("test_acc", False), ("decay_step0", True), ("decay_end", True), ("grad_ratio_step0", False),
            ("grad_ratio_end", False), ("dead_frac_end", False), ("steps_to_90", False),
            ("kernel_gap_step0", True), ("kernel_gap_end", False)]  # fmt: skip
THEORY_OF = {
    "decay_step0": "decay_theory",
    "decay_end": "decay_theory",
    "kernel_gap_step0": "kernel_gap_theory",
}
FORMAT = {"kernel_gap_step0": ".3g", "kernel_gap_end": ".3g"}  # 1 - cos spans decades: significant digits


# --- rendering ----------------------------------------------------------------------------------
def markdown_table(table: pd.DataFrame, index: bool = True, compact: bool = False) -> str:
    """The one Markdown renderer: numeric columns right-aligned as numbers, text columns
    exactly as formatted (tabulate would otherwise re-read '1.000' as 1). `compact`: cells as
    given, no padding (the published page: a one-cell change is a one-line diff)."""
    if compact:
        frame = table.reset_index() if index else table
        lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * frame.shape[1]]
        return "\n".join(
            lines + ["| " + " | ".join(map(str, row)) + " |" for row in frame.itertuples(index=False)]
        )
    offset = 1 if index else 0
    text = [i + offset for i, dtype in enumerate(table.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    return table.to_markdown(index=index, disable_numparse=text or False)


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A compact grid of already formatted cells, from header and rows (the page's tables)."""
    return markdown_table(pd.DataFrame(rows, columns=header), index=False, compact=True)


def pm(values: pd.Series, digits: int = 3) -> str:
    """'mean ± std' over the non-missing values ('mean' for one, '–' for none); no '-0.000'."""
    values = values.dropna()
    if values.empty:
        return "–"
    mean = round(values.mean(), digits) + 0.0
    return f"{mean:.{digits}f} ± {values.std():.{digits}f}" if len(values) > 1 else f"{mean:.{digits}f}"


def grids(frame: pd.DataFrame, keys: list[str], text: Callable[[pd.Series], str]) -> dict[str, pd.DataFrame]:
    """depth x slope grids of `text(row)`, one per variant (the other differing keys)."""
    out = {}
    for label, part in variants(frame, keys):
        cells = part.assign(cell=part.apply(text, axis=1))
        table = cells.pivot_table(index="depth", columns="slope", values="cell", aggfunc="first")
        table.columns = [f"slope={c:g}" for c in table.columns]
        out[label] = table
    return out


def format_cell(row: pd.Series, metric: str, theory: bool) -> str:
    """'mean ± std (n)', std only with 2+ seeds, '[th x]' for the tables with a theory column."""
    n, mean = row[f"{metric}_n"], row[f"{metric}_mean"]
    if n == 0 or pd.isna(mean):
        return "–"
    f = FORMAT.get(metric, ".3f")
    text = f"{mean:{f}}" + (f" ± {row[f'{metric}_std']:{f}}" if n > 1 else "") + f" ({int(n)})"
    th = row.get(f"{THEORY_OF.get(metric, '')}_mean")
    return text + (f" [th {th:{f}}]" if theory and th is not None else "")


def ci_text(r: pd.Series, metric: str) -> str:
    """'5/5 [0.48, 1.00]: 0.971 [0.968, 0.974]'; where runs failed at either threshold, also the
    median of all runs ('4/5 [0.28, 0.99]: 0.962 over the 4 that learned; median 0.960'), and the count
    that learned at the second threshold where it differs ('...; 1/5 at 0.5')."""
    k, n = int(r["learned"]), int(r["n"])
    rate = stats.fmt_rate(k, n)
    if k == n:
        parts = [f"{rate}: {stats.fmt_ci(r[metric], r[f'{metric}_lo'], r[f'{metric}_hi'])}"]
    else:  # a partial cell: the learners' mean, no t-interval (over 2 runs it can pass 1)
        parts = [f"{rate}: {r[metric]:.3f} over the {k} that learned" if k else rate]
    strict = n - int(r[SENSITIVITY])
    if (k < n or strict != k) and pd.notna(r[f"{metric}_median"]):
        parts.append(f"median {r[f'{metric}_median']:.3f}")
    if strict != k:
        parts.append(f"{strict}/{n} at {stats.SECOND_THRESHOLD:g}")
    return "; ".join(parts)


def pivot(agg: pd.DataFrame, keys: list[str], metric: str, theory: bool = False) -> dict[str, pd.DataFrame]:
    """'mean ± std (n)' grids of one metric."""
    return grids(agg, keys, lambda r: format_cell(r, metric, theory))


def ci_pivot(ci: pd.DataFrame, keys: list[str], metric: str = "test_acc") -> dict[str, pd.DataFrame]:
    """`ci_text` grids of one accuracy."""
    return grids(ci, keys, lambda r: ci_text(r, metric))


def tuned_markdown(tuned: pd.DataFrame, key: str) -> str:
    show = tuned[tuned_cell_keys(tuned)].copy()
    show[key] = tuned[key]
    show["val acc"] = [stats.fmt_ci(*r) for r in tuned[["val_acc", "val_acc_lo", "val_acc_hi"]].values]
    show["test acc"] = [stats.fmt_ci(*r) for r in tuned[["test_acc", "test_acc_lo", "test_acc_hi"]].values]
    show["learned"] = [stats.fmt_rate(n - f, n) for f, n in tuned[["failures", "n"]].values]
    show["at edge"] = tuned["at_edge"].map({True: "EDGE", False: ""})
    show["chosen by"] = tuned["chosen_by"]
    show["runner-up (margin)"] = [
        "–" if pd.isna(v) else f"{v:g} ({m:+.3f})" for v, m in tuned[["runner_up", "margin"]].values
    ]
    show["grid"] = tuned["grid"]
    return markdown_table(show, index=False)


def compare_markdown(vs: pd.DataFrame) -> str:
    results = {"n", "failures", "n_base", "failures_base", "test", "p", "p_holm", "resolved"}
    show = vs[[c for c in vs.columns if c not in results and not c.startswith("d_")]].copy()
    show["Δ test acc [Welch]"] = [
        stats.fmt_ci(*r) for r in vs[["d_test_acc", "d_test_acc_lo", "d_test_acc_hi"]].values
    ]
    show["learned (this / slope 0)"] = [f"{n - a}/{n} / {m - b}/{m}" for a, n, b, m in
                                       vs[["failures", "n", "failures_base", "n_base"]].values]  # fmt: skip
    show["test"] = vs["test"]
    show["p"] = vs["p"].map(stats.fmt_p)
    show["p (Holm)"] = vs["p_holm"].map(stats.fmt_p)
    show["resolved"] = vs["resolved"].map({True: "yes", False: ""})
    return markdown_table(show, index=False)


def markdown_sections(markdown: str) -> dict[str, str]:
    """tables.md as one TensorBoard text per section (Text tab: `tables/NN ...`)."""
    parts = [p for p in ("\n" + markdown).split("\n## ") if p.strip()]
    out = {"tables/00 notes": parts[0].replace("# Sweep summary", "").strip() or "(no notes)"}
    for i, part in enumerate(parts[1:], 1):
        title, _, body = part.partition("\n")
        slug = re.sub(r"[^\w.-]+", "_", title[:50]).strip("_")
        out[f"tables/{i:02d}_{slug}"] = f"**{title}**\n{body}"
    return out


# --- the sections of tables.md, each writing its CSV ------------------------------------------
def _tuned_section(s: Summary, key: str) -> list[str]:
    s.tuned.to_csv(s.out_dir / "tuned.csv", index=False)
    tuning_scores(s.runs, key, s.keys).to_csv(s.out_dir / "tuning_scores.csv", index=False)
    return [f"## {key} chosen per cell on validation accuracy", "", TUNED_HEADER, "",
            tuned_markdown(s.tuned, key), ""]  # fmt: skip


def _ci_sections(s: Summary) -> list[str]:
    s.ci.to_csv(s.out_dir / "accuracy_ci.csv", index=False)
    md = []
    for metric, title in (("val_acc", "validation accuracy"), ("test_acc", "test accuracy")):
        if metric not in s.ci or s.ci[f"{metric}_median"].isna().all():
            continue
        for label, table in ci_pivot(s.ci, s.keys, metric).items():
            md += [f"## {title}, 95 % CI — {label}", "", CI_HEADER, "", markdown_table(table), ""]
    return md


def _compare_section(s: Summary) -> list[str]:
    s.vs_base.to_csv(s.out_dir / "vs_slope0.csv", index=False)
    m = int(s.vs_base["p"].notna().sum())
    return ["## test accuracy minus slope 0's, same other keys", "",
            "Where neither side has a failure: difference of mean test accuracy [Welch 95 % interval], "
            "Welch's p. Where either side has one (outcomes are bimodal): Fisher's exact test of the "
            f"learned rates, no mean difference. p raw and Holm-adjusted over the table's {m} tests; "
            f"resolved: Holm p < {stats.ALPHA:.2f}.", "",
            compare_markdown(s.vs_base), ""]  # fmt: skip


def _phase_section(s: Summary) -> list[str]:
    s.phase.to_csv(s.out_dir / "phase_boundary.csv", index=False)
    best = s.phase[s.phase["best"]]
    return ["## Phase diagram: the edge of trainability against theory", "",
            f"Per slope: the deepest net with mean val accuracy >= {LEARNS} at each sigma^2 "
            "(`boundary`, gain:depth), and the contour depth·|log10 g| = k that fits it best "
            "(rms error in log10 depth). Critical sigma^2 = 2/(1+a^2).", "",
            markdown_table(best, index=False), "", "All contours:", "",
            markdown_table(s.phase.drop(columns=["boundary"]), index=False), ""]  # fmt: skip


def _prelu_section(s: Summary) -> list[str]:
    s.prelu.to_csv(s.out_dir / "prelu_slopes.csv", index=False)
    keys = [c for c in s.prelu.columns if c not in ("layer", "n") and not c.startswith("learned_slope")]
    values = s.prelu[["learned_slope", "learned_slope_lo", "learned_slope_hi"]].values
    show = s.prelu.assign(cell=[stats.fmt_ci(*r, digits=2) for r in values])
    table = show.pivot_table(index=keys, columns="layer", values="cell", aggfunc="first")
    table.columns = [f"layer {c}" for c in table.columns]
    return ["## PReLU: learned slope per hidden layer at the end", "",
            "mean [95 % t-interval] over seeds; layer 0 = input side", "",
            markdown_table(table), ""]  # fmt: skip


def _mean_std_sections(s: Summary) -> list[str]:
    """The mean ± std grids of every metric (s.tables), each also as its own CSV."""
    specs = list(MEAN_STD)
    if "val_acc_n" in s.agg and s.agg["val_acc_mean"].notna().any():
        specs.insert(0, ("val_acc", False))
    md = []
    for metric, theory in specs:
        if metric.startswith("kernel") and not (f"{metric}_n" in s.agg and s.agg[f"{metric}_n"].any()):
            continue  # runs recorded before the kernel probe, or kernel_size=0
        title = METRICS[metric]
        s.tables[title] = pivot(s.agg, s.keys, metric, theory)
        for label, table in s.tables[title].items():
            what = "mean ± std (n seeds)" + (", [th = theory]" if theory else "")
            md += [f"## {title} — {label}", "", what, "", markdown_table(table), ""]
            slug = label.replace(", ", "_").replace("=", "-") if label != "all runs" else "all"
            table.to_csv(s.out_dir / f"{metric}__{slug}.csv")
    return md


def committed(results: Path, summary: str, table: str = "runs.csv") -> pd.DataFrame | None:
    """One table of a committed summary, results/<summary>/<table>; None if it is not there yet
    (the summary not run, or a summary without that table). The one reader of what
    write_tables writes: the study runner, the page and the analyses all read through it."""
    path = results / summary / table
    return pd.read_csv(path) if path.exists() else None


def write_tables(s: Summary, tune_key: str | None = None) -> None:
    """runs.csv, aggregate.csv, one CSV per table, and tables.md (also kept in s.markdown)."""
    s.runs.to_csv(s.out_dir / "runs.csv", index=False)
    if not s.epochs.empty:  # accuracy per run and evaluation (`run`: the row of runs.csv)
        s.epochs.to_csv(s.out_dir / "epochs.csv", index=False)
    s.agg.to_csv(s.out_dir / "aggregate.csv", index=False)
    kernel = s.layers[s.layers["quantity"].str.startswith("kernel_cos")] if not s.layers.empty else s.layers
    if not kernel.empty:  # the kernel probe per run and layer (`run`: the row of runs.csv)
        kernel.to_csv(s.out_dir / "kernel_layers.csv", index=False)
    md = ["# Sweep summary", "", *[f"- {n}" for n in s.notes], ""]
    if s.agg.empty:
        md.append("No completed runs to tabulate.")
    sections = [
        (s.tuned is not None, lambda: _tuned_section(s, tune_key)),
        (not s.ci.empty, lambda: _ci_sections(s)),
        (not s.vs_base.empty, lambda: _compare_section(s)),
        (not s.phase.empty, lambda: _phase_section(s)),
        (not s.prelu.empty, lambda: _prelu_section(s)),
        (not s.agg.empty, lambda: _mean_std_sections(s)),
    ]
    for present, section in sections:
        if present:
            md += section()
    s.markdown = "\n".join(md)
    (s.out_dir / "tables.md").write_text(s.markdown)
