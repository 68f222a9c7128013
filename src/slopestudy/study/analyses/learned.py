"""Section 7 of results/README.md, PReLU's learned slope, from the committed summaries.

Reads results/learned_slope/{prelu_slopes,runs}.csv (`+experiment=learned_slope`) and
results/fair_final_sgd/runs.csv (the fixed-slope twins: same init, depth, starting slope, lr and
epochs). Two tables: the learned slope next to the input, in the middle and next to the output
(mean [95 % t-interval] over seeds), and PReLU's test accuracy minus its fixed-slope twin's.
The twin ran the same seeds (100-102 of its 100-104: same batch order and initial draws), so the
comparison is paired on seed: the t interval of the per-seed differences (stats.paired_interval)
and the paired t test's p where every pair learned, else Fisher's exact test of the learned rates
over the pairs; p raw and Holm-adjusted over the family of all twin comparisons. One marker block
(`block`) and results/learned.md.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.science import stats
from slopestudy.science.stats import fmt_ci, fmt_p
from slopestudy.summary.cells import failed
from slopestudy.summary.collect import done
from slopestudy.summary.tables import committed, md_table

CELL = ["init", "prelu_params", "slope", "depth"]
PICKS = ("first", "middle", "last")


def slopes_table(slopes: pd.DataFrame) -> pd.DataFrame:
    """Per cell: the learned slope at the first, middle and last hidden layer (as text and as
    `<pick>_value`), the mean over layers and the seeds n."""
    rows = []
    for cell, part in slopes.sort_values("layer").groupby(CELL, sort=True):
        part = part.reset_index(drop=True)
        row = dict(zip(CELL, cell, strict=True))
        for name, r in zip(PICKS, (part.iloc[0], part.iloc[len(part) // 2], part.iloc[-1]), strict=True):
            row[name] = fmt_ci(r["learned_slope"], r["learned_slope_lo"], r["learned_slope_hi"])
            row[f"{name}_value"] = r["learned_slope"]
        row["mean over layers"] = f"{part['learned_slope'].mean():.3f}"
        row["n"] = int(part["n"].min())
        rows.append(row)
    return pd.DataFrame(rows)


def slopes_markdown(t: pd.DataFrame) -> str:
    header = ["init", "per", "start", "depth", "first hidden layer", "middle", "last hidden layer", "mean",
              "n"]  # fmt: skip
    rows = [[r["init"], r["prelu_params"], f"{r['slope']:g}", str(r["depth"]), r["first"], r["middle"],
             r["last"], r["mean over layers"], str(r["n"])] for _, r in t.iterrows()]  # fmt: skip
    return md_table(header, rows)


def twin_table(prelu: pd.DataFrame, fixed: pd.DataFrame) -> pd.DataFrame:
    """PReLU against LeakyReLU fixed at the starting slope, same init and depth, per cell,
    paired on seed (the seeds both ran): where every pair learned, the paired interval and p of
    PReLU minus fixed; else Fisher on the learned rates of the pairs. p_holm: Holm over all cells
    with a test; the means and k/n are over each side's own runs."""
    prelu, fixed = (done(d).assign(failed=lambda d: failed(d)) for d in (prelu, fixed))
    rows = []
    for cell, part in prelu.groupby(CELL, sort=True):
        row = dict(zip(CELL, cell, strict=True))
        twin = fixed[(fixed["init"] == row["init"]) & (fixed["slope"] == row["slope"])
                     & (fixed["depth"] == row["depth"])]  # fmt: skip
        ok, twin_ok = part[~part["failed"]], twin[~twin["failed"]]
        pairs = part.merge(twin, on="seed", suffixes=("", "_fixed"))
        k, k_fixed = int((~pairs["failed"]).sum()), int((~pairs["failed_fixed"]).sum())
        if len(pairs) and k == k_fixed == len(pairs):
            diff = stats.paired_interval(pairs["test_acc_fixed"], pairs["test_acc"])
            test, p = "paired", stats.paired_p(pairs["test_acc_fixed"], pairs["test_acc"])
        else:
            diff = (float("nan"),) * 3
            test, p = "fisher", stats.fisher_p(k_fixed, len(pairs), k, len(pairs))
        # a twin only if trained alike; otherwise the row says so (lr marked with †)
        alike = set(twin["lr"]) == set(part["lr"]) and set(twin["epochs"]) == set(part["epochs"])
        row.update(lr=part["lr"].iloc[0], alike=alike, n=len(part), failures=int(part["failed"].sum()),
                   n_fixed=len(twin), failures_fixed=int(twin["failed"].sum()),
                   prelu=ok["test_acc"].mean(), fixed=twin_ok["test_acc"].mean(),
                   d=diff[0], d_lo=diff[1], d_hi=diff[2], pairs=len(pairs), test=test, p=p)  # fmt: skip
        rows.append(row)
    out = pd.DataFrame(rows)
    out["p_holm"] = stats.holm(out["p"])
    return out


def bold_p(p: float) -> str:
    """Holm p, bold where it is below ALPHA."""
    return f"**{fmt_p(p)}**" if p < stats.ALPHA else fmt_p(p)


