"""The fair training comparison's tables for results/README.md, from the committed summaries.

    python scripts/fair_tables.py          # writes results/fair.md and the tables in results/README.md

Per optimizer (sgd, adam) it reads results/fair_tune_<opt>_<init>/tuned.csv (learning rate chosen
per cell on validation) and results/fair_final_<opt>/{accuracy_ci,vs_slope0,runs}.csv (each cell at
its lr, fresh seeds), all written by `scripts/fair_study.sh`, and results/fair_long_sgd_pytorch/
and fair_24ep_sgd_pytorch/ (the never-learning cells trained 8 and 24 epochs). Nothing is typed
in by hand; a missing summary is reported as not run yet. Each block goes into results/README.md
between its own markers (`<!-- fair_tables.py <block>: begin -->` ... `end -->`).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.cells import failed
from slopestudy.records import DONE
from slopestudy.stats import NEVER_LEARNED, fmt_ci, fmt_p

RESULTS = Path(__file__).resolve().parents[1] / "results"
INITS = ("kaiming", "pytorch")


def grid(df: pd.DataFrame, value) -> str:
    """init x depth rows, slope columns, `value(row)` in each cell."""
    slopes = sorted(df["slope"].unique())
    lines = ["| init | depth | " + " | ".join(f"a={a:g}" for a in slopes) + " |",
             "|---|---|" + "---|" * len(slopes)]  # fmt: skip
    for (init, depth), part in df.groupby(["init", "depth"], sort=False):
        by_slope = {r["slope"]: r for _, r in part.iterrows()}
        cells = [value(by_slope[a]) if a in by_slope else "–" for a in slopes]
        lines.append(f"| {init} | {depth} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def order(df: pd.DataFrame, inits: pd.Series | None = None) -> pd.DataFrame:
    if "init" not in df:  # one init only: the summary's cells do not split by it
        df = df.assign(init=inits.iloc[0])
    rank = {init: i for i, init in enumerate(INITS)}
    return df.assign(_r=df["init"].map(rank)).sort_values(["_r", "depth", "slope"]).drop(columns="_r")


def tuned_cell(r: pd.Series) -> str:
    lr = f"{r['lr']:g}{'*' if r['at_edge'] else ''}"
    return f"{lr} (never learned)" if r["failures"] >= r["n"] else f"{lr} ({r['val_acc']:.3f})"


def tuned_section(opt: str) -> list[str]:
    parts = []
    for init in INITS:
        path = RESULTS / f"fair_tune_{opt}_{init}" / "tuned.csv"
        if path.exists():
            parts.append(pd.read_csv(path).assign(init=init))
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


def scores_section(opt: str, init: str) -> list[str]:
    """Mean validation accuracy at every lr of the grid, per cell: the curve each choice came from."""
    path = RESULTS / f"fair_tune_{opt}_{init}" / "tuning_scores.csv"
    if not path.exists():
        return []
    t = pd.read_csv(path).sort_values(["depth", "slope"])
    lrs = [c for c in t.columns if c.startswith("lr=")]
    title = f"### {opt}, {init} init: mean validation accuracy at each lr (2 seeds x 2 epochs; diverged = 0)"
    lines = [title, "",
             "| depth | slope | " + " | ".join(lrs) + " |", "|---|---|" + "---|" * len(lrs)]  # fmt: skip
    for _, r in t.iterrows():
        lines.append(f"| {int(r['depth'])} | {r['slope']:g} | "
                     + " | ".join("–" if pd.isna(r[c]) else f"{r[c]:.3f}" for c in lrs) + " |")  # fmt: skip
    return [*lines, ""]


def ci_cell(r: pd.Series) -> str:
    text = fmt_ci(r["test_acc"], r["test_acc_lo"], r["test_acc_hi"])
    return text + (f" ({int(r['failures'])}/{int(r['n'])})" if r["failures"] else "")


def final_section(opt: str) -> list[str]:
    folder = RESULTS / f"fair_final_{opt}"
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
    vs = folder / "vs_slope0.csv"
    if vs.exists():
        d = order(pd.read_csv(vs), runs["init"])
        diff = grid(d, lambda r: fmt_ci(r["d_test_acc"], r["d_test_acc_lo"], r["d_test_acc_hi"]))
        none = int(d["d_test_acc"].isna().sum())  # a failure on either side: Fisher's test instead
        holm = _holm_sentence(d)
        d = d.dropna(subset=["d_test_acc"])
        resolved = d[(d["d_test_acc_lo"] > 0) | (d["d_test_acc_hi"] < 0)]
        bound = d[["d_test_acc_lo", "d_test_acc_hi"]].abs().max(axis=1)
        out += [
            "### Each slope's test accuracy minus slope 0's, same init and depth (Welch 95 % interval)",
            "",
            diff,
            "",
            f"Intervals that exclude 0: {len(resolved)} of {len(d)}"
            + (
                f" ({none} cells with a failure on either side, compared by Fisher's test on the learned "
                "rates instead: –)"
                if none
                else ""
            )
            + ". The largest |difference| any "
            f"interval allows: {bound.max():.3f}; the median of those bounds: {bound.median():.3f}.{holm}",
            "",
        ]
    runs = runs[runs["status"].isin(DONE) & ~failed(runs)]
    cells = runs.groupby(["init", "depth", "slope"])
    gain, last = cells["val_gain_last_half"].mean(), cells["val_gain_last_epoch"].mean()
    epochs = int(runs["epochs"].max())
    out += [
        f"Plateau check, mean per cell over the runs that learned: validation accuracy gained from "
        f"epoch {epochs // 2} to {epochs}: median {gain.median():+.4f}, largest {gain.max():+.4f} "
        f"({', '.join(map(str, gain.idxmax()))}); in the last epoch alone: median {last.median():+.4f}, "
        f"largest {last.max():+.4f} ({', '.join(map(str, last.idxmax()))}).",
        "",
    ]
    return out


def _holm_sentence(d: pd.DataFrame) -> str:
    """' After Holm ...': the differences that survive the correction over the table's tests."""
    if "p_holm" not in d:  # a summary written before the tests were added
        return ""
    tests = d.dropna(subset=["p"])
    survive = tests[tests["resolved"]]
    cells = "; ".join(f"{r['init']} depth {r['depth']} a={r['slope']:g} ({r['test']}, Holm p "
                      f"{fmt_p(r['p_holm'])})" for _, r in survive.iterrows())  # fmt: skip
    return (f" Raw p < 0.05 in {int((tests['p'] < 0.05).sum())} of {len(tests)} tests (Welch where neither "
            f"side failed, else Fisher); after Holm's correction over all {len(tests)}, {len(survive)} "
            f"resolved" + (f": {cells}." if cells else "."))  # fmt: skip


