"""How runs group into cells, and what each cell says: computed once per summary.

The run frame (one row per job, `collect`) has config columns and result columns. A *cell* is
one combination of the config keys that differ between runs, seeds pooled. A nuisance key
(config.NUISANCE, e.g. lr) splits cells only where it varies inside them (a tuning sweep);
where each cell has one value of it (each cell at its tuned lr), it is a property of the cell,
not an axis, so slopes at different tuned lrs still compare.

Per cell: mean ± std of every metric (`aggregate`), k/n learned and accuracy intervals
(`accuracy_ci`), each slope against slope 0 as a family of tests (`compare_to`), the learned
PReLU slopes per layer, and the phase diagram's edge of trainability. `Summary` holds them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from slopestudy.config import MACHINERY, NUISANCE, StudyConfig, flat_dict
from slopestudy.run.records import Status
from slopestudy.science import stats
from slopestudy.science.stats import NEVER_LEARNED
from slopestudy.summary.collect import done

METRICS = {  # column -> what the tables call it
    "val_acc": "validation accuracy",
    "test_acc": "test accuracy",
    "decay_step0": "signal decay/layer at step 0 (log10)",
    "decay_end": "signal decay/layer at the end (log10)",
    "grad_ratio_step0": "log10(grad first/last layer) at step 0",
    "grad_ratio_end": "log10(grad first/last layer) at the end",
    "dead_frac_step0": "dead-unit fraction at init",
    "dead_frac_end": "dead-unit fraction at the end",
    "steps_to_90": "steps to 90% validation accuracy",
    "kernel_gap_step0": "1 - mean pair cosine, last hidden layer, step 0",
    "kernel_gap_end": "1 - mean pair cosine, last hidden layer, at the end",
}
RESULT_COLUMNS = {"status", "val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "steps_to_90",
                  "decay_step0", "decay_end", "grad_ratio_step0", "grad_ratio_end", "dead_frac_step0",
                  "dead_frac_end", "val_gain_last_half", "val_gain_last_epoch", "error", "job", "sweep",
                  "decay_theory", "kernel_gap_step0", "kernel_gap_theory", "kernel_gap_end"}  # fmt: skip
CONFIG_KEYS = frozenset(flat_dict(StudyConfig()))
SENSITIVITY = f"failures_at_{stats.SECOND_THRESHOLD:g}"  # the failure count at the second threshold
LEARNS = 0.5  # the phase diagram's line between "learns" and "stalls" (mean val accuracy)
SHRINKAGE_K = (0.5, 1, 2, 3, 4, 6, 8)  # theory contours: depth * |log10 g| = k


# --- which keys make a cell -------------------------------------------------------------------
def config_columns(df: pd.DataFrame) -> list[str]:
    """The columns that are config keys (by the schema, so a new result column can never be
    taken for one), machinery left out."""
    return [c for c in df.columns if c in CONFIG_KEYS and c not in MACHINERY]


def group_keys(df: pd.DataFrame) -> list[str]:
    """Every config key that differs between runs (slope and depth always), seed excepted;
    a nuisance key only where it varies inside a cell."""
    cols = config_columns(df)
    differing = [c for c in cols if df[c].astype(str).nunique() > 1 or c in ("slope", "depth")]
    cell = [c for c in differing if c not in NUISANCE]
    tuned_here = [k for k in differing if k in NUISANCE and _varies_within(df, cell, k)]
    return [c for c in differing if c in cell or c in tuned_here]


def per_cell_nuisances(df: pd.DataFrame, keys: list[str]) -> list[str]:
    """Nuisance keys that differ between cells but are constant inside each (tuned per cell)."""
    return [
        c for c in config_columns(df) if c in NUISANCE and c not in keys and df[c].astype(str).nunique() > 1
    ]


def _varies_within(df: pd.DataFrame, cell: list[str], key: str) -> bool:
    values = df[key].astype(str)
    if not cell:
        return values.nunique() > 1
    return bool(values.groupby([df[c].astype(str) for c in cell]).nunique().max() > 1)


def variants(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per combination of the differing keys other than slope and depth."""
    others = [k for k in keys if k not in ("slope", "depth")]
    if not others:
        return [("all runs", df)]
    return [
        (", ".join(f"{k}={part[k].iloc[0]}" for k in others), part)
        for _, part in df.groupby(others, dropna=False)
    ]


