"""Section 2 of results/README.md, the fair comparison, from its committed summaries.

Per optimizer (sgd, adam): results/fair_tune_<opt>_<init>/tuned.csv and tuning_scores.csv (the
learning rate chosen per cell on validation), results/fair_final_<opt>/{accuracy_ci,vs_slope0,
runs}.csv (each cell at its lr, fresh seeds); and results/fair_long_sgd_pytorch/,
fair_24ep_sgd_pytorch/ (the never-learning cells trained 8 and 24 epochs). A summary not written
yet is reported as not run yet. Each block is one marker block of the page (`blocks`), and all
three together are results/fair.md (`fair_md`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from slopestudy.analyses.page import md_table
from slopestudy.cells import failed
from slopestudy.collect import done
from slopestudy.records import DONE
from slopestudy.stats import NEVER_LEARNED, fmt_ci, fmt_p

INITS = ("kaiming", "pytorch")
LONG_CHECKS = (("fair_long_sgd_pytorch", "8 epochs (4x the tuning budget)"),
               ("fair_24ep_sgd_pytorch", "24 epochs (4x the final runs' 6)"))  # fmt: skip


def grid(df: pd.DataFrame, value: Callable[[pd.Series], str]) -> str:
    """init x depth rows (in the frame's order), slope columns, `value(row)` in each cell."""
    slopes = sorted(df["slope"].unique())
    rows = []
    for (init, depth), part in df.groupby(["init", "depth"], sort=False):
        by_slope = {r["slope"]: r for _, r in part.iterrows()}
        rows.append([str(init), str(depth), *(value(by_slope[a]) if a in by_slope else "–" for a in slopes)])
    return md_table(["init", "depth", *(f"a={a:g}" for a in slopes)], rows)


def order(df: pd.DataFrame, inits: pd.Series | None = None) -> pd.DataFrame:
    """Rows by init (INITS' order), depth, slope; a summary of one init has no init column:
    it gets the one value of `inits` (its runs' init column)."""
    if "init" not in df:
        df = df.assign(init=inits.iloc[0])
    rank = {init: i for i, init in enumerate(INITS)}
    return df.assign(_r=df["init"].map(rank)).sort_values(["_r", "depth", "slope"]).drop(columns="_r")


def tuned_cell(r: pd.Series) -> str:
    lr = f"{r['lr']:g}{'*' if r['at_edge'] else ''}"
    return f"{lr} (never learned)" if r["failures"] >= r["n"] else f"{lr} ({r['val_acc']:.3f})"


def tuned_section(results: Path, opt: str) -> list[str]:
    parts = [pd.read_csv(path).assign(init=init) for init in INITS
             if (path := results / f"fair_tune_{opt}_{init}" / "tuned.csv").exists()]  # fmt: skip
    if not parts:
        return ["Tuning: not run yet."]
    t = order(pd.concat(parts))
    edges = t[t["at_edge"]]
    grids = "; ".join(f"{i}: " + " or ".join(f"{g} ({n} cells)" for g, n in part.value_counts().items())
                      for i, part in t.groupby("init", sort=False)["grid"])  # fmt: skip
    return [
        "### Learning rate chosen per cell on validation accuracy (2 seeds x 2 epochs)",
        "",
        "`lr*`: the best value is at an edge of its grid; in brackets the mean validation accuracy there.",
        "",
        grid(t, tuned_cell),
        "",
        f"{len(edges)} of {len(t)} cells chose an edge of the grid; grids: {grids}.",
        "",
    ]


def scores_section(results: Path, opt: str, init: str) -> list[str]:
    """Mean validation accuracy at every lr of the grid, per cell: the curve each choice came from."""
    path = results / f"fair_tune_{opt}_{init}" / "tuning_scores.csv"
    if not path.exists():
        return []
    t = pd.read_csv(path).sort_values(["depth", "slope"])
    lrs = [c for c in t.columns if c.startswith("lr=")]
    rows = [[str(int(r["depth"])), f"{r['slope']:g}", *("–" if pd.isna(r[c]) else f"{r[c]:.3f}" for c in lrs)]
            for _, r in t.iterrows()]  # fmt: skip
    title = f"### {opt}, {init} init: mean validation accuracy at each lr (2 seeds x 2 epochs; diverged = 0)"
    return [title, "", md_table(["depth", "slope", *lrs], rows), ""]


def ci_cell(r: pd.Series) -> str:
    text = fmt_ci(r["test_acc"], r["test_acc_lo"], r["test_acc_hi"])
    return text + (f" ({int(r['failures'])}/{int(r['n'])})" if r["failures"] else "")


def final_section(results: Path, opt: str) -> list[str]:
    folder = results / f"fair_final_{opt}"
    if not (folder / "accuracy_ci.csv").exists():
        return ["Final runs: not run yet."]
    runs = pd.read_csv(folder / "runs.csv")
    ci = order(pd.read_csv(folder / "accuracy_ci.csv"), runs["init"])
    out = [
        "### Test accuracy at each cell's lr: mean [95 % t-interval] over the seeds that learned",
        "",
        f"(k/n): runs that diverged or never learned (val acc < {NEVER_LEARNED}), out of n; not in the mean.",
        "",
        grid(ci, ci_cell),
        "",
    ]
    if (folder / "vs_slope0.csv").exists():
        out += difference_section(order(pd.read_csv(folder / "vs_slope0.csv"), runs["init"]))
    return out + [plateau_sentence(runs), ""]


def difference_section(d: pd.DataFrame) -> list[str]:
    """Each slope minus slope 0 (Welch), and how many intervals exclude 0."""
    diff = grid(d, lambda r: fmt_ci(r["d_test_acc"], r["d_test_acc_lo"], r["d_test_acc_hi"]))
    none = int(d["d_test_acc"].isna().sum())
    holm = holm_sentence(d)
    d = d.dropna(subset=["d_test_acc"])
    resolved = d[(d["d_test_acc_lo"] > 0) | (d["d_test_acc_hi"] < 0)]
    bound = d[["d_test_acc_lo", "d_test_acc_hi"]].abs().max(axis=1)
    return [
        "### Each slope's test accuracy minus slope 0's, same init and depth (Welch 95 % interval)",
        "",
        diff,
        "",
        f"Intervals that exclude 0: {len(resolved)} of {len(d)}{without_interval(none, 'p' in d)}. "
        f"The largest |difference| any interval allows: {bound.max():.3f}; the median of those bounds: "
        f"{bound.median():.3f}.{holm}",
        "",
    ]


def without_interval(cells: int, tested: bool) -> str:
    """Why `cells` comparisons have no Welch interval. A summary with tests (a `p` column) leaves
    out every cell with a failure on either side and tests those by Fisher; an earlier summary
    (no `p`) left out only the cells where one side had no run that learned."""
    if not cells:
        return ""
    if tested:
        return (
            f" ({cells} cells with a failure on either side, compared by Fisher's test on the learned "
            "rates instead: –)"
        )
    return f" ({cells} cells without a run that learned on one side: –)"


def holm_sentence(d: pd.DataFrame) -> str:
    """' Raw p < 0.05 in ...': the differences that survive Holm's correction over the table's tests."""
    if "p_holm" not in d:  # a summary written before the tests were added
        return ""
    tests = d.dropna(subset=["p"])
    survive = tests[tests["resolved"]]
    cells = "; ".join(f"{r['init']} depth {r['depth']} a={r['slope']:g} ({r['test']}, Holm p "
                      f"{fmt_p(r['p_holm'])})" for _, r in survive.iterrows())  # fmt: skip
    return (f" Raw p < 0.05 in {int((tests['p'] < 0.05).sum())} of {len(tests)} tests (Welch where neither "
            f"side failed, else Fisher); after Holm's correction over all {len(tests)}, {len(survive)} "
            f"resolved" + (f": {cells}." if cells else "."))  # fmt: skip


def plateau_sentence(runs: pd.DataFrame) -> str:
    """How much the runs that learned still gained over their second half and their last epoch."""
    runs = done(runs)
    runs = runs[~failed(runs)]
    cells = runs.groupby(["init", "depth", "slope"])
    gain, last = cells["val_gain_last_half"].mean(), cells["val_gain_last_epoch"].mean()
    epochs = int(runs["epochs"].max())
    return (f"Plateau check, mean per cell over the runs that learned: validation accuracy gained from "
            f"epoch {epochs // 2} to {epochs}: median {gain.median():+.4f}, largest {gain.max():+.4f} "
            f"({', '.join(map(str, gain.idxmax()))}); in the last epoch alone: median {last.median():+.4f}, "
            f"largest {last.max():+.4f} ({', '.join(map(str, last.idxmax()))}).")  # fmt: skip


def long_section(results: Path) -> list[str]:
    """The cells that never learned (default init, depth 20/30), trained 4x the tuning budget and
    4x the final budget at lr 0.05: did any of them learn after all?"""
    out = []
    for name, label in LONG_CHECKS:
        path = results / name / "runs.csv"
        if not path.exists():
            out += [f"{label}: not run yet.", ""]
            continue
        runs = pd.read_csv(path)
        learned = runs["status"].isin(DONE) & ~failed(runs)
        out += [f"- {label}, lr {', '.join(f'{v:g}' for v in sorted(runs['lr'].unique()))}, depths "
                f"{', '.join(map(str, sorted(runs['depth'].unique())))} x slopes "
                f"{', '.join(f'{v:g}' for v in sorted(runs['slope'].unique()))}: "
                f"**{int(learned.sum())} of {len(runs)} runs learned** (val acc >= {NEVER_LEARNED}); "
                f"highest final val acc {runs['val_acc'].max():.3f}, lowest final train loss "
                f"{runs['train_loss'].min():.4f} (chance: ln 10 = 2.3026), "
                f"{int((runs['status'] == 'diverged').sum())} diverged (`results/{name}/`)."]  # fmt: skip
    return [*out, ""]


def optimizer_block(results: Path, opt: str) -> str:
    """Tuning, the default init's tuning curves, and the final runs of one optimizer."""
    tuning = [*tuned_section(results, opt), *scores_section(results, opt, "pytorch")]
    return "\n".join([*tuning, *final_section(results, opt)])


def blocks(results: Path) -> dict[str, str]:
    """The three marker blocks of section 2: name -> Markdown."""
    return {"sgd": optimizer_block(results, "sgd"), "long": "\n".join(long_section(results)),
            "adam": optimizer_block(results, "adam")}  # fmt: skip


def fair_md(results: Path) -> str:
    """results/fair.md: the three blocks on one page."""
    parts = ["## Fair comparison (generated by python -m slopestudy.study report)",
             *(f"## {name}\n\n{body}" for name, body in blocks(results).items())]  # fmt: skip
    return "\n\n".join(parts) + "\n"
