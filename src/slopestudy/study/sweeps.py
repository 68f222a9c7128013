"""One declared sweep: the preset and overrides it runs, the fixed folder it writes, the jobs it
asks for, how many of them are done (from the folder's run.json files, or from a committed
runs.csv when the folder is not on this machine), and running it as a subprocess.

A sweep is `python train.py -m +experiment=PRESET OVERRIDES...`. Its folder is the preset's
`hydra.sweep.dir`, resolved by composing the real config, and must be fixed (no `${now:...}`):
running the same sweep again then resumes it, and the jobs that finished are skipped
(app.run_locked). A job folder is matched to what was asked by its own `.hydra/overrides.yaml`,
parsed by the same parser Hydra's sweeper uses, on the overrides that name the folder: a folder
shared by two sweeps (a grid widened at its edge) counts each sweep's jobs apart, and a job
counts as done when its own folder holds a finished run. A committed runs.csv is matched on values.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from slopestudy.config import MACHINERY, register, sweep_jobs
from slopestudy.paths import CONF, REPO
from slopestudy.run.records import DONE, Status, read_run, train_seconds
from slopestudy.summary.collect import comparable, done, find_jobs


@dataclass(frozen=True)
class Sweep:
    """`python train.py -m +experiment=<preset> <overrides>`, run as one Hydra multirun (or one per
    value of `split`, each part a multirun into the same folder: the job folders do not depend on
    how the sweep was cut, so a part that stops is resumed like a whole sweep)."""

    preset: str
    """conf/experiment/<preset>.yaml; its hydra.sweep.dir must be fixed."""
    overrides: tuple[str, ...] = ()
    """Command-line overrides: fixed values (init=kaiming) or swept ones (lr=0.01,0.02)."""
    split: str | None = None
    """Run one part per value of this swept key (e.g. depth), so no part runs for hours."""

    def task(self) -> list[str]:
        return [f"+experiment={self.preset}", *self.overrides]

    @property
    def label(self) -> str:
        return " ".join([self.preset, *self.overrides])


@dataclass
class Resolved:
    """A sweep against the composed config: where it writes and which jobs it asks for."""

    sweep: Sweep
    folder: str  # as configured, relative to the study's root (multirun/...)
    jobs: list[dict] = field(default_factory=list)  # {key: value} per job, keys as Hydra parses them
    tuned: str | None = None  # the tuned.csv its jobs read (config key `tuned`), if any
    written: tuple[str, ...] = ()  # its swept keys as written (`+fix`), in overrides and params


def resolve(sweeps: list[Sweep]) -> dict[Sweep, Resolved]:
    """Compose each sweep's config once: its fixed folder and its expected jobs."""
    register()
    parser = OverridesParser.create()
    out = {}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for sweep in dict.fromkeys(sweeps):
            fixed = [o for o in sweep.task() if not parser.parse_override(o).is_sweep_override()]
            cfg = compose("config", overrides=fixed, return_hydra_config=True)
            raw = OmegaConf.to_container(cfg.hydra.sweep, resolve=False)["dir"]
            if "${now:" in raw:
                raise ValueError(f"{sweep.preset}: hydra.sweep.dir {raw!r} has a timestamp; a study sweep "
                                 "needs a fixed folder so that a rerun resumes it")  # fmt: skip
            params = OmegaConf.to_container(cfg.hydra.sweeper.params, resolve=True) or {}
            jobs = sweep_jobs(sweep.task(), params)
            written = (*(o.split("=", 1)[0] for o in sweep.task()), *params)
            out[sweep] = Resolved(sweep, str(cfg.hydra.sweep.dir), jobs, cfg.get("tuned") or None, written)
    return out


