"""The learned-slope (PReLU) tables for results/README.md, from the committed summaries.

    python scripts/learned_tables.py     # writes results/learned.md and the block in results/README.md

Reads results/learned_slope/{prelu_slopes,runs}.csv (`+experiment=learned_slope`, summarized) and
results/fair_final_sgd/runs.csv (the fixed-slope twins: same init, depth, starting slope, lr and
epochs). Two tables: the learned slope next to the input, in the middle and next to the output
(mean [95 % t-interval] over seeds), and PReLU's test accuracy minus its fixed-slope twin's (Welch
95 % interval; failures k/n). Nothing is typed in by hand.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from fair_tables import write_between_markers  # scripts/, next to this file

from slopestudy.cells import failed
from slopestudy.records import DONE
from slopestudy.stats import NEVER_LEARNED, fmt_ci, welch_interval

RESULTS = Path(__file__).resolve().parents[1] / "results"
CELL = ["init", "prelu_params", "slope", "depth"]


def slopes_table(slopes: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """Per cell: the learned slope at the first, middle and last hidden layer, and the mean."""
    rows = []
    for cell, part in slopes.sort_values("layer").groupby(CELL, sort=True):
        part = part.reset_index(drop=True)
        pick = {"first": part.iloc[0], "middle": part.iloc[len(part) // 2], "last": part.iloc[-1]}
        row = dict(zip(CELL, cell, strict=True))
        for name, r in pick.items():
            row[name] = fmt_ci(r["learned_slope"], r["learned_slope_lo"], r["learned_slope_hi"])
            row[f"{name}_value"] = r["learned_slope"]
        row["mean over layers"] = f"{part['learned_slope'].mean():.3f}"
        row["n"] = int(part["n"].min())
        rows.append(row)
    t = pd.DataFrame(rows)
    lines = ["| init | per | start | depth | first hidden layer | middle | last hidden layer | mean | n |",
             "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in t.iterrows():
        lines.append(f"| {r['init']} | {r['prelu_params']} | {r['slope']:g} | {r['depth']} | {r['first']} | "
                     f"{r['middle']} | {r['last']} | {r['mean over layers']} | {r['n']} |")  # fmt: skip
    return "\n".join(lines), t


def twin_table(prelu: pd.DataFrame, fixed: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """PReLU against LeakyReLU fixed at the starting slope, same init and depth."""
    prelu = prelu[prelu["status"].isin(DONE)].assign(failed=lambda d: failed(d))
    fixed = fixed[fixed["status"].isin(DONE)].assign(failed=lambda d: failed(d))
    rows = []
    for cell, part in prelu.groupby(CELL, sort=True):
        row = dict(zip(CELL, cell, strict=True))
        twin = fixed[(fixed["init"] == row["init"]) & (fixed["slope"] == row["slope"])
                     & (fixed["depth"] == row["depth"])]  # fmt: skip
        ok, twin_ok = part[~part["failed"]], twin[~twin["failed"]]
        diff = welch_interval(twin_ok["test_acc"], ok["test_acc"])
        # a twin only if trained alike; otherwise the row says so (lr marked with †)
        alike = set(twin["lr"]) == set(part["lr"]) and set(twin["epochs"]) == set(part["epochs"])
        row.update(lr=part["lr"].iloc[0], alike=alike, n=len(part), failures=int(part["failed"].sum()),
                   n_fixed=len(twin), failures_fixed=int(twin["failed"].sum()),
                   prelu=ok["test_acc"].mean(), fixed=twin_ok["test_acc"].mean(),
                   d=diff[0], d_lo=diff[1], d_hi=diff[2])  # fmt: skip
        rows.append(row)
    t = pd.DataFrame(rows)
    lines = ["| init | per | start | depth | lr | PReLU test acc (k/n failed) | fixed slope (k/n) "
             "| PReLU − fixed [95 %] |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for _, r in t.iterrows():
        acc = "–" if pd.isna(r["prelu"]) else f"{r['prelu']:.3f}"
        acc_fixed = "–" if pd.isna(r["fixed"]) else f"{r['fixed']:.3f}"
        lr = f"{r['lr']:g}{'' if r['alike'] else '†'}"
        lines.append(f"| {r['init']} | {r['prelu_params']} | {r['slope']:g} | {r['depth']} | {lr} | "
                     f"{acc} ({r['failures']}/{r['n']}) | {acc_fixed} ({r['failures_fixed']}/{r['n_fixed']})"
                     f" | {fmt_ci(r['d'], r['d_lo'], r['d_hi'])} |")  # fmt: skip
    return "\n".join(lines), t


def main() -> None:
    folder = RESULTS / "learned_slope"
    if not (folder / "prelu_slopes.csv").exists():
        text = "Learned-slope runs: not run yet."
    else:
        runs, slopes = pd.read_csv(folder / "runs.csv"), pd.read_csv(folder / "prelu_slopes.csv")
        # the summary's tables keep only the keys that vary; a key constant over the sweep is in runs
        slopes = slopes.assign(**{k: runs[k].iloc[0] for k in CELL if k not in slopes})
        slopes_md, slopes = slopes_table(slopes)
        twin_md, twins = twin_table(runs, pd.read_csv(RESULTS / "fair_final_sgd" / "runs.csv"))
        # He et al.'s pattern (first layer's slope the largest) only means something where the
        # net learned: in a net that never learned, no slope moved
        learned = slopes.merge(twins.loc[twins["failures"] < twins["n"], CELL], on=CELL)
        above = int((learned["first_value"] > learned["last_value"]).sum())
        fixed_cells = twins.drop_duplicates(["init", "slope", "depth"])  # layer and unit share a twin
        resolved = twins[(twins["d_lo"] > 0) | (twins["d_hi"] < 0)]
        bound = twins[["d_lo", "d_hi"]].abs().max(axis=1)
        text = "\n".join([
            "### Learned slope per hidden layer after training: mean [95 % t-interval] over seeds",
            "",
            "(`per`: one slope per layer, or one per unit, averaged over the layer's units.)",
            "",
            slopes_md,
            "",
            f"The first hidden layer's slope is above the last one's in {above} of the {len(learned)} "
            "cells whose runs learned.",
            "",
            "### PReLU against its fixed-slope twin (LeakyReLU at the starting slope, same init, depth, lr)",
            "",
            "Test accuracy: mean over the seeds that learned; (k/n): diverged or never learned "
            f"(val acc < {NEVER_LEARNED}).",
            "",
            twin_md,
            "",
            *([] if twins["alike"].all() else ["†: the fixed-slope twin ran at another lr or epochs.", ""]),
            f"Intervals that exclude 0: {len(resolved)} of {twins['d'].notna().sum()} "
            f"({int((resolved['d'] > 0).sum())} say PReLU is better). Largest |difference| any interval "
            f"allows: {bound.max():.3f}; median: {bound.median():.3f}. Failures: PReLU "
            f"{int(twins['failures'].sum())}/{int(twins['n'].sum())}, their fixed-slope twins "
            f"{int(fixed_cells['failures_fixed'].sum())}/{int(fixed_cells['n_fixed'].sum())}.",
        ])  # fmt: skip
    heading = "## Learned slope (generated by scripts/learned_tables.py)"
    (RESULTS / "learned.md").write_text(f"{heading}\n\n{text}\n")
    write_between_markers(RESULTS / "README.md", "learned_tables.py", text)
    print(text)


if __name__ == "__main__":
    main()
