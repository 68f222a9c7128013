"""results/headline.md: compact cross-summary tables that sections 1-5 of results/README.md quote,
from the committed results/<summary>/runs.csv of init_probe, slope_depth, adam_contrast, fashion
and dying_units. A summary not written yet is left out."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from slopestudy.config import Init, StudyConfig
from slopestudy.science import stats
from slopestudy.science.profiles import theory_decay_per_layer
from slopestudy.summary.cells import failed
from slopestudy.summary.collect import done
from slopestudy.summary.tables import committed, md_table, pm

DEPTH30_STEPS = 29  # hidden-to-hidden steps of a depth-30 net: the gain table's exponent
ACCURACY_TABLES = [  # (summary, title, row keys)
    ("slope_depth", "Test accuracy after 2 epochs, SGD (slope_depth)", ["init", "lr", "depth"]),
    ("adam_contrast", "Test accuracy after 2 epochs, Adam lr 0.001 (adam_contrast)", ["init", "depth"]),
    ("fashion", "Fashion-MNIST test accuracy after 2 epochs, SGD (fashion)", ["init", "lr", "depth"]),
]


def theory_at(init: str, slope: float) -> float:
    return theory_decay_per_layer(StudyConfig(init=Init(init), slope=slope))


def finished_runs(results: Path, summary: str) -> pd.DataFrame | None:
    runs = committed(results, summary)
    return None if runs is None else done(runs)


def slope_header(slopes) -> list[str]:
    return [f"a={a:g}" for a in slopes]


def decay_vs_theory(df: pd.DataFrame) -> list[str]:
    """Measured step-0 decay per layer (depth >= 5, all seeds) against theory, per init and slope,
    and what it adds up to over a depth-30 net relative to slope 0."""
    df = df[df["depth"] >= 5]
    slopes = sorted(df["slope"].unique())
    rows = [[str(init), *(f"{pm(part[part['slope'] == a]['decay_step0'])} [{theory_at(init, a):.3f}]"
                          for a in slopes)] for init, part in df.groupby("init")]  # fmt: skip
    n = df.groupby(["init", "slope"]).size()
    count = f"{n.min()}" if n.min() == n.max() else f"{n.min()}–{n.max()}"
    out = [md_table(["init", *slope_header(slopes)], rows), "",
           f"Cells: measured mean ± std over depths 5–50 and seeds (n = {count} runs per "
           "cell) [mean-field theory]. Decay is log10 per layer toward the input."]  # fmt: skip
    rows = []
    for init, part in df.groupby("init"):
        base = part[part["slope"] == 0]["decay_step0"].mean()
        cells = []
        for a in slopes:
            measured = 10 ** (DEPTH30_STEPS * (base - part[part["slope"] == a]["decay_step0"].mean()))
            theory = 10 ** (DEPTH30_STEPS * (theory_at(init, 0.0) - theory_at(init, a)))
            cells.append(f"{measured:.3g}× [{theory:.3g}×]")
        rows.append([str(init), *cells])
    return [*out, "", md_table(["init", *slope_header(slopes)], rows), "",
            "Measured gain in signal norm at the input side of a depth-30 net (29 hidden-to-hidden "
            "steps) relative to slope 0, from the measured decay rates above. Theory: √((1+a²)/2)^29 "
            "relative to ReLU for every init except kaiming, whose gain is re-tuned for each slope "
            "[in brackets]."]  # fmt: skip


def init_probe_block(results: Path) -> str:
    """Section 1's marker block: the step-0 decay per init and slope against theory, and what
    it adds up to over a depth-30 net (decay_vs_theory on init_probe's runs)."""
    runs = finished_runs(results, "init_probe")
    return "\n".join(decay_vs_theory(runs)) if runs is not None else "init_probe: not run yet."


def accuracy_table(df: pd.DataFrame, keys: list[str], metric: str = "test_acc") -> list[str]:
    """`keys` rows, slope columns, mean ± std of `metric` over seeds."""
    slopes = sorted(df["slope"].unique())
    rows = []
    for key, part in df.groupby(keys):
        key = key if isinstance(key, tuple) else (key,)
        rows.append([*(str(k) for k in key), *(pm(part[part["slope"] == a][metric]) for a in slopes)])
    return [md_table([*keys, *slope_header(slopes)], rows)]


def dying_units(df: pd.DataFrame) -> list[str]:
    md = ["## Dead units, kaiming init (dying_units)", "", "Dead fraction at init:", ""]
    md += accuracy_table(df, ["width", "depth"], "dead_frac_step0") + ["", "Test accuracy after 1 epoch:", ""]
    md += accuracy_table(df, ["width", "depth"], "test_acc") + [""]
    never = df.assign(dead=failed(df)).groupby(["slope"])["dead"].agg(["sum", "count"])
    counts = ", ".join(f"a={a:g}: {int(r['sum'])}/{int(r['count'])}" for a, r in never.iterrows())
    rule = f"learned: {stats.LEARNED_RULE}; test accuracy and loss here: this sweep has no validation split"
    return md + [f"Runs that did not learn ({rule}), by slope: {counts}", ""]


def headline_md(results: Path) -> str:
    """The whole page, in its published order."""
    made_by = "Made by `python -m slopestudy.study report` from `results/*/runs.csv`."
    md = ["# Headline tables", "", made_by, ""]
    with np.errstate(all="ignore"):  # numpy's warnings on empty or constant cells are not findings
        if (df := finished_runs(results, "init_probe")) is not None:
            md += ["## Signal decay per layer at initialization: measured vs theory (init_probe)", ""]
            md += decay_vs_theory(df) + [""]
        for summary, title, keys in ACCURACY_TABLES:
            if (df := finished_runs(results, summary)) is not None:
                md += [f"## {title}", "", "mean ± std over seeds", ""] + accuracy_table(df, keys) + [""]
        if (df := finished_runs(results, "slope_depth")) is not None:
            md += ["## log10(‖∂L/∂W_first‖ / ‖∂L/∂W_last‖) at step 0 and after training (slope_depth)", ""]
            md += accuracy_table(df, ["init", "depth"], "grad_ratio_step0") + [""]
            md += accuracy_table(df, ["init", "depth"], "grad_ratio_end") + [""]
        if (df := finished_runs(results, "dying_units")) is not None:
            md += dying_units(df)
    return "\n".join(md)
