"""Turn sweep folders into a tidy DataFrame, tables over seeds, and figures.

    python -m slopestudy.summary multirun/2026-11-27/01-27-30 [more sweep dirs] [--out DIR]
    python -m slopestudy.summary multirun/fair_tune/sgd/kaiming --tune lr   # choose lr per cell

Runs automatically at the end of every `python train.py -m ...` (see callbacks.py).

The steps, each in its own module: collect (every run.json read once into frames), cells
(grouping, intervals and tests per cell), tuning (--tune), tables (CSVs and tables.md),
figures (PNGs), and the TensorBoard `summary` run (tblog). This module only puts them in order.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from slopestudy.run.records import PROBLEMS, Status
from slopestudy.run.tblog import write_summary_run
from slopestudy.summary import figures as figs
from slopestudy.summary.cells import Summary, make_summary
from slopestudy.summary.collect import collect, kept, missing_jobs, shown
from slopestudy.summary.tables import markdown_sections, write_tables
from slopestudy.summary.tuning import tune, tuning_notes


def status_notes(df: pd.DataFrame, sweep_dirs: list[Path]) -> list[str]:
    """What a reader must know before the tables: counts, missing jobs, failures, divergences."""
    counts = df["status"].value_counts().to_dict()
    notes = [f"{len(df)} runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))]
    for sweep in sweep_dirs:
        missing = missing_jobs(sweep, df)
        if missing:
            shown = "; ".join(", ".join(f"{k}={v}" for k, v in m.items()) for m in missing[:10])
            more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
            notes.append(f"PARTIAL: {sweep} lacks {len(missing)} finished job(s): {shown}{more}")
    for _, r in df[df["status"].isin(PROBLEMS)].iterrows():
        notes.append(
            f"{r['status'].upper()}: {r['job']}" + (f" — {r['error']}" if pd.notna(r["error"]) else "")
        )
    for _, r in df[df["status"] == Status.diverged].iterrows():
        notes.append(f"DIVERGED: {r['job']} (kept in the tables with its final metrics)")
    return notes + code_notes(df)


def code_notes(df: pd.DataFrame) -> list[str]:
    """A warning when the runs ran different code (an edit while the sweep ran, or sweeps of
    different commits summarized together): the `code_hash` column says which run ran which."""
    versions = df["code_hash"].dropna().unique() if "code_hash" in df else []
    commits = df["git_commit"].astype("string").fillna("") if "git_commit" in df else pd.Series(dtype=str)
    dirty = int(commits.str.endswith("+dirty").sum())
    notes = []
    if len(versions) > 1:
        counts = ", ".join(f"{h}: {n} runs" for h, n in df["code_hash"].value_counts().items())
        notes.append(f"MIXED CODE: these runs ran {len(versions)} versions of the package source ({counts})")
    if dirty:
        notes.append(f"DIRTY TREE: {dirty} run(s) started from a tree with uncommitted changes")
    return notes


def summarize(
    sweep_dirs: list[str | Path],
    out_dir: str | Path | None = None,
    figures: bool = True,
    tune_key: str | None = None,
    keep: bool = False,
    wanted=None,
) -> Summary:
    """One sweep's (or several sweeps') summary: tables, figures and the TensorBoard run. With
    `keep`, the runs of the summary already in `out_dir` whose folders are not here stay in it
    (those `wanted` marks, if given: collect.kept)."""
    sweep_dirs = [Path(d).resolve() for d in sweep_dirs]
    for d in sweep_dirs:
        if not d.is_dir():
            raise FileNotFoundError(f"{d} is not a folder")
    found = collect(sweep_dirs)
    if found.runs.empty:
        raise FileNotFoundError(
            f"no Hydra job folders (with .hydra/config.yaml) under {', '.join(map(str, sweep_dirs))}"
        )
    out = Path(out_dir) if out_dir else sweep_dirs[0] / "summary"
    found, n_kept = kept(out, found, wanted) if keep else (found, 0)
    out.mkdir(parents=True, exist_ok=True)
    summary = make_summary(found.runs, out, found.layers, found.epochs)
    summary.notes = status_notes(found.runs, sweep_dirs)
    if n_kept:
        summary.notes.append(
            f"KEPT: {n_kept} run(s) from the committed {shown(out / 'runs.csv')} (their folders are not "
            f"here); it keeps no per-layer norms, so {', '.join(figs.PER_LAYER_NORMS)}.png is the one drawn "
            "from the earlier folders"
        )
    _tables(summary, tune_key)
    if figures:  # the `summary` run: figures, tables and the HParams experiment
        skip = figs.PER_LAYER_NORMS if n_kept else ()
        summary.figures = figs.draw_all(summary, skip) if not summary.agg.empty else []
        images = {p.stem: figs.read_image(p) for p in summary.figures}
        write_summary_run(out, images, markdown_sections(summary.markdown), found.hparams)
    return summary


def tables_from_runs(
    runs: pd.DataFrame, out_dir: str | Path, tune_key: str | None = None, extra_notes: list[str] = ()
) -> Summary:
    """The tables again from a committed runs.csv (no run.json needed; no figures, and no
    learned PReLU slopes, which are per layer): what a published summary says, regenerated.
    `extra_notes` follow the notes the runs give (e.g. what only the sweep folders could say)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = make_summary(runs, out)
    summary.notes = status_notes(runs, []) + list(extra_notes)
    _tables(summary, tune_key)
    return summary