def in_cell(df: pd.DataFrame, values: dict) -> pd.Series:
    """Rows whose keys equal `values` (NaN matches NaN: a key unset in every run of a cell)."""
    mask = pd.Series(True, index=df.index)
    for k, v in values.items():
        mask &= df[k].isna() if pd.isna(v) else df[k] == v
    return mask


def _cells(df: pd.DataFrame, keys: list[str]):
    """(keys as a dict, rows) per cell."""
    for cell, part in df.groupby(keys, dropna=False):
        yield dict(zip(keys, cell if isinstance(cell, tuple) else (cell,), strict=True)), part


# --- what a cell says -------------------------------------------------------------------------
def learned(df: pd.DataFrame, threshold: float = NEVER_LEARNED) -> pd.Series:
    """Per run: stats.learned's rule on a runs table (test accuracy and loss where there is no
    validation split)."""
    acc = df["val_acc"].fillna(df["test_acc"]) if "val_acc" in df else df["test_acc"]
    loss = df["val_loss"] if "val_loss" in df else df["test_loss"]
    if "val_loss" in df and "test_loss" in df:
        loss = loss.fillna(df["test_loss"])  # the runs of a sweep without a validation split
    diverged = df["status"] == Status.diverged
    return pd.Series(stats.learned(acc, diverged, loss, threshold), index=df.index)


def failed(df: pd.DataFrame, threshold: float = NEVER_LEARNED) -> pd.Series:
    """Per run: did not learn (diverged, at chance, or its training loss blew up)."""
    return ~learned(df, threshold)