def long_section() -> list[str]:
    """The cells that never learned (default init, depth 20/30), trained 4x the tuning
    budget and 4x the final budget at lr 0.05: did any of them learn after all?"""
    out = []
    checks = (("fair_long_sgd_pytorch", "8 epochs (4x the tuning budget)"),
              ("fair_24ep_sgd_pytorch", "24 epochs (4x the final runs' 6)"))  # fmt: skip
    for name, label in checks:
        path = RESULTS / name / "runs.csv"
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
                f"{runs['train_loss'].min():.4f} "
                f"(chance: ln 10 = 2.3026), {int((runs['status'] == 'diverged').sum())} diverged "
                f"(`results/{name}/`)."]  # fmt: skip
    return [*out, ""]


BLOCKS = {
    "sgd": lambda: [*tuned_section("sgd"), *scores_section("sgd", "pytorch"), *final_section("sgd")],
    "long": long_section,
    "adam": lambda: [*tuned_section("adam"), *scores_section("adam", "pytorch"), *final_section("adam")],
}


def main() -> None:
    blocks = {name: "\n".join(make()) for name, make in BLOCKS.items()}
    text = "\n\n".join(["## Fair comparison (generated by scripts/fair_tables.py)",
                         *(f"## {name}\n\n{body}" for name, body in blocks.items())])  # fmt: skip
    (RESULTS / "fair.md").write_text(text + "\n")
    # The same tables in results/README.md, between their markers, so the findings quote them as made.
    for name, body in blocks.items():
        write_between_markers(RESULTS / "README.md", f"fair_tables.py {name}", body)
    print(text)


def write_between_markers(page: Path, name: str, body: str) -> None:
    """Replace what stands between `<!-- {name}: begin -->` and `<!-- {name}: end -->` in `page`."""
    text = page.read_text()
    begin, end = f"<!-- {name}: begin -->", f"<!-- {name}: end -->"
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        page.write_text(f"{head}{begin}\n{body}\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    main()
