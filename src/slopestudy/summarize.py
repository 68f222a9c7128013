"""Turn sweep folders into a tidy DataFrame, tables over seeds, and figures.

    python -m slopestudy.summarize multirun/2026-11-27/01-27-30 [more sweep dirs] [--out DIR]

Runs automatically at the end of every `python train.py -m ...` (see callbacks.py).
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from slopestudy.config import sweep_jobs
from slopestudy.model import theory_decay_per_layer
from slopestudy.records import DONE, read_run

# Config keys that never split a group: where files live and how the machinery ran.
NON_SCIENTIFIC = {"seed", "data.root", "data.fetch", "data.verify_md5", "threads", "device",
                  "log_every", "hist_every"}  # fmt: skip
METRICS = {  # column -> what the tables call it
    "test_acc": "test accuracy",
    "decay_step0": "signal decay/layer at step 0 (log10)",
    "decay_end": "signal decay/layer at the end (log10)",
    "grad_ratio_step0": "log10(grad first/last layer) at step 0",
    "grad_ratio_end": "log10(grad first/last layer) at the end",
    "dead_frac_step0": "dead-unit fraction at init",
    "dead_frac_end": "dead-unit fraction at the end",
    "steps_to_90": "steps to 90% test accuracy",
}


# --- one run ---------------------------------------------------------------------------------
def fit_decay(signal: list[float] | None) -> float:
    """Least-squares slope of log10 ||dL/dz_l|| against l over the hidden layers (all but the
    last); positive = the signal shrinks toward the input. NaN with < 2 hidden layers or a zero."""
    if not signal or len(signal) < 3:
        return math.nan
    hidden = np.asarray(signal[:-1], dtype=float)
    if not np.all(np.isfinite(hidden)) or np.any(hidden <= 0):
        return math.nan
    return float(np.polyfit(np.arange(len(hidden)), np.log10(hidden), 1)[0])


def grad_ratio(grad: list[float] | None) -> float:
    """log10(||dL/dW_first|| / ||dL/dW_last||): negative = the input side gets less."""
    if not grad or len(grad) < 2 or grad[0] <= 0 or grad[-1] <= 0:
        return math.nan
    return math.log10(grad[0] / grad[-1])


def flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def run_row(job_dir: Path, sweep_dir: Path) -> dict:
    run = read_run(job_dir)
    if run is None:  # killed before run.json, or unreadable: report it, don't crash on it
        cfg = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()) or {}
        run = {"status": "missing", "config": cfg}
    cfg = flatten(run.get("config", {}))
    history = run.get("history") or []
    last = history[-1] if len(history) > 1 else {}
    final = run.get("final") or {}
    row = {k: v for k, v in cfg.items() if not k.startswith("hydra")}
    reached = [h["step"] for h in history if (h.get("test_acc") or 0) >= 0.9]
    status = run.get("status", "missing")
    row.update(
        status="interrupted" if status == "running" else status,
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
        error=run.get("error"),
        job=str(job_dir.relative_to(sweep_dir)),
        sweep=shown(sweep_dir),
    )
    if "init" in row and "slope" in row:
        row["decay_theory"] = theory_decay_per_layer(row["init"], row["slope"], row.get("width", 256))
    return row


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
    for col in ("test_acc", "test_loss", "train_loss", "steps_to_90", "dead_frac_step0", "dead_frac_end"):
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
RESULT_COLUMNS = {"status", "test_acc", "test_loss", "train_loss", "steps_to_90", "decay_step0",
                  "decay_end", "grad_ratio_step0", "grad_ratio_end", "dead_frac_step0",
                  "dead_frac_end", "error", "job", "sweep", "decay_theory"}  # fmt: skip


def group_keys(df: pd.DataFrame) -> list[str]:
    """Every config key that differs between runs, except seed: never average across them."""
    config_cols = [c for c in df.columns if c not in RESULT_COLUMNS and c not in NON_SCIENTIFIC]
    return [c for c in config_cols if df[c].astype(str).nunique() > 1 or c in ("slope", "depth")]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n over seeds of every metric, per group of identical settings.

    Only completed or diverged runs count (a diverged run's accuracy is a real outcome)."""
    keys = group_keys(df)
    ok = df[df["status"].isin(DONE)]
    cols = [c for c in [*METRICS, "decay_theory"] if c in ok]
    agg = ok.groupby(keys, dropna=False)[cols].agg(["mean", "std", "count"])
    agg.columns = [f"{c}_{s}".replace("_count", "_n") for c, s in agg.columns]
    return agg.reset_index()


