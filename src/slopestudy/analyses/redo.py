"""Sections 3 and 5 of results/README.md on the validation protocol (the claims round): dying
units in narrow deep nets (He init, width x depth rows) and Fashion-MNIST (init x depth rows),
each from its tuning summary (tuned.csv) and its final runs, with the tables and statistics of
analyses/protocol.py; section 3 adds the dead-unit shares that motivate it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.analyses import protocol
from slopestudy.collect import done

DYING_ROWS = ("width", "depth")


def dead_cell(part: pd.DataFrame) -> str:
    """'0.42 → 0.55': mean share of dead hidden units (pre-activation <= 0 on the whole probe
    batch) at step 0 and after training, over the cell's finished runs."""
    return f"{part['dead_frac_step0'].mean():.2f} → {part['dead_frac_end'].mean():.2f}"


def dead_section(runs: pd.DataFrame) -> list[str]:
    runs = done(runs)
    if "dead_frac_step0" not in runs:
        return []
    cells = {key: dead_cell(part) for key, part in runs.groupby([*DYING_ROWS, "slope"])}
    table = pd.DataFrame([{"width": w, "depth": d, "slope": a, "v": v} for (w, d, a), v in cells.items()])
    return [
        "### Dead hidden units: share at step 0 → after training",
        "",
        "A unit is dead on the probe batch when its pre-activation is ≤ 0 for every example (for a=0 it then "
        "passes no gradient at all; for a leaky slope, a times its gradient). Mean over the final runs.",
        "",
        protocol.grid(protocol.order(table, DYING_ROWS), lambda r: r["v"], DYING_ROWS),
        "",
    ]


def dying_block(results: Path) -> str:
    tuned = results / "dying_tune" / "tuned.csv"
    if not tuned.exists():
        return "Dying units on the validation protocol: not run yet."
    t = protocol.order(pd.read_csv(tuned), DYING_ROWS)
    final = results / "dying_final"
    dead = dead_section(pd.read_csv(final / "runs.csv")) if (final / "runs.csv").exists() else []
    tuning = protocol.tuned_section(t, DYING_ROWS)
    return "\n".join([*tuning, *protocol.final_section(final, DYING_ROWS), *dead])


def fashion_block(results: Path) -> str:
    parts = [pd.read_csv(path).assign(init=init) for init in protocol.INITS
             if (path := results / f"fashion_tune_{init}" / "tuned.csv").exists()]  # fmt: skip
    if not parts:
        return "Fashion-MNIST on the validation protocol: not run yet."
    tuning = protocol.tuned_section(protocol.order(pd.concat(parts)))
    return "\n".join([*tuning, *protocol.final_section(results / "fashion_final")])
