"""How runs group into cells: the one place that says which keys split a table and which pool.

The tidy run table (one row per job, `summarize.collect`) has config columns and result
columns. A *cell* is one combination of the config keys that differ between runs, seeds
pooled. A nuisance key (config.NUISANCE, e.g. lr) splits cells only where it varies inside
them (a tuning sweep); where each cell has one value of it (each cell at its tuned lr), it is
a property of the cell, not an axis, so slopes at different tuned lrs still compare.
"""

from __future__ import annotations

import pandas as pd

from slopestudy.config import MACHINERY, NUISANCE

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
}
RESULT_COLUMNS = {"status", "val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "steps_to_90",
                  "decay_step0", "decay_end", "grad_ratio_step0", "grad_ratio_end", "dead_frac_step0",
                  "dead_frac_end", "val_gain_last_half", "val_gain_last_epoch", "error", "job", "sweep",
                  "decay_theory"}  # fmt: skip


def config_columns(df: pd.DataFrame) -> list[str]:
    return [c for c in df.columns if c not in RESULT_COLUMNS and c not in MACHINERY]


def group_keys(df: pd.DataFrame) -> list[str]:
    """Every config key that differs between runs (slope and depth always), seed excepted;
    a nuisance key only where it varies inside a cell."""
    cols = config_columns(df)
    differing = [c for c in cols if df[c].astype(str).nunique() > 1 or c in ("slope", "depth")]
    cell = [c for c in differing if c not in NUISANCE]
    tuned_here = [k for k in differing if k in NUISANCE and _varies_within(df, cell, k)]
    return [c for c in differing if c in cell or c in tuned_here]


def per_cell_nuisances(df: pd.DataFrame) -> list[str]:
    """Nuisance keys that differ between cells but are constant inside each (tuned per cell)."""
    keys = group_keys(df)
    return [
        c for c in config_columns(df) if c in NUISANCE and c not in keys and df[c].astype(str).nunique() > 1
    ]


def _varies_within(df: pd.DataFrame, cell: list[str], key: str) -> bool:
    values = df[key].astype(str)
    if not cell:
        return values.nunique() > 1
    return bool(values.groupby([df[c].astype(str) for c in cell]).nunique().max() > 1)


def group_keys_of(agg: pd.DataFrame) -> list[str]:
    """The keys an aggregate table was grouped by (kept in its attrs by summarize.aggregate)."""
    return list(agg.attrs["group_keys"])


def variants(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per combination of the differing keys other than slope and depth."""
    others = [k for k in keys if k not in ("slope", "depth")]
    if not others:
        return [("all runs", df)]
    return [
        (", ".join(f"{k}={part[k].iloc[0]}" for k in others), part)
        for _, part in df.groupby(others, dropna=False)
    ]
