"""Turn sweep folders into a tidy DataFrame, tables over seeds, and figures.

    python -m slopestudy.summarize multirun/2026-11-27/01-27-30 [more sweep dirs] [--out DIR]
    python -m slopestudy.summarize multirun/fair_tune/sgd/kaiming --tune lr   # choose lr per cell

Runs automatically at the end of every `python train.py -m ...` (see callbacks.py).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

from slopestudy import stats
from slopestudy.config import sweep_jobs
from slopestudy.grouping import METRICS, group_keys, group_keys_of, per_cell_nuisances, variants
from slopestudy.model import theory_decay_per_layer
from slopestudy.probes import fit_decay, grad_ratio
from slopestudy.records import DONE, lock_holder, read_run
from slopestudy.stats import NEVER_LEARNED


# --- one run ---------------------------------------------------------------------------------
def run_row(job_dir: Path, sweep_dir: Path) -> dict:
    run = read_run(job_dir)
    if run is None:  # killed before run.json, or unreadable: report it, don't crash on it
        cfg = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()) or {}
        run = {"status": "missing", "config": cfg}
    cfg = pd.json_normalize(run["config"]).iloc[0].to_dict() if run.get("config") else {}
    history = run.get("history") or []
    last = history[-1] if len(history) > 1 else {}
    final = run.get("final") or {}
    row = {k: v for k, v in cfg.items() if not k.startswith("hydra")}
    acc_key = "val_acc" if final.get("val_acc") is not None else "test_acc"
    reached = [h["step"] for h in history if (h.get(acc_key) or 0) >= 0.9]
    status = run.get("status", "missing")
    if status == "running":  # still running in another process, or killed while running
        status = "running" if lock_holder(job_dir) is not None else "interrupted"
    row.update(
        status=status,
        val_acc=final.get("val_acc"),
        val_loss=final.get("val_loss"),
        test_acc=final.get("test_acc"),
        test_loss=final.get("test_loss"),
        train_loss=final.get("train_loss"),
        steps_to_90=reached[0] if reached else None,
        decay_step0=fit_decay(run.get("signal_norm_step0")),
        decay_end=fit_decay(last.get("signal_norm_mean")),
        grad_ratio_step0=grad_ratio(run.get("grad_norm_step0")),
        grad_ratio_end=grad_ratio(last.get("grad_norm_mean")),
        dead_frac_step0=_mean(history[0]["dead_frac"]) if history else None,
        dead_frac_end=_mean(last["dead_frac"]) if last else None,
        val_gain_last_half=last_half_gain(history),
        val_gain_last_epoch=last_half_gain(history[-2:]) if len(history) > 2 else None,
        error=run.get("error"),
        job=str(job_dir.relative_to(sweep_dir)),
        sweep=shown(sweep_dir),
    )
    if "init" in row and "slope" in row:
        row["decay_theory"] = theory_decay_per_layer(
            row["init"], row["slope"], row.get("width", 256), row.get("init_gain", 2.0)
        )
    return row


def last_half_gain(history: list[dict]) -> float | None:
    """Validation accuracy gained over the second half of the epochs: about 0 = plateaued."""
    epochs = [h for h in history if h.get("epoch", 0) > 0 and h.get("val_acc") is not None]
    if len(epochs) < 2:
        return None
    return epochs[-1]["val_acc"] - epochs[len(epochs) // 2 - 1]["val_acc"]


def shown(path: Path) -> str:
    """A path relative to the cwd when it is below it (so CSVs don't carry a home folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


# --- a sweep ---------------------------------------------------------------------------------
def find_jobs(sweep_dir: Path) -> list[Path]:
    """Every Hydra job folder at or below `sweep_dir` (each has .hydra/config.yaml)."""
    return sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml"))


def collect(sweep_dirs: list[Path]) -> pd.DataFrame:
    rows = [run_row(job, sweep) for sweep in sweep_dirs for job in find_jobs(sweep)]
    df = pd.DataFrame(rows)
    numeric = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "steps_to_90",
               "dead_frac_step0", "dead_frac_end", "val_gain_last_half", "val_gain_last_epoch")  # fmt: skip
    for col in numeric:
        if col in df:
            df[col] = pd.to_numeric(df[col])
    return df