# Notes a runs.csv cannot say again: they were true of the folders the summary was made from.
FOLDER_NOTES = ("- KEPT:", "- PARTIAL:")


def retable(out_dir: str | Path) -> list[Path]:
    """A published summary's tables again from its committed runs.csv, into the same folder,
    after the learned rule or a table's format changed: tuned again with the committed tuned.csv's
    key, its folder notes carried over. (`study report --figures` redraws its figures.) Returns
    the files that changed."""
    out = Path(out_dir)
    before = {p: p.read_bytes() for p in out.iterdir() if p.suffix in (".csv", ".md")}
    old = (out / "tables.md").read_text().splitlines() if (out / "tables.md").exists() else []
    tuned = out / "tuned.csv"
    key = pd.read_csv(tuned)["tuned_key"].iloc[0] if tuned.exists() else None
    kept = [line[2:] for line in old if line.startswith(FOLDER_NOTES)]
    tables_from_runs(pd.read_csv(out / "runs.csv", low_memory=False), out, key, kept)
    return sorted(p for p in out.iterdir() if p.suffix in (".csv", ".md") and before.get(p) != p.read_bytes())


def _tables(summary: Summary, tune_key: str | None) -> None:
    if tune_key:
        summary.tuned = tune(summary.runs, tune_key, summary.keys)
        summary.notes += tuning_notes(summary.tuned, tune_key)
    write_tables(summary, tune_key)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m slopestudy.summary",
        description="Summarize one or more sweep folders into tables (CSV, Markdown) and figures (PNG).",
    )
    p.add_argument("sweep_dirs", nargs="+", help="sweep folder(s), e.g. multirun/2026-11-27/01-27-30")
    p.add_argument("--out", help="output folder (default: <first sweep>/summary)")
    p.add_argument("--no-figures", action="store_true", help="tables only")
    p.add_argument(
        "--tune",
        metavar="KEY",
        help="choose KEY (e.g. lr) per cell by the best mean validation accuracy (ties and cells "
        "where nothing learns: the lowest validation loss); writes tuned.csv, which "
        "`python train.py tuned=<it>` reads",
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="keep the runs of the summary already in --out whose folders are not here (a grid "
        "widened on a machine where the earlier sweep folders are gone)",
    )
    args = p.parse_args(argv)
    if args.keep and not args.out:
        p.error("--keep needs --out: the committed summary whose runs are kept")
    try:
        s = summarize(
            args.sweep_dirs, args.out, figures=not args.no_figures, tune_key=args.tune, keep=args.keep
        )
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(s.main_table())
    print(f"\nTables and figures: {s.out_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
