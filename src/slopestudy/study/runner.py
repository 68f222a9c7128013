"""The study runner: every published section (slopestudy.study.sections) as one command.

    python -m slopestudy.study status [SECTION...]        jobs done, compute spent, is the page current
    python -m slopestudy.study run SECTION... [--dry-run]  run what is missing, summarize, report
        [--only SUMMARY...]                                 just these summaries (e.g. kernel_tune_d200)
    python -m slopestudy.study report [SECTION...]        the page's tables from the committed summaries

`run` goes through a section's summaries in order. Each sweep runs as `python train.py -m
+experiment=... hydra/launcher=parallel` (a progress line per sweep, its output in
<sweep folder>.log); a sweep whose jobs are all done is skipped, a stopped one resumes (its
finished jobs are skipped by the jobs themselves). A summary is written to results/<out>/ once
its sweeps ran, and the section's tables after that. `report` reads only results/**/*.csv: it runs
in seconds on a fresh clone and writes the same bytes each time (slopestudy.study.publish).
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from slopestudy.study.publish import draw_section_figures, published_state, report
from slopestudy.study.sections import SECTIONS, Section, SummaryFolder
from slopestudy.study.sweeps import (
    REPO,
    Launch,
    Resolved,
    asked_for,
    clock,
    done_here_or_committed,
    done_in_folder,
    done_in_table,
    done_now,
    folder_jobs,
    not_in_summary,
    parts,
    resolve,
    run_part,
)
from slopestudy.summary.summarize import summarize
from slopestudy.summary.tables import committed

COMPUTE_NOTE = ("compute: 'train' sums the runs' epoch times from their run.json (start-up and evaluation "
                "not included); 'wall' is the sweep's wall time from results/wall_times.tsv (2 cores, "
                "parallel launcher)")  # fmt: skip


@dataclass
class Study:
    """The declared sections and how their sweeps run (launch.root holds multirun/ and results/)."""

    sections: dict[str, Section] = field(default_factory=lambda: dict(SECTIONS))
    launch: Launch = field(default_factory=Launch)

    @property
    def results(self) -> Path:
        return self.launch.root / "results"

    def pick(self, names: list[str]) -> list[Section]:
        unknown = [n for n in names if n not in self.sections and n != "all"]
        if unknown:
            raise SystemExit(f"unknown section(s) {', '.join(unknown)}; known: {', '.join(self.sections)}")
        # in declaration order, whatever the order asked: a section comes after those it needs
        return [s for s in self.sections.values() if not names or "all" in names or s.name in names]

    def summary_runs(self, summary: SummaryFolder) -> pd.DataFrame | None:
        return committed(self.results, summary.out)


# --- status ------------------------------------------------------------------------------------
@dataclass
class SweepState:
    r: Resolved
    done: int
    source: str  # where `done` was counted: the sweep folder, the committed runs.csv, or nowhere
    seconds: float | None
    kind: str  # "train" (run records) or "wall" (wall_times.tsv)
    in_summary: int | None = None  # with the folder here: how many of its done jobs the summary holds

    def line(self) -> str:
        compute = f"{clock(self.seconds)} {self.kind}" if self.seconds is not None else "unknown"
        behind = ("" if self.in_summary is None or self.in_summary >= self.done
                  else f"  (summary holds {self.in_summary}: `run` rewrites it)")  # fmt: skip
        return (f"    {self.done:>4}/{len(self.r.jobs):<4} {self.source:<9} {compute:<17} "
                f"{self.r.folder}  [{self.r.sweep.label}]{behind}")  # fmt: skip


def wall_times(results: Path) -> dict[str, float]:
    """Sweep folder -> wall seconds, from results/wall_times.tsv (the earlier driver's record)."""
    path = results / "wall_times.tsv"
    if not path.exists():
        return {}
    tsv = pd.read_csv(path, sep="\t", header=None, names=["preset", "out", "overrides", "seconds"])
    return (
        tsv.groupby(tsv["preset"] + "/" + tsv["out"])["seconds"]
        .sum()
        .rename(lambda k: f"multirun/{k}")
        .to_dict()
    )


def sweep_state(study: Study, r: Resolved, runs: pd.DataFrame | None, walls: dict) -> SweepState:
    folder = study.launch.root / r.folder
    in_table = done_in_table(r.jobs, runs) if runs is not None else (None, None)
    if folder.is_dir():
        done, seconds = done_in_folder(r.jobs, folder_jobs(folder))
        state = SweepState(r, done, "folder", seconds, "train", in_summary=in_table[0] or 0)
        if runs is not None and (both := done_here_or_committed(folder, r.jobs, runs)) > done:
            state.done, state.source = both, "+runs.csv"  # the rest's folders are gone, `run` keeps them
            if in_table[0] == both:  # the summary holds every done job: its seconds are the whole
                state.seconds = in_table[1]
    elif runs is not None:
        state = SweepState(r, in_table[0], "runs.csv", in_table[1], "train")
    else:
        state = SweepState(r, 0, "not run", None, "train")
    if state.seconds is None and r.folder in walls and state.done:
        state.seconds, state.kind = walls[r.folder], "wall"
    return state


def section_status(study: Study, section: Section, resolved: dict, walls: dict) -> list[str]:
    states = [sweep_state(study, resolved[sweep], study.summary_runs(summary), walls)
              for summary in section.summaries for sweep in summary.sweeps]  # fmt: skip
    done, total = sum(s.done for s in states), sum(len(s.r.jobs) for s in states)
    jobs = f"{done}/{total}" if states else "–"
    page = published_state(study.results, section)
    return [f"{section.name:<20} {jobs:>8}  {compute_spent(states):<28} {page}", *(s.line() for s in states)]


def compute_spent(states: list[SweepState]) -> str:
    """The sweeps' seconds added up, labelled by where they come from; 'unknown' where no sweep
    recorded them."""
    if not states:
        return "–"
    known = [s for s in states if s.seconds is not None]
    if not known:
        return "unknown"
    text = f"{clock(sum(s.seconds for s in known))} {'+'.join(dict.fromkeys(s.kind for s in known))}"
    return text + (f" + {len(states) - len(known)} sweep(s) unknown" if len(known) < len(states) else "")


def status(study: Study, sections: list[Section]) -> str:
    resolved = resolve([sweep for section in sections for sweep in section.sweeps])
    walls = wall_times(study.results)
    lines = [f"{'section':<20} {'jobs':>8}  {'compute':<28} page (results/README.md blocks, pages)"]
    for section in (s for s in sections if not s.retired):
        lines += section_status(study, section, resolved, walls)
    if retired := [s for s in sections if s.retired]:
        lines += ["", "retired (results/README.md's appendix; `run NAME` still reproduces one):"]
        for section in retired:
            lines += section_status(study, section, resolved, walls)
    return "\n".join([*lines, "", COMPUTE_NOTE])


# --- run ---------------------------------------------------------------------------------------
def run(study: Study, sections: list[Section], dry_run: bool = False, only: list[str] | None = None) -> int:
    """Run what is missing in `sections`, in order (with `only`, just those summaries: the others'
    sweep folders may be gone from this machine while their summaries are committed); 1 if a sweep
    ended with failed jobs."""
    check_needs(study, sections)
    resolved = resolve([sweep for section in sections for sweep in section.sweeps])
    failures = 0
    rewritten: set[str] = set()  # tuned.csv files written in this run: the sweeps that read them rerun
    for section in sections:
        for summary in section.summaries:
            if only and summary.out not in only:
                continue
            ran, failed = run_sweeps(study, section, summary, resolved, dry_run, rewritten)
            failures += failed
            if summary_step(study, section, summary, resolved, dry_run, ran) and summary.tune:
                rewritten.add(f"results/{summary.out}/tuned.csv")
        if not dry_run and section.figures:
            for path in draw_section_figures(study.results, section):
                print(f"[{section.name}] figure {path.relative_to(study.results.parent)}")
        if not dry_run and (section.blocks or section.pages):
            changed = report(study.results, [section], every=list(study.sections.values()))
            print(f"[{section.name}] report: " + (", ".join(map(str, changed)) or "the page is current"))
    return 1 if failures else 0


def summary_step(study: Study, section: Section, summary: SummaryFolder, resolved: dict, dry_run: bool,
                 ran: bool) -> bool:  # fmt: skip
    """Write the summary if its sweeps ran or it does not exist yet (on a dry run, say so);
    whether it was written."""
    folders = list(dict.fromkeys(resolved[s].folder for s in summary.sweeps))
    if dry_run:
        tune = f" --tune {summary.tune}" if summary.tune else ""
        print(f"[{section.name}] then python -m slopestudy.summary {' '.join(folders)} "
              f"--out results/{summary.out}{tune}")  # fmt: skip
        return False
    runs = study.summary_runs(summary)
    behind = runs is not None and any(
        not_in_summary(study.launch.root / resolved[s].folder, resolved[s].jobs, runs) for s in summary.sweeps
    )  # a sweep run by hand into the declared folder
    if ran or runs is None or behind:
        return write_summary(study, section, summary, folders, [resolved[s] for s in summary.sweeps])
    return False


def check_needs(study: Study, sections: list[Section]) -> None:
    for section in sections:
        for need in section.needs:
            missing = [s.out for s in study.sections[need].summaries if study.summary_runs(s) is None]
            if missing and study.sections[need] not in sections:
                raise SystemExit(f"{section.name} reads the summaries of {need} ({', '.join(missing)} "
                                 f"missing): run {need} first")  # fmt: skip


def run_sweeps(study: Study, section: Section, summary: SummaryFolder, resolved: dict, dry_run: bool,
               rewritten: set[str] = frozenset()):  # fmt: skip
    """Each sweep (part) of one summary with jobs left: (whether any ran, how many ended failed).
    A sweep that reads a tuned.csv `rewritten` in this run runs even when all its jobs are done:
    each job reruns only if its config (its tuned value) changed."""
    ran, failed = False, 0
    runs = study.summary_runs(summary)
    for sweep in summary.sweeps:
        r = resolved[sweep]
        folder = study.launch.root / r.folder
        relaunch = r.tuned in rewritten
        for task, jobs in parts(r):
            done = done_here_or_committed(folder, jobs, None if relaunch else runs)
            head = f"[{section.name}] {' '.join(task)}: {done}/{len(jobs)} done"
            if done == len(jobs) and not relaunch:
                print(f"{head}, skipped ({r.folder})", flush=True)
            elif dry_run:
                print(f"{head}; would run: python train.py {' '.join(study.launch.command(task)[2:])}")
            else:
                here = done_now(folder, jobs)
                what = (
                    f"running {len(jobs) - done}"
                    if done < len(jobs)
                    else f"rechecking them against {r.tuned}"
                )
                if here < done < len(jobs):  # Hydra launches the whole sweep; a job skips only its own folder
                    what += f", and again the {done - here} committed ones whose folders are not here"
                print(f"{head}, {what} into {r.folder}", flush=True)
                failed += run_part(study.launch, task, folder, jobs) != 0
                ran = True
    return ran, failed


def write_summary(study: Study, section: Section, summary: SummaryFolder, folders: list[str],
                  declared: list[Resolved] = ()) -> bool:  # fmt: skip
    """results/<out>/ and results/<out>.txt from the sweep folders there are; whether written."""
    here = [study.launch.root / f for f in folders if (study.launch.root / f).is_dir()]
    out = f"results/{summary.out}"
    if not here:
        print(f"[{section.name}] {out}: no sweep folder yet, no summary")
        return False
    # the committed summary's runs whose folders are not on this machine stay in it, if still declared
    s = summarize(here, study.results / summary.out, tune_key=summary.tune, keep=True,
                  wanted=lambda runs: asked_for(runs, list(declared)))  # fmt: skip
    (study.results / f"{summary.out}.txt").write_text(f"{s.main_table()}\n\nTables and figures: {out}\n")
    print(f"[{section.name}] summary {out}: {len(s.runs)} runs", flush=True)
    return True


# --- the command line --------------------------------------------------------------------------
def parser(sections: dict[str, Section]) -> argparse.ArgumentParser:
    live = sorted((item for item in sections.items() if not item[1].retired), key=lambda item: item[1].number)
    listed = "\n".join(f"  {name:<20} {s.where}" for name, s in live)
    if retired := [(name, s) for name, s in sections.items() if s.retired]:
        listed += "\nretired (still run when named):\n" + "\n".join(
            f"  {name:<20} {s.where}: {s.retired}" for name, s in retired
        )
    p = argparse.ArgumentParser(prog="python -m slopestudy.study", description=__doc__.split("\n\n")[0],
                                epilog=f"sections (src/slopestudy/study/sections.py):\n{listed}",
                                formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    p.add_argument(
        "--root", type=Path, default=REPO, help="folder of multirun/ and results/ (default: the repo)"
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in (("status", "jobs done, compute spent, whether the page is current"),
                       ("run", "run what is missing, then summarize and report"),
                       ("report", "the page's tables from the committed summaries")):  # fmt: skip
        cmd = sub.add_parser(name, help=text, description=text)
        cmd.add_argument(
            "sections", nargs="*", metavar="SECTION", help="default: all (run: name them, or all)"
        )
    run_cmd, report_cmd = sub.choices["run"], sub.choices["report"]
    run_cmd.add_argument("--dry-run", action="store_true", help="print what would run, run nothing")
    run_cmd.add_argument(
        "--launcher", default="parallel", help="hydra/launcher for the sweeps (default parallel)"
    )
    run_cmd.add_argument(
        "--only",
        nargs="+",
        metavar="SUMMARY",
        default=None,
        help="run just these summaries of the sections (e.g. kernel_tune_d200)",
    )
    run_cmd.add_argument("--echo", action="store_true", help="sweep output to this terminal, not to a .log")
    run_cmd.add_argument("--progress-every", type=float, default=60.0, metavar="S", help="default 60 s")
    figures = "also redraw the figures the CSVs determine (about 10 s per summary)"
    report_cmd.add_argument("--figures", action="store_true", help=figures)
    tables = "first write each summary's own tables again from its runs.csv (after a rule changed)"
    report_cmd.add_argument("--tables", action="store_true", help=tables)
    return p


def main(argv: list[str] | None = None, sections: dict[str, Section] | None = None) -> int:
    """The command line; `sections` replaces the declared ones (tests add a tiny section)."""
    sections = dict(sections or SECTIONS)
    p = parser(sections)
    args = p.parse_args(argv)
    launch = Launch(root=args.root.resolve())
    study = Study(sections=sections, launch=launch)
    chosen = study.pick(args.sections)
    if args.command == "status":
        print(status(study, chosen))
        return 0
    if args.command == "report":
        every = list(study.sections.values())
        changed = report(study.results, chosen, figures=args.figures, tables=args.tables, every=every)
        print(
            "\n".join(f"wrote {p}" for p in changed) or "nothing changed: the page is what its summaries say"
        )
        return 0
    if not args.sections:
        p.error("run: name the sections to run (or all): " + ", ".join(study.sections))
    known = [s.out for section in chosen for s in section.summaries]
    if unknown := [o for o in args.only or () if o not in known]:
        p.error(
            f"--only: no summary {', '.join(unknown)} in {', '.join(args.sections)}; "
            f"known: {', '.join(known)}"
        )
    launch.launcher, launch.echo, launch.progress_every = args.launcher, args.echo, args.progress_every
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so the running sweep is stopped too
    return run(study, chosen, dry_run=args.dry_run, only=args.only)


if __name__ == "__main__":
    sys.exit(main())