def expected_jobs(sweep_dir: Path) -> list[dict] | None:
    """The jobs a sweep was asked for, from its multirun.yaml (None if there is none)."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text())
    return sweep_jobs(cfg["hydra"]["overrides"]["task"], cfg["hydra"].get("sweeper", {}).get("params"))


def missing_jobs(sweep_dir: Path, df: pd.DataFrame) -> list[dict]:
    expected = expected_jobs(sweep_dir)
    if expected is None:
        return []
    runs = df[(df["sweep"] == shown(sweep_dir)) & df["status"].isin(DONE)]
    keys = [k for k in (expected[0] if expected else {}) if k in df.columns]
    found = {tuple(r) for r in runs[keys].itertuples(index=False)}
    return [e for e in expected if tuple(e[k] for k in keys) not in found]


# --- tables ----------------------------------------------------------------------------------
def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds of every metric, per cell (group of identical settings).

    Only completed or diverged runs count (a diverged run's accuracy is a real outcome)."""
    keys = group_keys(df)
    ok = df[df["status"].isin(DONE)]
    cols = [c for c in [*METRICS, "decay_theory"] if c in ok]
    agg = ok.groupby(keys, dropna=False)[cols].agg(["mean", "std", "count"])
    agg.columns = [f"{c}_{s}".replace("_count", "_n") for c, s in agg.columns]
    for key in per_cell_nuisances(ok):  # e.g. each cell's tuned lr, shown next to its numbers
        agg[key] = ok.groupby(keys, dropna=False)[key].first()
    agg = agg.reset_index()
    agg.attrs["group_keys"] = keys
    return agg


def failed(df: pd.DataFrame, threshold: float = NEVER_LEARNED) -> pd.Series:
    """Diverged, or never learned (final val accuracy < threshold; test where no val)."""
    acc = df["val_acc"].fillna(df["test_acc"]) if "val_acc" in df else df["test_acc"]
    return pd.Series(~stats.learned(acc, df["status"] == "diverged", threshold), index=df.index)


SENSITIVITY = f"failures_at_{stats.SECOND_THRESHOLD:g}"  # the failure count at the second threshold


def accuracy_ci(df: pd.DataFrame) -> pd.DataFrame:
    """Per cell: k/n learned with its exact (Clopper–Pearson) interval, the failure count at
    the second threshold, and per accuracy the median of all runs and the mean with a 95 %
    t-interval over the runs that learned only (and of the plateau check, the val gain over the
    last half). Outcomes are bimodal: the mean is only ever shown next to its k/n."""
    ok = df[df["status"].isin(DONE)].assign(failed=lambda d: failed(d))
    keys = group_keys(df)
    rows = []
    for cell, part in ok.groupby(keys, dropna=False):
        learned = part[~part["failed"]]
        row = dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True))
        for key in per_cell_nuisances(ok):
            row[key] = part[key].iloc[0]
        _, low, high = stats.proportion_ci(len(learned), len(part))
        row.update(n=len(part), failures=int(part["failed"].sum()), learned=len(learned), learned_lo=low,
                   learned_hi=high)  # fmt: skip
        row[SENSITIVITY] = int(failed(part, stats.SECOND_THRESHOLD).sum())
        for metric in ("val_acc", "test_acc", "val_gain_last_half"):
            if metric in part:
                mean, low, high = stats.t_interval(learned[metric])
                row.update({metric: mean, f"{metric}_lo": low, f"{metric}_hi": high})
                if metric != "val_gain_last_half":
                    row[f"{metric}_median"] = part[metric].median()
        rows.append(row)
    return pd.DataFrame(rows)


def compare_to(df: pd.DataFrame, key: str = "slope", base: float = 0.0) -> pd.DataFrame:
    """Each cell against the cell with key=base and the same other keys, a family of tests:
    - neither side has a failure: the difference of mean accuracy with Welch's 95 % interval,
      tested on test accuracy (`test` = welch);
    - a failure on either side: the outcome is bimodal, so no mean difference; Fisher's exact
      test of the two learned rates (`test` = fisher; d_learned is the rate difference).
    p is raw, p_holm Holm-adjusted over every row; `resolved`: p_holm < stats.ALPHA."""
    ok = df[df["status"].isin(DONE)].assign(failed=lambda d: failed(d))
    keys = group_keys(df)
    if key not in keys or not (ok[key] == base).any():
        return pd.DataFrame()
    others = [k for k in keys if k != key]
    rows = []
    for cell, part in ok.groupby(keys, dropna=False):
        row = dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True))
        if row[key] == base:
            continue
        ref = ok[in_cell(ok, {**{k: row[k] for k in others}, key: base})]
        if not ref.empty:
            rows.append({**row, **_compare(ref, part)})
    out = pd.DataFrame(rows)
    if not out.empty:
        out["p_holm"] = stats.holm(out["p"])
        out["resolved"] = out["p_holm"] < stats.ALPHA
    return out


