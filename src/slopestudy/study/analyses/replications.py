"""Follow-up tests of claims of results/README.md on fresh seeds, from committed runs.csv frames:
the phase diagram with seeds (§ 6), learning rate x slope at the final budget (§ 2), and the
depth-30 replications with 10-20 fresh seeds per slope (§ 2, SGD and Adam). Each returns a
table (DataFrame) and its Markdown; outcomes that are learn-or-fail are success rates k/n with
exact intervals, never t-intervals over a mix."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from slopestudy.run.records import Status
from slopestudy.science import stats
from slopestudy.science.stats import NEVER_LEARNED, SECOND_THRESHOLD
from slopestudy.summary.cells import learned
from slopestudy.summary.tables import committed, markdown_table


# --- phase diagram with seeds -----------------------------------------------------------------
def phase_ridge(runs: pd.DataFrame, threshold: float = SECOND_THRESHOLD) -> pd.DataFrame:
    """Per slope and seed: the deepest depth that learned at any sigma^2, and the sigma^2 values
    that reach it (the ridge), next to theory's critical sigma^2 = 2/(1+a^2) and the ridge's
    per-layer gain g = sigma^2 (1+a^2)/2 (the slope and the init enter only through g)."""
    runs = runs.assign(learned=learned(runs, threshold))
    rows = []
    for (slope, seed), part in runs.groupby(["slope", "seed"]):
        deepest = part[part["learned"]].groupby("init_gain")["depth"].max()
        top = int(deepest.max()) if len(deepest) else 0
        ridge = sorted(deepest[deepest == top].index) if top else []
        factor = (1 + slope**2) / 2
        rows.append({
            "slope": slope, "seed": int(seed), "deepest_learned": top,
            "ridge_sigma2": ", ".join(f"{s:g}" for s in ridge) or "-",
            "ridge_g": ", ".join(f"{s * factor:.2f}" for s in ridge) or "-",
            "critical_sigma2": round(2 / (1 + slope**2), 3),
        })  # fmt: skip
    return pd.DataFrame(rows)


def phase_counts(runs: pd.DataFrame, threshold: float = SECOND_THRESHOLD) -> pd.DataFrame:
    """Runs that learned out of n, per (slope, sigma^2) row and depth column."""
    runs = runs.assign(learned=learned(runs, threshold))
    grouped = runs.groupby(["slope", "init_gain", "depth"])["learned"]
    text = (grouped.sum().astype(int).astype(str) + "/" + grouped.size().astype(str)).rename("k/n")
    table = text.reset_index().pivot_table(index=["slope", "init_gain"], columns="depth", values="k/n",
                                           aggfunc="first")  # fmt: skip
    table.columns = [f"depth {d}" for d in table.columns]
    return table


# --- learning rate x slope at the final budget ------------------------------------------------
def rate_row(part: pd.DataFrame) -> dict:
    """Success rate with its exact interval, divergences, median of all runs, and accuracy over
    the runs that learned (shown next to k/n, never alone): a t-interval only where every run
    learned, since an interval over the survivors of a cell with failures describes neither. Where
    the count at SECOND_THRESHOLD differs, some runs learned only partly: both counts and the
    median, no mean over them."""
    ok, ok_strict = learned(part), learned(part, SECOND_THRESHOLD)
    k, n, k_strict = int(ok.sum()), len(part), int(ok_strict.sum())
    acc = part.loc[ok, "test_acc"]
    mean, lo, hi = stats.t_interval(acc) if k == n and k > 1 else (acc.mean(), math.nan, math.nan)
    partly = k != k_strict
    survivors = f"{mean:.3f} over the {k} that learned" if 0 < k < n else stats.fmt_ci(mean, lo, hi)
    return {
        "learned": stats.fmt_rate(k, n) + (f"; {k_strict}/{n} at {SECOND_THRESHOLD:g}" if partly else ""),
        "diverged": f"{int((part['status'] == Status.diverged).sum())}/{n}",
        "median val acc (all runs)": f"{part['val_acc'].fillna(0).median():.3f}",
        "test acc of the runs that learned": "– (partly learned)" if partly else survivors,
        "k": k, "n": n,
    }  # fmt: skip


def lr_slope_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (slope, lr): what each slope does at each learning rate of a common grid."""
    rows = [
        {"slope": slope, "lr": lr, **rate_row(part)} for (slope, lr), part in runs.groupby(["slope", "lr"])
    ]
    return pd.DataFrame(rows)


def stability_edge(table: pd.DataFrame) -> pd.DataFrame:
    """Per slope: the largest lr at which no run diverged, and the smallest at which one did."""
    rows = []
    for slope, part in table.groupby("slope"):
        any_diverged = part["diverged"].str.split("/").str[0].astype(int) > 0
        stable, diverging = part.loc[~any_diverged, "lr"], part.loc[any_diverged, "lr"]
        rows.append(
            {
                "slope": slope,
                "largest lr with no divergence": stable.max() if len(stable) else "-",
                "smallest lr with a divergence": diverging.min() if len(diverging) else "-",
            }
        )
    return pd.DataFrame(rows)


