"""Sections 3 and 5 of results/README.md on the validation protocol (the claims round): dying
units in narrow deep nets (He init, width x depth rows) and Fashion-MNIST (init x depth rows),
each from its tuning summary (tuned.csv) and its final runs, with the tables and statistics of
analyses/protocol.py; section 3 adds the dead-unit shares that motivate it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.analyses import claims, protocol
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


def replication_section(runs: pd.DataFrame) -> list[str]:
    """dying_power: the one cell where the slopes' learned rates differ most, on fresh seeds,
    tested on its own (a family of two pre-declared pairs: each slope against ReLU)."""
    runs = done(runs)
    arms = {f"a={a:g}": part for a, part in runs.groupby("slope")}
    pairs = [(name, "a=0") for name in arms if name != "a=0"]
    table, tests = claims.compare_pairs(arms, pairs)
    seeds = protocol.seeds_of(runs)
    return [
        f"### Replication: width 4, depth 20 on fresh seeds {seeds}",
        "",
        "Same cell, lr and budget as above; only the seeds are new (chosen after the five above showed "
        "the largest difference, so this is the confirmatory test):",
        "",
        claims.markdown(table),
        "",
        f"Each slope against ReLU (Fisher's exact test at both thresholds, Holm over the {len(tests)}):",
        "",
        claims.markdown(tests, drop=()),
        "",
    ]


def dying_block(results: Path) -> str:
    tuned = results / "dying_tune" / "tuned.csv"
    if not tuned.exists():
        return "Dying units on the validation protocol: not run yet."
    t = protocol.order(pd.read_csv(tuned), DYING_ROWS)
    final = results / "dying_final"
    dead = dead_section(pd.read_csv(final / "runs.csv")) if (final / "runs.csv").exists() else []
    power = results / "dying_power" / "runs.csv"
    replication = replication_section(pd.read_csv(power)) if power.exists() else []
    tuning = protocol.tuned_section(t, DYING_ROWS)
    return "\n".join([*tuning, *protocol.final_section(final, DYING_ROWS), *dead, *replication])


def fashion_block(results: Path) -> str:
    parts = [pd.read_csv(path).assign(init=init) for init in protocol.INITS
             if (path := results / f"fashion_tune_{init}" / "tuned.csv").exists()]  # fmt: skip
    if not parts:
        return "Fashion-MNIST on the validation protocol: not run yet."
    tuning = protocol.tuned_section(protocol.order(pd.concat(parts)))
    return "\n".join([*tuning, *protocol.final_section(results / "fashion_final")])