def aggregate(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and n over seeds of every metric, per cell (all results, failures included)."""
    keys = group_keys(df) if keys is None else keys
    ok = done(df)
    cols = [c for c in [*METRICS, "decay_theory", "kernel_gap_theory"] if c in ok]
    agg = ok.groupby(keys, dropna=False)[cols].agg(["mean", "std", "count"])
    agg.columns = [f"{c}_{s}".replace("_count", "_n") for c, s in agg.columns]
    for key in per_cell_nuisances(ok, keys):  # e.g. each cell's tuned lr, shown next to its numbers
        agg[key] = ok.groupby(keys, dropna=False)[key].first()
    agg = agg.reset_index()
    agg.attrs["group_keys"] = keys
    return agg


def accuracy_ci(df: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """Per cell: k/n learned with its exact (Clopper–Pearson) interval, the failure count at
    the second threshold, and per accuracy the median of all runs and the mean with a 95 %
    t-interval over the runs that learned only (and of the plateau check, the val gain over the
    last half). Outcomes are bimodal: the mean is only ever shown next to its k/n."""
    keys = group_keys(df) if keys is None else keys
    ok = done(df).assign(failed=lambda d: failed(d))
    nuisances = per_cell_nuisances(ok, keys)
    rows = []
    for row, part in _cells(ok, keys):
        learned = part[~part["failed"]]
        row.update({key: part[key].iloc[0] for key in nuisances})
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


def compare_to(df: pd.DataFrame, keys: list[str] | None = None, key: str = "slope", base: float = 0.0):
    """Each cell against the cell with key=base and the same other keys, a family of tests:
    - neither side has a failure: the difference of mean accuracy with Welch's 95 % interval,
      tested on test accuracy (`test` = welch);
    - a failure on either side: the outcome is bimodal, so no mean difference; Fisher's exact
      test of the two learned rates (`test` = fisher; d_learned is the rate difference).
    p is raw, p_holm Holm-adjusted over every row; `resolved`: p_holm < stats.ALPHA."""
    keys = group_keys(df) if keys is None else keys
    ok = done(df).assign(failed=lambda d: failed(d))
    if key not in keys or not (ok[key] == base).any():
        return pd.DataFrame()
    others = [k for k in keys if k != key]
    rows = []
    for row, part in _cells(ok, keys):
        ref = ok[in_cell(ok, {**{k: row[k] for k in others}, key: base})]
        if row[key] != base and not ref.empty:
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


def learned_slopes(runs: pd.DataFrame, layers: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """PReLU runs: the learned slope of every hidden layer at the end (mean over units for
    per-unit slopes), mean and 95 % t-interval over seeds per cell and layer."""
    if "act" not in runs or not (runs["act"] == "prelu").any() or layers.empty:
        return pd.DataFrame()
    keys = [k for k in (group_keys(runs) if keys is None else keys) if k != "act"]
    ok = done(runs)[lambda d: d["act"] == "prelu"]
    slopes = layers[layers["quantity"] == "prelu_slope"]
    long = slopes.join(ok[keys], on="run", how="inner").rename(columns={"value": "learned_slope"})
    out = []
    for row, part in _cells(long, [*keys, "layer"]):
        mean, low, high = stats.t_interval(part["learned_slope"])
        out.append({**row, "n": len(part), "learned_slope": mean, "learned_slope_lo": low,
                    "learned_slope_hi": high})  # fmt: skip
    return pd.DataFrame(out)


def phase_boundary(agg: pd.DataFrame, keys: list[str] | None = None) -> pd.DataFrame:
    """For a sweep over init_gain x depth (x slope): per slope, the deepest net that learns at
    each gain (mean val acc >= LEARNS), and which theory contour depth·|log10 g| = k fits that
    boundary best (least squares in log depth, over gains where g != 1 and the boundary is
    inside the measured depths). One row per slope and k, the best marked."""
    keys = agg.attrs["group_keys"] if keys is None else keys
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


# --- the summary ------------------------------------------------------------------------------
@dataclass
class Summary:
    """One summary: the frames collected once, its cells computed once, and what it wrote."""

    runs: pd.DataFrame
    out_dir: Path
    keys: list[str] = field(default_factory=list)  # the cell keys (group_keys of runs)
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)  # collect's long per-layer frame
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)  # collect's per-evaluation frame
    agg: pd.DataFrame = field(default_factory=pd.DataFrame)
    ci: pd.DataFrame = field(default_factory=pd.DataFrame)
    vs_base: pd.DataFrame = field(default_factory=pd.DataFrame)
    prelu: pd.DataFrame = field(default_factory=pd.DataFrame)
    phase: pd.DataFrame = field(default_factory=pd.DataFrame)
    tuned: pd.DataFrame | None = None
    notes: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)
    markdown: str = ""

    def main_table(self) -> str:
        parts = []
        for title in ("test accuracy", "signal decay/layer at step 0 (log10)"):
            for label, table in self.tables.get(title, {}).items():
                parts.append(f"{title} — {label}   [mean ± std (n seeds)]\n{table.to_string()}")
        if self.tuned is not None:
            parts.append("tuned (chosen on validation accuracy):\n" + self.tuned.to_string(index=False))
        return "\n\n".join(parts + self.notes)


def make_summary(
    runs: pd.DataFrame, out_dir: Path, layers: pd.DataFrame | None = None, epochs: pd.DataFrame | None = None
) -> Summary:
    """Every cell-level frame of these runs, the keys computed once (from runs.csv alone
    everything but the learned PReLU slopes, which need `layers`)."""
    keys = group_keys(runs)
    layers = pd.DataFrame() if layers is None else layers
    s = Summary(runs=runs, out_dir=Path(out_dir), keys=keys, layers=layers,
                epochs=pd.DataFrame() if epochs is None else epochs, agg=aggregate(runs, keys))  # fmt: skip
    if not s.agg.empty:
        s.ci, s.vs_base = accuracy_ci(runs, keys), compare_to(runs, keys)
        s.prelu = learned_slopes(runs, layers, keys)
        s.phase = phase_boundary(s.agg, keys)
    return s