# --- two arms compared with power: success rates (Fisher), accuracy where all learned ---------
def compare_arms(arms: dict[str, pd.DataFrame], base: str) -> pd.DataFrame:
    """Every arm against `base`: success rates with exact intervals and Fisher's exact test; the
    difference of mean test accuracy with Welch's interval only where neither arm failed;
    Holm over the family of Fisher tests."""
    ref = arms[base]
    k_ref, n_ref = int(learned(ref).sum()), len(ref)
    rows = []
    for name, part in arms.items():
        row = {"arm": name, **rate_row(part)}
        if name != base:
            row["fisher p vs " + base] = stats.fisher_p(row["k"], row["n"], k_ref, n_ref)
            if row["k"] == row["n"] and k_ref == n_ref:
                d, lo, hi = stats.welch_interval(ref["test_acc"], part["test_acc"])  # part - ref
                row["test acc difference (Welch)"] = stats.fmt_ci(d, lo, hi)
                row["Welch p"] = stats.welch_p(ref["test_acc"], part["test_acc"])
        rows.append(row)
    table = pd.DataFrame(rows)
    pcol = "fisher p vs " + base
    if pcol in table and table[pcol].notna().sum() > 1:  # a family: one comparison needs no correction
        family = table[pcol].notna()
        table.loc[family, "p (Holm)"] = stats.holm(table.loc[family, pcol].to_numpy())
    return table


def grad_ratio_text(ratios: pd.Series) -> str:
    """Mean log10 first/last-layer gradient ratio; a run without one had a zero gradient at the
    first layer (profiles.grad_ratio), which the mean must not hide."""
    zero = int(ratios.isna().sum())
    mean = f"{ratios.mean():.1f}" if zero < len(ratios) else ""
    zeros = f"zero first-layer gradient in {zero}/{len(ratios)}" if zero else ""
    return "; ".join(filter(None, [mean, zeros]))