def _compare(ref: pd.DataFrame, part: pd.DataFrame) -> dict:
    """One row of compare_to: `part` (failed column set) against its base cell `ref`."""
    k, n, k_base, n_base = int((~part["failed"]).sum()), len(part), int((~ref["failed"]).sum()), len(ref)
    row = {"n": n, "failures": n - k, "n_base": n_base, "failures_base": n_base - k_base,
           "d_learned": k / n - k_base / n_base}  # fmt: skip
    welch = k == n and k_base == n_base
    for metric in ("val_acc", "test_acc"):
        if metric in part:
            diff = stats.welch_interval(ref[metric], part[metric]) if welch else (math.nan,) * 3
            row.update(zip((f"d_{metric}", f"d_{metric}_lo", f"d_{metric}_hi"), diff, strict=True))
    if welch:
        row.update(test="welch", p=stats.welch_p(ref["test_acc"], part["test_acc"]))
    else:
        row.update(test="fisher", p=stats.fisher_p(k, n, k_base, n_base))
    return row


def learned_slopes(df: pd.DataFrame) -> pd.DataFrame:
    """PReLU runs: the learned slope of every hidden layer at the end (mean over units for
    per-unit slopes), mean and 95 % t-interval over seeds per cell and layer."""
    if "act" not in df or not (df["act"] == "prelu").any():
        return pd.DataFrame()
    ok = df[df["status"].isin(DONE) & (df["act"] == "prelu")]
    keys = [k for k in group_keys(df) if k != "act"]
    rows = []
    for job_dir, (_, run) in zip(job_folders(ok), ok.iterrows(), strict=True):
        history = (read_run(job_dir) or {}).get("history") or []
        for layer, value in enumerate(history[-1].get("prelu_slope", []) if history else []):
            rows.append({**{k: run[k] for k in keys}, "layer": layer, "learned_slope": value})
    if not rows:
        return pd.DataFrame()
    long = pd.DataFrame(rows)
    out = []
    for cell, part in long.groupby([*keys, "layer"], dropna=False):
        mean, low, high = stats.t_interval(part["learned_slope"])
        out.append({**dict(zip([*keys, "layer"], cell, strict=True)), "n": len(part), "learned_slope": mean,
                    "learned_slope_lo": low, "learned_slope_hi": high})  # fmt: skip
    return pd.DataFrame(out)


LEARNS = 0.5  # the phase diagram's line between "learns" and "stalls" (val accuracy)
SHRINKAGE_K = (0.5, 1, 2, 3, 4, 6, 8)  # theory contours: depth * |log10 g| = k


def phase_boundary(agg: pd.DataFrame) -> pd.DataFrame:
    """For a sweep over init_gain x depth (x slope): per slope, the deepest net that learns at
    each gain (mean val acc >= LEARNS), and which theory contour depth·|log10 g| = k fits that
    boundary best (least squares in log depth, over gains where g != 1 and the boundary is
    inside the measured depths). One row per slope and k, the best marked."""
    keys = group_keys_of(agg)
    if not {"init_gain", "depth", "slope"} <= set(keys) or "val_acc_mean" not in agg:
        return pd.DataFrame()
    rows = []
    dmin, dmax = agg["depth"].min(), agg["depth"].max()
    for slope, part in agg.groupby("slope"):
        measured = {}
        for gain, g in part.groupby("init_gain"):
            learns = g.loc[g["val_acc_mean"] >= LEARNS, "depth"]
            measured[gain] = learns.max() if len(learns) else None
        for k in SHRINKAGE_K:
            errs = []
            for gain, depth in measured.items():
                g = gain * (1 + slope**2) / 2
                if depth is None or abs(math.log10(g)) < 1e-9 or depth >= dmax:
                    continue  # nothing learns, no decay at all, or the edge lies beyond the sweep
                predicted = min(max(k / abs(math.log10(g)), dmin), dmax)
                errs.append((math.log10(depth) - math.log10(predicted)) ** 2)
            boundary = "; ".join(f"{g:g}:{d if d is not None else '-'}" for g, d in measured.items())
            rms = math.sqrt(sum(errs) / len(errs)) if errs else math.nan
            rows.append({"slope": slope, "k": k, "n_gains": len(errs), "rms_log10_depth_error": rms,
                         "critical_gain": 2 / (1 + slope**2), "boundary": boundary})  # fmt: skip
    out = pd.DataFrame(rows)
    best = out.groupby("slope")["rms_log10_depth_error"].transform("min")
    out["best"] = out["rms_log10_depth_error"] == best
    return out


