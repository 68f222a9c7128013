"""Choosing a nuisance value (e.g. lr) per cell on validation data: `summarize --tune KEY`.

tuned.csv has one row per cell: the cell keys, then `tuned_key` and the chosen value (what
`python train.py tuned=<tuned.csv>` reads: validate.apply_tuned takes the columns before
`tuned_key` as the cell keys), then what the value scored and how it was chosen:
- the best mean validation accuracy wins (a diverged run scores 0, so a value that sometimes
  diverges loses);
- a tie (mean scores equal to TIE_DECIMALS decimals) goes to the lowest mean validation loss,
  never to grid order;
- a cell where no run at any value learned is `untrainable_on_grid`: the value with the
  lowest mean validation loss (diverged runs count as infinite loss);
- `margin` (chosen minus runner-up mean score) and `runner_up` say how fragile a choice is.
"""

from __future__ import annotations

import math

import pandas as pd

from slopestudy.run.records import Status
from slopestudy.science import stats
from slopestudy.summary.cells import failed, group_keys, in_cell
from slopestudy.summary.collect import done


def tune(df: pd.DataFrame, key: str, keys: list[str] | None = None) -> pd.DataFrame:
    """Per cell (the other differing keys, seeds pooled): the value of `key` to train it at,
    chosen by `rank_values` on validation data only (test columns are not in the frame it
    chooses from). Returns one row per cell (tuned.csv): the cell keys, `tuned_key`, the chosen
    value and what it scored, then how it was chosen (`untrainable_on_grid`, `chosen_by`), the
    runner-up and the margin over it."""
    keys = group_keys(df) if keys is None else keys
    if key not in keys:
        raise ValueError(f"--tune {key}: {key} does not vary within any cell of these runs")
    ok = done(df)
    if "val_acc" not in ok or ok["val_acc"].isna().all():
        raise ValueError("--tune needs validation accuracy: these runs have no validation split")
    cell_keys = [k for k in keys if k != key]
    choose_from = ok[cell_keys + [key]].assign(  # no test column in here
        score=tuning_score(ok),
        loss=tuning_loss(ok),
        learned=~failed(ok),
        diverged=ok["status"] == Status.diverged,
    )
    ranked = rank_values(choose_from, cell_keys, key)
    return pd.DataFrame([_tuned_row(ok, part, cell_keys, key) for part in _ranked_cells(ranked, cell_keys)])


def _ranked_cells(ranked: pd.DataFrame, cell_keys: list[str]) -> list[pd.DataFrame]:
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


def tuning_score(runs: pd.DataFrame) -> pd.Series:
    """What --tune maximizes: final validation accuracy, 0 for a diverged run."""
    return runs["val_acc"].where(runs["status"] != Status.diverged, 0.0).fillna(0.0)


def tuning_loss(runs: pd.DataFrame) -> pd.Series:
    """What breaks a tie: final validation loss, infinite for a diverged run (or none)."""
    loss = runs["val_loss"] if "val_loss" in runs else pd.Series(math.nan, index=runs.index)
    return loss.where(runs["status"] != Status.diverged, math.inf).fillna(math.inf)


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


def tuning_scores(df: pd.DataFrame, key: str, keys: list[str] | None = None) -> pd.DataFrame:
    """Mean validation score per cell and value of `key`: the curve the choice was read off."""
    keys = group_keys(df) if keys is None else keys
    ok = done(df)
    cell_keys = [k for k in keys if k != key]
    table = ok[keys].assign(score=tuning_score(ok)).groupby(keys)["score"].mean().unstack(key)
    table.columns = [f"{key}={v:g}" for v in table.columns]
    return table.reset_index() if cell_keys else table


def tuned_cell_keys(tuned: pd.DataFrame) -> list[str]:
    """tuned.csv's cell keys: its columns before `tuned_key` (validate.apply_tuned reads it so)."""
    return list(tuned.columns[: list(tuned.columns).index("tuned_key")])


def tuning_notes(tuned: pd.DataFrame, key: str) -> list[str]:
    """EDGE: the chosen value is at an edge of its grid; UNTRAINABLE: no value of the grid
    learned (chosen by validation loss); TIE: the best accuracy was tied (broken by loss)."""
    notes = []
    for _, r in tuned.iterrows():
        cell = ", ".join(f"{k}={r[k]}" for k in tuned_cell_keys(tuned))
        if r["untrainable_on_grid"]:
            notes.append(f"UNTRAINABLE: {cell}: no {key} of {r['grid']} learned ("
                         f"{stats.LEARNED_RULE}); {key}={r[key]:g} has the lowest val loss")  # fmt: skip
        elif r["chosen_by"] != "val_acc":
            notes.append(f"TIE: {cell}: {key}={r[key]:g} and {r['runner_up']:g} tie on validation "
                         f"accuracy; {r[key]:g} has the lower validation loss")  # fmt: skip
        if r["at_edge"]:
            notes.append(f"EDGE: {cell}: best {key}={r[key]:g} is at the edge of {r['grid']}")
    return notes