def parts(r: Resolved) -> list[tuple[list[str], list[dict]]]:
    """(task overrides, expected jobs) of each part: the whole sweep, or one per `split` value."""
    key = r.sweep.split
    if key is None:
        return [(r.sweep.task(), r.jobs)]
    values = list(dict.fromkeys(job[key] for job in r.jobs))
    task = [o for o in r.sweep.task() if o.split("=", 1)[0].lstrip("+~") != key]
    # spelled as the sweep spells it (Hydra keys a sweep axis by `+fix`, not `fix`)
    spelled = next((k for k in r.written if k.lstrip("+~") == key), key)
    return [([*task, f"{spelled}={v}"], [j for j in r.jobs if j[key] == v]) for v in values]


# --- what is done ------------------------------------------------------------------------------
@dataclass
class Job:
    """A job folder as found: its overrides (parsed), its status and its training seconds."""

    overrides: dict
    status: str
    seconds: float | None


def parse_overrides(lines: list[str]) -> dict:
    parsed = OverridesParser.create().parse_overrides(lines)
    return {o.get_key_element().lstrip("+~"): o.value() for o in parsed}


def read_job(job: Path) -> Job:
    """One job folder: `seconds` is the sum of its epochs' training time from run.json (start-up,
    data loading and evaluation not included)."""
    overrides = yaml.safe_load((job / ".hydra" / "overrides.yaml").read_text()) or []
    run = read_run(job)
    return Job(parse_overrides(overrides), run.status if run else Status.missing, train_seconds(run))


def folder_jobs(folder: Path, cache: dict | None = None) -> list[Job]:
    """Every job below `folder`; with a `cache` ({path: (mtime, Job)}), a run.json that has not
    changed since the last call is not read again (the progress lines poll a running sweep)."""
    jobs = []
    for path in find_jobs(folder):
        record = path / "run.json"
        mtime = record.stat().st_mtime if record.exists() else None
        if cache is not None and path in cache and cache[path][0] == mtime:
            jobs.append(cache[path][1])
            continue
        job = read_job(path)
        if cache is not None:
            cache[path] = (mtime, job)
        jobs.append(job)
    return jobs


def _key(values: dict, keys: list[str]) -> tuple:
    return tuple(comparable(values[k]) for k in keys)


Count = tuple[int, float | None]  # jobs done, and their seconds (None: not recorded)


def _matched(expected: list[dict], found: dict[tuple, float | None], keys: list[str]) -> Count:
    hits = [found[k] for k in (_key(e, keys) for e in expected) if k in found]
    timed = [s for s in hits if s is not None and not (isinstance(s, float) and math.isnan(s))]
    return len(hits), (sum(timed) if timed else None)


def job_identity(overrides: dict) -> frozenset:
    """What names a job folder: its overrides but the machinery keys (config.MACHINERY, which
    Hydra leaves out of the folder's name; seed is its subfolder). Two sweeps that ask for the same
    identity write, and skip, the same folder, whichever preset they came from."""
    return frozenset((k, comparable(v)) for k, v in overrides.items() if k not in MACHINERY or k == "seed")


def done_in_folder(expected: list[dict], jobs: list[Job]) -> Count:
    """How many expected jobs have a finished run in their own folder, and their training seconds."""
    found = {job_identity(j.overrides): j.seconds for j in jobs if j.status in DONE}
    hits = [found[k] for k in map(job_identity, expected) if k in found]
    timed = [s for s in hits if s is not None]
    return len(hits), (sum(timed) if timed else None)


def asked_for(runs: pd.DataFrame, resolved: list[Resolved]) -> pd.Series:
    """Which rows of a runs.csv are jobs of these sweeps (matched as done_in_table matches)."""
    mask = pd.Series(False, index=runs.index)
    for r in resolved:
        keys = [k for k in (r.jobs[0] if r.jobs else {}) if k in runs.columns]
        jobs = {_key(job, keys) for job in r.jobs}
        mask |= pd.Series([_key(row, keys) in jobs for row in runs.to_dict("records")], index=runs.index)
    return mask