def tune(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Per cell (the other differing keys, seeds pooled): the value of `key` to train it at,
    chosen by `rank_values` on validation data only (test columns are not in the frame it
    chooses from). Returns one row per cell (tuned.csv): the cell keys, `tuned_key`, the chosen
    value and what it scored, then how it was chosen (`untrainable_on_grid`, `chosen_by`), the
    runner-up and the margin over it."""
    keys = group_keys(df)
    if key not in keys:
        raise ValueError(f"--tune {key}: {key} does not vary within any cell of these runs")
    ok = df[df["status"].isin(DONE)]
    if "val_acc" not in ok or ok["val_acc"].isna().all():
        raise ValueError("--tune needs validation accuracy: these runs have no validation split")
    cell_keys = [k for k in keys if k != key]
    choose_from = ok[cell_keys + [key]].assign(  # no test column in here
        score=tuning_score(ok), loss=tuning_loss(ok), learned=~failed(ok), diverged=ok["status"] == "diverged"
    )
    ranked = rank_values(choose_from, cell_keys, key)
    return pd.DataFrame([_tuned_row(ok, part, cell_keys, key) for part in _cells(ranked, cell_keys)])


def _cells(ranked: pd.DataFrame, cell_keys: list[str]) -> list[pd.DataFrame]:
    """The ranked values of each cell (rank 1 first)."""
    if not cell_keys:
        return [ranked]
    return [part for _, part in ranked.groupby(cell_keys, dropna=False, sort=True)]


def _tuned_row(ok: pd.DataFrame, ranked: pd.DataFrame, cell_keys: list[str], key: str) -> dict:
    """One row of tuned.csv from one cell's ranked values: the chosen value's runs (val and test
    over the seeds that learned; test only shown) and the choice's margin over the runner-up."""
    pick = {c: ranked[c].iloc[0] for c in ranked.columns}  # column by column: 4 stays an int
    cell = in_cell(ok, {k: pick[k] for k in cell_keys})
    runs = ok[cell & (ok[key] == pick[key])].assign(failed=lambda d: failed(d))
    learned = runs[~runs["failed"]]
    grid = sorted(ok.loc[cell, key].unique())
    value = pick[key]
    row = {k: pick[k] for k in cell_keys}
    row.update({"tuned_key": key, key: value, "n": len(runs), "score": pick["score"]})
    for metric in ("val_acc", "test_acc"):
        mean, low, high = stats.t_interval(learned[metric])
        row.update({metric: mean, f"{metric}_lo": low, f"{metric}_hi": high})
    second = ranked.iloc[1] if len(ranked) > 1 else None
    row.update(
        failures=int(runs["failed"].sum()),
        at_edge=len(grid) >= 3 and value in (grid[0], grid[-1]),
        grid=",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in grid),
        untrainable_on_grid=not ranked["learned"].any(),
        chosen_by=pick["chosen_by"],
        val_loss=pick["loss"],
        runner_up=second[key] if second is not None else math.nan,
        margin=pick["score"] - second["score"] if second is not None else math.nan,
        runner_up_val_loss=second["loss"] if second is not None else math.nan,
    )
    return row


def in_cell(df: pd.DataFrame, values: dict) -> pd.Series:
    """Rows whose keys equal `values` (NaN matches NaN: a key unset in every run of a cell)."""
    mask = pd.Series(True, index=df.index)
    for k, v in values.items():
        mask &= df[k].isna() if pd.isna(v) else df[k] == v
    return mask


def tuning_score(runs: pd.DataFrame) -> pd.Series:
    """What --tune maximizes: final validation accuracy, 0 for a diverged run."""
    return runs["val_acc"].where(runs["status"] != "diverged", 0.0).fillna(0.0)


def tuning_loss(runs: pd.DataFrame) -> pd.Series:
    """What breaks a tie: final validation loss, infinite for a diverged run (or none)."""
    loss = runs["val_loss"] if "val_loss" in runs else pd.Series(math.nan, index=runs.index)
    return loss.where(runs["status"] != "diverged", math.inf).fillna(math.inf)


# Mean scores equal to this many decimals are a tie (within noise: the same number of the same
# validation examples right, to far below one example in 10 000).
TIE_DECIMALS = 9
RANK_COLUMNS = ("score", "loss", "learned", "n", "diverged_share", "finite_loss", "chosen_by")


def rank_values(runs: pd.DataFrame, cell_keys: list[str], key: str) -> pd.DataFrame:
    """Every value of `key` per cell, best first (columns: the keys and RANK_COLUMNS).

    - A cell where some run learned: the best mean score (validation accuracy, diverged = 0);
      a tie (scores equal to TIE_DECIMALS) goes to the lowest mean validation loss.
    - A cell where no run at any value learned (all at chance or diverged): untrainable on the
      grid; the value with the lowest mean validation loss.
    The loss order: diverged runs count as infinite loss, so a value that never diverged comes
    first; values that diverged are ordered by how often, then by the loss of their other runs.
    Grid order decides nothing unless all of that is exactly equal (then the smaller value)."""
    runs = runs.assign(finite_loss=runs["loss"].where(~runs["diverged"]))
    g = runs.groupby([*cell_keys, key], dropna=False)
    table = g.agg(score=("score", "mean"), loss=("loss", "mean"), learned=("learned", "sum"),
                  n=("score", "size"), diverged_share=("diverged", "mean"),
                  finite_loss=("finite_loss", "mean")).reset_index()  # fmt: skip
    if cell_keys:
        trainable = table.groupby(cell_keys, dropna=False)["learned"].transform("sum") > 0
    else:
        trainable = pd.Series(table["learned"].sum() > 0, index=table.index)
    rounded = table["score"].round(TIE_DECIMALS).where(trainable, 0.0)
    order = table.assign(_s=-rounded, _f=table["finite_loss"].fillna(math.inf))
    order = order.sort_values([*cell_keys, "_s", "diverged_share", "_f", key], kind="stable")
    order["chosen_by"] = _chosen_by(order, cell_keys, trainable)
    return order.drop(columns=["_s", "_f"]).reset_index(drop=True)


def _chosen_by(order: pd.DataFrame, cell_keys: list[str], trainable: pd.Series) -> list[str]:
    """Per row: why the first value of its cell won: val_acc, a val_loss tie-break, or untrainable."""
    groups = order.groupby(cell_keys, dropna=False, sort=False) if cell_keys else [((), order)]
    reason = pd.Series("", index=order.index)
    for _, part in groups:
        if not trainable[part.index[0]]:
            reason[part.index] = "val_loss (untrainable on grid)"
        elif len(part) > 1 and part["_s"].iloc[0] == part["_s"].iloc[1]:
            reason[part.index] = "val_loss (tie on val_acc)"
        else:
            reason[part.index] = "val_acc"
    return reason.tolist()


def tuning_scores(df: pd.DataFrame, key: str) -> pd.DataFrame:
    """Mean validation score per cell and value of `key`: the curve the choice was read off."""
    keys = group_keys(df)
    ok = df[df["status"].isin(DONE)]
    cell_keys = [k for k in keys if k != key]
    table = ok[keys].assign(score=tuning_score(ok)).groupby(keys)["score"].mean().unstack(key)
    table.columns = [f"{key}={v:g}" for v in table.columns]
    return table.reset_index() if cell_keys else table


def variants_of(agg: pd.DataFrame) -> list[tuple[str, pd.DataFrame]]:
    return variants(agg, group_keys_of(agg))


def format_cell(row: pd.Series, metric: str, theory: bool) -> str:
    """'mean ± std (n)', std only with 2+ seeds, '[th x]' for the decay tables."""
    n, mean = row[f"{metric}_n"], row[f"{metric}_mean"]
    if n == 0 or pd.isna(mean):
        return "–"
    text = f"{mean:.3f}" + (f" ± {row[f'{metric}_std']:.3f}" if n > 1 else "") + f" ({int(n)})"
    return text + (f" [th {row['decay_theory_mean']:.3f}]" if theory else "")


def pivot(agg: pd.DataFrame, metric: str, theory: bool = False) -> dict[str, pd.DataFrame]:
    """slope x depth tables of 'mean ± std (n)', one per variant (the other differing keys)."""
    out = {}
    for label, part in variants_of(agg):
        cells = part.assign(cell=part.apply(format_cell, axis=1, metric=metric, theory=theory))
        table = cells.pivot_table(index="depth", columns="slope", values="cell", aggfunc="first")
        table.columns = [f"slope={c:g}" for c in table.columns]
        out[label] = table
    return out


def ci_pivot(ci: pd.DataFrame, keys: list[str], metric: str = "test_acc") -> dict[str, pd.DataFrame]:
    """slope x depth tables of `ci_text` per variant."""
    out = {}
    for label, part in variants(ci, keys):
        table = part.assign(cell=part.apply(ci_text, axis=1, metric=metric)).pivot_table(
            index="depth", columns="slope", values="cell", aggfunc="first"
        )
        table.columns = [f"slope={c:g}" for c in table.columns]
        out[label] = table
    return out


def ci_text(r: pd.Series, metric: str) -> str:
    """'5/5 [0.48, 1.00]: 0.971 [0.968, 0.974]'; where runs failed at either threshold, also the
    median of all runs ('4/5 [0.28, 0.99]: 0.962 [0.950, 0.974]; median 0.960'), and the count
    that learned at the second threshold where it differs ('...; 1/5 at 0.5')."""
    k, n = int(r["learned"]), int(r["n"])
    rate = stats.fmt_rate(k, n)
    parts = [f"{rate}: {stats.fmt_ci(r[metric], r[f'{metric}_lo'], r[f'{metric}_hi'])}" if k else rate]
    strict = n - int(r[SENSITIVITY])
    if (k < n or strict != k) and pd.notna(r[f"{metric}_median"]):
        parts.append(f"median {r[f'{metric}_median']:.3f}")
    if strict != k:
        parts.append(f"{strict}/{n} at {stats.SECOND_THRESHOLD:g}")
    return "; ".join(parts)


CI_HEADER = (
    f"k/n learned [exact 95 % interval]: mean [95 % t-interval] over the runs that learned (final "
    f"val acc >= {NEVER_LEARNED}, not diverged); where some failed at either threshold, the median "
    f"of all n runs; 'k/n at {stats.SECOND_THRESHOLD:g}': the count that learned at that threshold, "
    "where it differs"
)


@dataclass
class Summary:
    runs: pd.DataFrame
    agg: pd.DataFrame
    out_dir: Path
    notes: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    ci: pd.DataFrame = field(default_factory=pd.DataFrame)
    vs_base: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuned: pd.DataFrame | None = None
    prelu: pd.DataFrame = field(default_factory=pd.DataFrame)
    phase: pd.DataFrame = field(default_factory=pd.DataFrame)
    markdown: str = ""

    def main_table(self) -> str:
        parts = []
        for title in ("test accuracy", "signal decay/layer at step 0 (log10)"):
            for label, table in self.tables.get(title, {}).items():
                parts.append(f"{title} — {label}   [mean ± std (n seeds)]\n{table.to_string()}")
        if self.tuned is not None:
            parts.append("tuned (chosen on validation accuracy):\n" + self.tuned.to_string(index=False))
        return "\n\n".join(parts + self.notes)


def status_notes(df: pd.DataFrame, sweep_dirs: list[Path]) -> list[str]:
    counts = df["status"].value_counts().to_dict()
    notes = [f"{len(df)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for sweep in sweep_dirs:
        missing = missing_jobs(sweep, df)
        if missing:
            shown = "; ".join(", ".join(f"{k}={v}" for k, v in m.items()) for m in missing[:10])
            more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
            notes.append(f"PARTIAL: {sweep} lacks {len(missing)} finished job(s): {shown}{more}")
    for _, r in df[df["status"].isin(["failed", "interrupted", "missing", "running"])].iterrows():
        notes.append(
            f"{r['status'].upper()}: {r['job']}" + (f" — {r['error']}" if pd.notna(r["error"]) else "")
        )
    for _, r in df[df["status"] == "diverged"].iterrows():
        notes.append(f"DIVERGED: {r['job']} (kept in the tables with its final metrics)")
    return notes


def summarize(
    sweep_dirs: list[str | Path],
    out_dir: str | Path | None = None,
    figures: bool = True,
    tune_key: str | None = None,
) -> Summary:
    sweep_dirs = [Path(d).resolve() for d in sweep_dirs]
    for d in sweep_dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a folder")
    df = collect(sweep_dirs)
    if df.empty:
        raise FileNotFoundError(
            f"no Hydra job folders (with .hydra/config.yaml) under {', '.join(map(str, sweep_dirs))}"
        )
    out = Path(out_dir) if out_dir else sweep_dirs[0] / "summary"
    out.mkdir(parents=True, exist_ok=True)
    summary = Summary(runs=df, agg=aggregate(df), out_dir=out, notes=status_notes(df, sweep_dirs))
    if not summary.agg.empty:
        summary.ci, summary.vs_base = accuracy_ci(df), compare_to(df)
        summary.prelu = learned_slopes(df)
        summary.phase = phase_boundary(summary.agg)
    if tune_key:
        summary.tuned = tune(df, tune_key)
        summary.notes += tuning_notes(summary.tuned, tune_key)
    write_tables(summary, tune_key)
    images = {}
    if figures and not summary.agg.empty:
        from slopestudy import figures as fig_mod

        summary.figures = fig_mod.draw_all(summary)
        images = {p.stem: fig_mod.read_image(p) for p in summary.figures}
    if figures:  # the `summary` run: figures, tables and the HParams experiment
        from slopestudy.tblog import write_summary_run

        hparams = [r["hparams"] for r in map(read_run, job_folders(df)) if r and "hparams" in r]
        write_summary_run(out, images, markdown_sections(summary.markdown), hparams)
    return summary


def job_folders(df: pd.DataFrame) -> list[Path]:
    return [Path(sweep) / job for sweep, job in zip(df["sweep"], df["job"], strict=True)]


def markdown_table(table: pd.DataFrame, index: bool = True) -> str:
    """The one Markdown renderer: numeric columns right-aligned as numbers, text columns
    exactly as formatted (tabulate would otherwise re-read '1.000' as 1)."""
    offset = 1 if index else 0
    text = [i + offset for i, dtype in enumerate(table.dtypes) if not pd.api.types.is_numeric_dtype(dtype)]
    return table.to_markdown(index=index, disable_numparse=text or False)


def markdown_sections(markdown: str) -> dict[str, str]:
    """tables.md as one TensorBoard text per section (Text tab: `tables/NN ...`)."""
    parts = [p for p in ("\n" + markdown).split("\n## ") if p.strip()]
    out = {"tables/00 notes": parts[0].replace("# Sweep summary", "").strip() or "(no notes)"}
    for i, part in enumerate(parts[1:], 1):
        title, _, body = part.partition("\n")
        slug = re.sub(r"[^\w.-]+", "_", title[:50]).strip("_")
        out[f"tables/{i:02d}_{slug}"] = f"**{title}**\n{body}"
    return out


def write_tables(s: Summary, tune_key: str | None = None) -> None:
    s.runs.to_csv(s.out_dir / "runs.csv", index=False)
    s.agg.to_csv(s.out_dir / "aggregate.csv", index=False)
    md = ["# Sweep summary", "", *[f"- {n}" for n in s.notes], ""]
    if s.agg.empty:
        md.append("No completed runs to tabulate.")
    if s.tuned is not None:
        s.tuned.to_csv(s.out_dir / "tuned.csv", index=False)
        tuning_scores(s.runs, tune_key).to_csv(s.out_dir / "tuning_scores.csv", index=False)
        md += [f"## {tune_key} chosen per cell on validation accuracy", "",
               "val/test accuracy at the chosen value: mean [95 % t-interval] over the seeds that "
               f"learned; failures = diverged or never learned (val acc < {NEVER_LEARNED}) of n. "
               "Test accuracy is shown, never used to choose. at_edge: the best value is at the "
               "grid's edge. Chosen by the best mean val accuracy (diverged = 0); a tie, by the lowest "
               "mean val loss (diverged = infinite); a cell where no run learned (untrainable on the "
               "grid), by the lowest mean val loss. margin: the chosen value's mean val accuracy "
               "minus the runner-up's.", "",
               tuned_markdown(s.tuned, tune_key), ""]  # fmt: skip
    if not s.ci.empty:
        s.ci.to_csv(s.out_dir / "accuracy_ci.csv", index=False)
        keys = group_keys_of(s.agg)
        for metric, title in (("val_acc", "validation accuracy"), ("test_acc", "test accuracy")):
            if metric not in s.ci or s.ci[f"{metric}_median"].isna().all():
                continue
            for label, table in ci_pivot(s.ci, keys, metric).items():
                md += [f"## {title}, 95 % CI — {label}", "", CI_HEADER, "", markdown_table(table), ""]
    if not s.vs_base.empty:
        s.vs_base.to_csv(s.out_dir / "vs_slope0.csv", index=False)
        m = int(s.vs_base["p"].notna().sum())
        md += ["## test accuracy minus slope 0's, same other keys", "",
               "Where neither side has a failure: difference of mean test accuracy [Welch 95 % interval], "
               "Welch's p. Where either side has one (outcomes are bimodal): Fisher's exact test of the "
               f"learned rates, no mean difference. p raw and Holm-adjusted over the table's {m} tests; "
               f"resolved: Holm p < {stats.ALPHA:.2f}.", "",
               compare_markdown(s.vs_base), ""]  # fmt: skip
    if not s.phase.empty:
        s.phase.to_csv(s.out_dir / "phase_boundary.csv", index=False)
        best = s.phase[s.phase["best"]]
        md += ["## Phase diagram: the edge of trainability against theory", "",
               f"Per slope: the deepest net with mean val accuracy >= {LEARNS} at each sigma^2 "
               "(`boundary`, gain:depth), and the contour depth·|log10 g| = k that fits it best "
               "(rms error in log10 depth). Critical sigma^2 = 2/(1+a^2).", "",
               markdown_table(best, index=False), "", "All contours:", "",
               markdown_table(s.phase.drop(columns=["boundary"]), index=False), ""]  # fmt: skip
    if not s.prelu.empty:
        s.prelu.to_csv(s.out_dir / "prelu_slopes.csv", index=False)
        keys = [c for c in s.prelu.columns if c not in ("layer", "n") and not c.startswith("learned_slope")]
        values = s.prelu[["learned_slope", "learned_slope_lo", "learned_slope_hi"]].values
        show = s.prelu.assign(cell=[stats.fmt_ci(*r, digits=2) for r in values])
        table = show.pivot_table(index=keys, columns="layer", values="cell", aggfunc="first")
        table.columns = [f"layer {c}" for c in table.columns]
        md += ["## PReLU: learned slope per hidden layer at the end", "",
               "mean [95 % t-interval] over seeds; layer 0 = input side", "",
               markdown_table(table), ""]  # fmt: skip
    specs = [("test_acc", False), ("decay_step0", True), ("decay_end", True), ("grad_ratio_step0", False),
             ("grad_ratio_end", False), ("dead_frac_end", False), ("steps_to_90", False)]  # fmt: skip
    if "val_acc_n" in s.agg and s.agg["val_acc_mean"].notna().any():
        specs.insert(0, ("val_acc", False))
    for metric, theory in specs if not s.agg.empty else []:
        title = METRICS[metric]
        s.tables[title] = pivot(s.agg, metric, theory)
        for label, table in s.tables[title].items():
            md += [
                f"## {title} — {label}",
                "",
                "mean ± std (n seeds)" + (", [th = theory]" if theory else ""),
                "",
            ]
            md += [markdown_table(table), ""]
            slug = label.replace(", ", "_").replace("=", "-") if label != "all runs" else "all"
            table.to_csv(s.out_dir / f"{metric}__{slug}.csv")
    s.markdown = "\n".join(md)
    (s.out_dir / "tables.md").write_text(s.markdown)


def tuning_notes(tuned: pd.DataFrame, key: str) -> list[str]:
    """EDGE: the chosen value is at an edge of its grid; UNTRAINABLE: no value of the grid
    learned (chosen by validation loss); TIE: the best accuracy was tied (broken by loss)."""
    notes = []
    for _, r in tuned.iterrows():
        cell = ", ".join(f"{k}={r[k]}" for k in tuned_cell_keys(tuned))
        if r["untrainable_on_grid"]:
            notes.append(f"UNTRAINABLE: {cell}: no {key} of {r['grid']} learned (val acc < {NEVER_LEARNED} "
                         f"or diverged); {key}={r[key]:g} has the lowest validation loss")  # fmt: skip
        elif r["chosen_by"] != "val_acc":
            notes.append(f"TIE: {cell}: {key}={r[key]:g} and {r['runner_up']:g} tie on validation "
                         f"accuracy; {r[key]:g} has the lower validation loss")  # fmt: skip
        if r["at_edge"]:
            notes.append(f"EDGE: {cell}: best {key}={r[key]:g} is at the edge of {r['grid']}")
    return notes


def tuned_cell_keys(tuned: pd.DataFrame) -> list[str]:
    """tuned.csv's cell keys: its columns before `tuned_key` (config.apply_tuned reads it so)."""
    return list(tuned.columns[: list(tuned.columns).index("tuned_key")])


def tuned_markdown(tuned: pd.DataFrame, key: str) -> str:
    cell_keys = tuned_cell_keys(tuned)
    show = tuned[cell_keys].copy()
    show[key] = tuned[key]
    show["val acc"] = [stats.fmt_ci(*r) for r in tuned[["val_acc", "val_acc_lo", "val_acc_hi"]].values]
    show["test acc"] = [stats.fmt_ci(*r) for r in tuned[["test_acc", "test_acc_lo", "test_acc_hi"]].values]
    show["failures"] = [f"{f}/{n}" for f, n in tuned[["failures", "n"]].values]
    show["at edge"] = tuned["at_edge"].map({True: "EDGE", False: ""})
    show["chosen by"] = tuned["chosen_by"]
    show["runner-up (margin)"] = [
        "–" if pd.isna(v) else f"{v:g} ({m:+.3f})" for v, m in tuned[["runner_up", "margin"]].values
    ]
    show["grid"] = tuned["grid"]
    return markdown_table(show, index=False)


def compare_markdown(vs: pd.DataFrame) -> str:
    results = {"n", "failures", "n_base", "failures_base", "test", "p", "p_holm", "resolved"}
    keys = [c for c in vs.columns if c not in results and not c.startswith("d_")]
    show = vs[keys].copy()
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m slopestudy.summarize",
        description="Summarize one or more sweep folders into tables (CSV, Markdown) and figures (PNG).",
    )
    p.add_argument("sweep_dirs", nargs="+", help="sweep folder(s), e.g. multirun/2026-11-27/01-27-30")
    p.add_argument("--out", help="output folder (default: <first sweep>/summary)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument(
        "--tune",
        metavar="KEY",
        help="choose KEY (e.g. lr) per cell by the best mean validation accuracy; writes tuned.csv, "
        "which `python train.py tuned=<it>` reads",
    )
    args = p.parse_args(argv)
    try:
        s = summarize(args.sweep_dirs, args.out, figures=not args.no_figures, tune_key=args.tune)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(s.main_table())
    print(f"\nTables and figures: {s.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