def variants(df: pd.DataFrame, keys: list[str]) -> list[tuple[str, pd.DataFrame]]:
    """(label, rows) per combination of the differing keys other than slope and depth."""
    others = [k for k in keys if k not in ("slope", "depth")]
    if not others:
        return [("all runs", df)]
    return [
        (", ".join(f"{k}={part[k].iloc[0]}" for k in others), part)
        for _, part in df.groupby(others, dropna=False)
    ]


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
    for label, part in variants(agg, group_keys_of(agg)):
        cells = part.assign(cell=part.apply(format_cell, axis=1, metric=metric, theory=theory))
        table = cells.pivot_table(index="depth", columns="slope", values="cell", aggfunc="first")
        table.columns = [f"slope={c:g}" for c in table.columns]
        out[label] = table
    return out


def group_keys_of(agg: pd.DataFrame) -> list[str]:
    return [c for c in agg.columns if not any(c.startswith(m + "_") for m in [*METRICS, "decay_theory"])]


@dataclass
class Summary:
    runs: pd.DataFrame
    agg: pd.DataFrame
    out_dir: Path
    notes: list[str] = field(default_factory=list)
    tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)
    figures: list[Path] = field(default_factory=list)

    def main_table(self) -> str:
        parts = []
        for title in ("test accuracy", "signal decay/layer at step 0 (log10)"):
            for label, table in self.tables.get(title, {}).items():
                parts.append(f"{title} — {label}   [mean ± std (n seeds)]\n{table.to_string()}")
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
    for _, r in df[df["status"].isin(["failed", "interrupted", "missing"])].iterrows():
        notes.append(
            f"{r['status'].upper()}: {r['job']}" + (f" — {r['error']}" if pd.notna(r["error"]) else "")
        )
    for _, r in df[df["status"] == "diverged"].iterrows():
        notes.append(f"DIVERGED: {r['job']} (kept in the tables with its final metrics)")
    return notes


def summarize(
    sweep_dirs: list[str | Path], out_dir: str | Path | None = None, figures: bool = True
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
    write_tables(summary)
    if figures and not summary.agg.empty:
        from slopestudy import figures as fig_mod

        summary.figures = fig_mod.draw_all(summary)
    return summary


def write_tables(s: Summary) -> None:
    s.runs.to_csv(s.out_dir / "runs.csv", index=False)
    s.agg.to_csv(s.out_dir / "aggregate.csv", index=False)
    md = ["# Sweep summary", "", *[f"- {n}" for n in s.notes], ""]
    if s.agg.empty:
        md.append("No completed runs to tabulate.")
    specs = [("test_acc", False), ("decay_step0", True), ("decay_end", True), ("grad_ratio_step0", False),
             ("grad_ratio_end", False), ("dead_frac_end", False), ("steps_to_90", False)]  # fmt: skip
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
            md += [table.to_markdown(), ""]
            slug = label.replace(", ", "_").replace("=", "-") if label != "all runs" else "all"
            table.to_csv(s.out_dir / f"{metric}__{slug}.csv")
    (s.out_dir / "tables.md").write_text("\n".join(md))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m slopestudy.summarize",
        description="Summarize one or more sweep folders into tables (CSV, Markdown) and figures (PNG).",
    )
    p.add_argument("sweep_dirs", nargs="+", help="sweep folder(s), e.g. multirun/2026-11-27/01-27-30")
    p.add_argument("--out", help="output folder (default: <first sweep>/summary)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    args = p.parse_args(argv)
    try:
        s = summarize(args.sweep_dirs, args.out, figures=not args.no_figures)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(s.main_table())
    print(f"\nTables and figures: {s.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