def done_in_table(expected: list[dict], runs: pd.DataFrame) -> Count:
    """How many expected jobs a committed runs.csv holds as done (and their seconds, if it has a
    `seconds` column), matched on the keys it has as columns (a config-group choice such as
    `+fix` is not one, nor `experiment`)."""
    if not expected:
        return 0, None
    keys = [k for k in expected[0] if k in runs.columns]
    rows = done(runs).to_dict("records")
    found = {_key(r, keys): r.get("seconds") for r in rows}
    return _matched(expected, found, keys)


# --- running one part --------------------------------------------------------------------------
@dataclass
class Launch:
    """How the study's sweeps run."""

    root: Path = REPO  # the cwd of every sweep: its multirun/ and results/ (tuned.csv) are there
    launcher: str = "parallel"  # hydra/launcher=<it>
    echo: bool = False  # sweep output to this terminal instead of <sweep folder>.log
    progress_every: float = 60.0  # seconds between checks of a running sweep

    def command(self, task: list[str]) -> list[str]:
        return [sys.executable, str(REPO / "train.py"), "-m", *task, f"hydra/launcher={self.launcher}"]

    def env(self) -> dict | None:
        """Elsewhere than the repository, runs still read its data/ (data.root is relative to the
        cwd), unless SLOPESTUDY_DATA says otherwise."""
        return None if self.root == REPO else {"SLOPESTUDY_DATA": str(REPO / "data"), **os.environ}


def done_now(folder: Path, jobs: list[dict], cache: dict | None = None) -> int:
    return done_in_folder(jobs, folder_jobs(folder, cache))[0] if folder.is_dir() else 0


def not_in_summary(folder: Path, jobs: list[dict], runs: pd.DataFrame | None) -> int:
    """Jobs finished in their folder here that the committed summary's `runs` lacks."""
    here = folder_jobs(folder) if folder.is_dir() else []
    finished = {job_identity(j.overrides) for j in here if j.status in DONE}
    mine = [job for job in jobs if job_identity(job) in finished]
    return len(mine) - (done_in_table(mine, runs)[0] if runs is not None else 0)


def done_here_or_committed(folder: Path, jobs: list[dict], runs: pd.DataFrame | None) -> int:
    """Jobs finished in their folder here or, where it is not (a fresh machine: the sweep folders
    of earlier sessions are gone), in the committed summary's `runs`, which `run` then keeps."""
    here = folder_jobs(folder) if folder.is_dir() else []
    finished = {job_identity(j.overrides) for j in here if j.status in DONE}
    left = [job for job in jobs if job_identity(job) not in finished]
    return len(jobs) - len(left) + (done_in_table(left, runs)[0] if runs is not None else 0)


def run_part(launch: Launch, task: list[str], folder: Path, jobs: list[dict]) -> int:
    """One Hydra multirun, a progress line whenever more of its jobs are done; its exit code. If
    this process is stopped meanwhile, the sweep is stopped too (its jobs keep their checkpoints)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    log = None if launch.echo else open(folder.with_name(folder.name + ".log"), "a")  # noqa: SIM115
    t0, cache, last = time.monotonic(), {}, -1
    proc = subprocess.Popen(launch.command(task), cwd=launch.root, stdout=log, stderr=subprocess.STDOUT,
                            env=launch.env())  # fmt: skip
    try:
        while True:
            try:
                rc = proc.wait(timeout=launch.progress_every)
                break
            except subprocess.TimeoutExpired:
                if (done := done_now(folder, jobs, cache)) != last:
                    print(f"    {done}/{len(jobs)} done ({clock(time.monotonic() - t0)})", flush=True)
                    last = done
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait()
        if log:
            log.close()
    where = "" if log is None else f"; output in {log.name}"
    took = clock(time.monotonic() - t0)
    print(f"    {done_now(folder, jobs)}/{len(jobs)} done in {took}, exit code {rc}{where}", flush=True)
    return rc


def clock(seconds: float) -> str:
    """'1 h 02 min', '4 min 05 s', '12 s'."""
    s = int(round(seconds))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 60} min {s % 60:02d} s" if s >= 60 else f"{s} s"
