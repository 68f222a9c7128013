"""Sections 3 and 5 of results/README.md on the validation protocol: dying
units in narrow deep nets (He init, width x depth rows) and Fashion-MNIST (init x depth rows),
each from its tuning summary (tuned.csv) and its final runs, with the tables and statistics of
analyses/protocol.py; section 3 adds the dead-unit shares that motivate it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from slopestudy.science.stats import NEVER_LEARNED
from slopestudy.study.analyses import protocol, replications
from slopestudy.summary.collect import done
from slopestudy.summary.tables import committed

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


def replication_section(runs: pd.DataFrame, tuned: pd.DataFrame) -> list[str]:
    """dying_power: the one cell where the slopes' learned rates differ most, on fresh seeds,
    tested on its own. Arms are slope x lr: each slope at its validation lr, and ReLU also at
    a=0.2's (ReLU's cell was untrainable on the grid, so its own lr says little). The family
    declared before the runs: each leaky arm against ReLU at ReLU's own lr, Holm over those; the
    primary endpoint is the learned rate at NEVER_LEARNED, the 0.5 cutoff a sensitivity check.
    ReLU at a leaky arm's lr was added after the first results (a reviewer's lr control, on the
    same seeds): reported beside the family as a robustness check, not in it."""
    runs = done(runs)
    (width,), (depth,) = runs["width"].unique(), runs["depth"].unique()  # the one replicated cell
    relu_lr = tuned.loc[
        (tuned["slope"] == 0) & (tuned["width"] == width) & (tuned["depth"] == depth), "lr"
    ].iloc[0]
    arms = {f"a={a:g} at lr {lr:g}": part for (a, lr), part in runs.groupby(["slope", "lr"])}
    relu = [name for name in arms if name.startswith("a=0 ")]
    own = f"a=0 at lr {relu_lr:g}"  # ReLU's arm at its own (validation) lr
    leaky = [name for name in arms if name not in relu]
    table, tests = replications.compare_pairs(arms, [(name, own) for name in leaky])
    controls = [(name, ref) for name in leaky for ref in relu
                if ref != own and ref.endswith(name.split(" at ")[1])]  # fmt: skip
    seeds = protocol.seeds_of(runs)
    out = [
        f"### Replication: width {width}, depth {depth} on fresh seeds {seeds}",
        "",
        "Same cell, lrs and budget as above; only the seeds are new, chosen after the five above showed "
        "the largest difference (a confirmatory test of a cell picked for being extreme: expect it to "
        "shrink). ReLU also runs at a=0.2's lr on the same seeds, so that the slope is not confounded "
        "with the lr:",
        "",
        replications.markdown(table),
        "",
        f"The declared family: each leaky arm against ReLU at ReLU's own lr (Fisher's exact test; the "
        f"primary endpoint is the learned rate at {NEVER_LEARNED:g}, Holm over the {len(tests)} "
        f"comparisons; the 0.5 cutoff is a sensitivity check, Holm over the same {len(tests)}):",
        "",
        replications.markdown(tests, drop=()),
        "",
    ]
    if controls:
        _, checks = replications.compare_pairs(arms, controls)
        out += [
            "The lr control, added after the first results and not part of the family (a robustness "
            "check: the same ReLU seeds at the leaky arm's lr; one comparison per threshold, so its "
            "Holm p is its Fisher p):",
            "",
            replications.markdown(checks, drop=()),
            "",
        ]
    return out


def dying_block(results: Path) -> str:
    tuned = results / "dying_tune" / "tuned.csv"
    if not tuned.exists():
        return "Dying units on the validation protocol: not run yet."
    t = protocol.order(pd.read_csv(tuned), DYING_ROWS)
    final_runs = committed(results, "dying_final")
    dead = dead_section(final_runs) if final_runs is not None else []
    power = committed(results, "dying_power")
    replication = replication_section(power, t) if power is not None else []
    tuning = protocol.tuned_section(t, DYING_ROWS)
    return "\n".join(
        [*tuning, *protocol.final_section(results / "dying_final", DYING_ROWS), *dead, *replication]
    )


def fashion_block(results: Path) -> str:
    tuned = protocol.tuned_by_init(results, "fashion_tune_{init}")
    if tuned is None:
        return "Fashion-MNIST on the validation protocol: not run yet."
    return "\n".join([*protocol.tuned_section(tuned), *protocol.final_section(results / "fashion_final")])