def compare_pairs(
    arms: dict[str, pd.DataFrame], pairs: list[tuple[str, str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Arms as rate rows (k/n with exact intervals, at both thresholds; dead units and gradient
    ratio at step 0, the mechanism), and the pre-declared pairs (arm, reference): Fisher's exact
    test of the learned rates at each threshold, Holm over the pairs at each."""
    table = pd.DataFrame([{"arm": name, **rate_row(part),
                           "dead units at step 0": f"{part['dead_frac_step0'].mean():.2f}",
                           "log10 grad first/last at step 0": grad_ratio_text(part["grad_ratio_step0"])}
                          for name, part in arms.items()])  # fmt: skip
    rows = []
    for arm, ref in pairs:
        row = {"arm": arm, "reference": ref}
        for threshold in (NEVER_LEARNED, SECOND_THRESHOLD):
            k, n = int(learned(arms[arm], threshold).sum()), len(arms[arm])
            k0, n0 = int(learned(arms[ref], threshold).sum()), len(arms[ref])
            row[f"learned at {threshold:g}"] = f"{k}/{n} vs {k0}/{n0}"
            row[f"fisher p at {threshold:g}"] = stats.fisher_p(k, n, k0, n0)
        rows.append(row)
    tests = pd.DataFrame(rows)
    for threshold in (NEVER_LEARNED, SECOND_THRESHOLD):
        tests[f"p (Holm) at {threshold:g}"] = stats.holm(tests[f"fisher p at {threshold:g}"].to_numpy())
    return table, tests


def markdown(table: pd.DataFrame, drop: tuple[str, ...] = ("k", "n")) -> str:
    shown = table.drop(columns=[c for c in drop if c in table])
    for col in shown.columns:
        if col.startswith(("fisher p", "p (Holm)")) or col.endswith(" p"):
            shown[col] = shown[col].map(lambda p: stats.fmt_p(p) if isinstance(p, float) and p == p else "")
    return markdown_table(shown.fillna(""), index=False)


# --- depth 30 with power: one pre-declared comparison, so no family to correct ----------------
def depth30_power(power: pd.DataFrame, fair_final: pd.DataFrame, slopes=(0.0, 0.2)) -> pd.DataFrame:
    """Kaiming, depth 30, SGD: each slope's runs of the power sweep plus fair_final's runs of the
    same cell (same lr, epochs, protocol; other seeds), as arms; the second slope against the
    first: success rates (Fisher), the difference of test accuracy with Welch's interval, and a
    paired interval over the seeds both arms share (same seed = same batch order and the same
    random draws for the init, scaled by each slope's gain)."""
    cell = (fair_final["init"] == "kaiming") & (fair_final["depth"] == 30)
    both = pd.concat([power, fair_final[cell & fair_final["slope"].isin(slopes)]], ignore_index=True)
    arms = {f"a={s:g}": both[both["slope"] == s] for s in slopes}
    table = compare_arms(arms, base=f"a={slopes[0]:g}")
    a, b = (arms[f"a={s:g}"].set_index("seed")["test_acc"] for s in slopes)
    shared = a.index.intersection(b.index)
    d, lo, hi = stats.paired_interval(a[shared], b[shared])  # b - a, seed by seed
    name = f"a={slopes[1]:g}"
    table.loc[table["arm"] == name, f"paired difference ({len(shared)} seeds)"] = stats.fmt_ci(d, lo, hi)
    table.loc[table["arm"] == name, "paired p"] = stats.paired_p(a[shared], b[shared])
    return table


# --- the marker blocks of results/README.md ---------------------------------------------------
def phase_block(results: Path) -> str:
    runs = committed(results, "claims_phase")
    if runs is None:
        return "Phase diagram with seeds: not run yet."
    counts = phase_counts(runs).reset_index().rename(columns={"init_gain": "σ²"})
    return "\n".join([
        f"Runs that learned (validation accuracy ≥ {SECOND_THRESHOLD} and validation loss below ln 10), "
        "of n, per slope, σ² and depth:", "",
        markdown(counts, drop=()), "",
        "Per seed: the deepest depth that learned and the σ² that reach it (the ridge); g = σ²(1+a²)/2:", "",
        markdown(phase_ridge(runs), drop=()), "",
        f"The same at the {NEVER_LEARNED} threshold:", "",
        markdown(phase_ridge(runs, NEVER_LEARNED), drop=()),
    ])  # fmt: skip


def power_block(results: Path) -> str:
    power, fair = committed(results, "claims_power_sgd"), committed(results, "fair_final_sgd")
    if power is None or fair is None:
        return "Depth 30 with power: not run yet."
    fresh = depth30_power(power, fair.iloc[0:0])
    return "\n".join([
        "Kaiming, depth 30, SGD at each slope's validation lr (0.01 for both), 6 epochs. The 15 fresh "
        "seeds per arm alone (the confirmatory test: fair_final's five suggested the hypothesis):", "",
        markdown(fresh), "",
        "Each arm pooled with fair_final's five seeds (same cell, lr, budget; 20 per arm):", "",
        markdown(depth30_power(power, fair)),
    ])  # fmt: skip


def lr_slope_block(results: Path) -> str:
    runs = committed(results, "claims_lr_slope_full")  # the full design, once run; else the first 18 runs
    runs = committed(results, "claims_lr_slope") if runs is None else runs
    if runs is None:
        return "lr x slope: not run yet."
    table = lr_slope_table(runs)
    return "\n".join([
        "Kaiming, depth 30, SGD, 6 epochs, every slope at every lr (fresh seeds):", "",
        markdown(table), "",
        "Each slope's stability edge (runs that diverged, by lr):", "",
        markdown(stability_edge(table), drop=()),
    ])  # fmt: skip


ADAM_ARMS = {  # name -> (slope, lr, bias_shift) of claims_power_adam
    "a=0.2 at its lr 0.002": (0.2, 0.002, 0.0),
    "a=0.5 at its lr 0.001": (0.5, 0.001, 0.0),
    "ReLU at 0.002": (0.0, 0.002, 0.0),
    "ReLU at 0.001": (0.0, 0.001, 0.0),
    "ReLU, biases +0.1, at 0.001": (0.0, 0.001, 0.1),
}
ADAM_PAIRS = [("a=0.2 at its lr 0.002", "ReLU at 0.002"), ("a=0.5 at its lr 0.001", "ReLU at 0.001"),
              ("ReLU, biases +0.1, at 0.001", "ReLU at 0.001")]  # fmt: skip


def adam_power_block(results: Path) -> str:
    runs = committed(results, "claims_power_adam")
    if runs is None:
        return "Adam at depth 30 with power: not run yet."
    shift = runs["bias_shift"] if "bias_shift" in runs else pd.Series(0.0, index=runs.index)
    arms = {}
    for name, (slope, lr, bias) in ADAM_ARMS.items():
        part = runs[(runs["slope"] == slope) & (runs["lr"].sub(lr).abs() < 1e-12) & (shift == bias)]
        if len(part):
            arms[name] = part
    table, tests = compare_pairs(arms, [p for p in ADAM_PAIRS if p[0] in arms and p[1] in arms])
    return "\n".join([
        "Default init, Adam, depth 30, 10 epochs, 10 fresh seeds per arm (400–409):", "",
        markdown(table), "",
        f"The pre-declared comparisons (Fisher's exact test of the learned rates at both thresholds, Holm "
        f"over the {len(tests)} at each):", "",
        markdown(tests, drop=()),
    ])  # fmt: skip