def twin_markdown(t: pd.DataFrame) -> str:
    header = ["init", "per", "start", "depth", "lr", "PReLU test acc (k/n failed)", "fixed slope (k/n)",
              "PReLU − fixed, paired [95 %]", "test", "p", "p Holm"]  # fmt: skip
    rows = []
    for _, r in t.iterrows():
        acc = "–" if pd.isna(r["prelu"]) else f"{r['prelu']:.3f}"
        acc_fixed = "–" if pd.isna(r["fixed"]) else f"{r['fixed']:.3f}"
        rows.append([r["init"], r["prelu_params"], f"{r['slope']:g}", str(r["depth"]),
                     f"{r['lr']:g}{'' if r['alike'] else '†'}", f"{acc} ({r['failures']}/{r['n']})",
                     f"{acc_fixed} ({r['failures_fixed']}/{r['n_fixed']})",
                     fmt_ci(r["d"], r["d_lo"], r["d_hi"]), r["test"], fmt_p(r["p"]),
                     bold_p(r["p_holm"])])  # fmt: skip
    return md_table(header, rows)


def findings(slopes: pd.DataFrame, twins: pd.DataFrame) -> tuple[str, str]:
    """The sentence under each table: where the first layer's slope is the largest (He et al.'s
    pattern, meaningful only where the net learned: in a net that never learned no slope moved),
    and how many paired twin intervals exclude 0 and how many comparisons survive Holm."""
    learned = slopes.merge(twins.loc[twins["failures"] < twins["n"], CELL], on=CELL)
    above = int((learned["first_value"] > learned["last_value"]).sum())
    fixed_cells = twins.drop_duplicates(["init", "slope", "depth"])  # layer and unit share a twin
    resolved = twins[(twins["d_lo"] > 0) | (twins["d_hi"] < 0)]
    bound = twins[["d_lo", "d_hi"]].abs().max(axis=1)
    first = (f"The first hidden layer's slope is above the last one's in {above} of the {len(learned)} "
             "cells whose runs learned.")  # fmt: skip
    m = int(twins["p"].notna().sum())
    survive = twins[twins["p_holm"] < stats.ALPHA]
    names = "; ".join(f"{r['init']} {r['prelu_params']} a={r['slope']:g} depth {r['depth']} ({r['d']:+.3f})"
                      for _, r in survive.iterrows())  # fmt: skip
    twin = (f"Paired intervals that exclude 0 (raw): {len(resolved)} of {twins['d'].notna().sum()} "
            f"({int((resolved['d'] > 0).sum())} say PReLU is better); raw p < {stats.ALPHA:.2f}: "
            f"{int((twins['p'] < stats.ALPHA).sum())} of {m}; after Holm over the family of all {m} twin "
            f"comparisons, {len(survive)} survive{': ' + names if names else ''}. "
            f"Largest |difference| any interval "
            f"allows: {bound.max():.3f}; median: {bound.median():.3f}. Failures: PReLU "
            f"{int(twins['failures'].sum())}/{int(twins['n'].sum())}, their fixed-slope twins "
            f"{int(fixed_cells['failures_fixed'].sum())}/{int(fixed_cells['n_fixed'].sum())}.")  # fmt: skip
    return first, twin


def block(results: Path) -> str:
    """The marker block of section 7."""
    if (slopes := committed(results, "learned_slope", "prelu_slopes.csv")) is None:
        return "Learned-slope runs: not run yet."
    runs = committed(results, "learned_slope")
    # the summary's tables keep only the keys that vary; a key constant over the sweep is in runs
    slopes = slopes_table(slopes.assign(**{k: runs[k].iloc[0] for k in CELL if k not in slopes}))
    twins = twin_table(runs, committed(results, "fair_final_sgd"))
    first, twin = findings(slopes, twins)
    return "\n".join([
        "### Learned slope per hidden layer after training: mean [95 % t-interval] over seeds",
        "",
        "(`per`: one slope per layer, or one per unit, averaged over the layer's units.)",
        "",
        slopes_markdown(slopes),
        "",
        first,
        "",
        "### PReLU against its fixed-slope twin (LeakyReLU at the starting slope, same init, depth, lr)",
        "",
        "Test accuracy: mean over the seeds that learned; (k/n): runs that failed, i.e. did not learn "
        f"(learned: {stats.LEARNED_RULE}). PReLU ran seeds 100–102, its twin 100–104 with the same "
        "batch order and initial draws per seed: the difference is paired on the shared seeds (mean and "
        "t interval of the per-seed differences, paired t test), where every pair learned; else Fisher's "
        "exact test of the learned rates over the pairs. Family: all twin comparisons of this table, "
        "Holm-adjusted; "
        f"**bold**: Holm p < {stats.ALPHA:.2f}.",
        "",
        twin_markdown(twins),
        "",
        *([] if twins["alike"].all() else ["†: the fixed-slope twin ran at another lr or epochs.", ""]),
        twin,
    ])  # fmt: skip


def learned_md(results: Path) -> str:
    """results/learned.md: the block on its own page."""
    return f"## Learned slope (generated by python -m slopestudy.study report)\n\n{block(results)}\n"
