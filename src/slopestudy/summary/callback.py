"""Hydra callbacks: what happens when a sweep ends."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from slopestudy.config import sweep_job_overrides
from slopestudy.run.records import Status, lock_holder, read_run
from slopestudy.run.validate import sweep_errors

log = logging.getLogger("slopestudy")


class SweepEnd(Callback):
    """At the end of a multirun: summarize it, say where it is and how to review it, and exit
    non-zero if any job failed (jobs record failures in run.json instead of raising, so that
    Hydra still reaches this point)."""

    def on_multirun_start(self, config: DictConfig, **kwargs) -> None:
        """Check the values of every job before any runs, so a typo fails in seconds."""
        jobs = sweep_job_overrides(config.hydra.overrides.task, config.hydra.sweeper.get("params"))
        errors = sweep_errors(config.hydra.job.config_name, jobs)
        if errors:
            print("\n".join(f"error: {e}" for e in errors), file=sys.stderr)
            raise SystemExit(2)  # SystemExit passes through Hydra's callback error handling

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        # Not a cycle: Hydra builds this callback in every run, single runs too, and the summary
        # pulls in pandas, SciPy and matplotlib, which only the end of a sweep needs.
        from slopestudy.summary.collect import find_jobs
        from slopestudy.summary.summarize import summarize

        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        jobs = find_jobs(sweep_dir)
        failed = [
            str(j.relative_to(sweep_dir)) for j in jobs if (r := read_run(j)) and r.status == Status.failed
        ]
        busy = {str(j.relative_to(sweep_dir)): lock_holder(j) for j in jobs}
        busy = {job: pid for job, pid in busy.items() if pid is not None}
        try:
            s = summarize([sweep_dir])
            print("\n" + s.main_table())
            print(f"\nSummary (CSV, Markdown, PNG): {s.out_dir}")
        except Exception as e:  # noqa: BLE001 - a summary problem must not hide the sweep
            log.exception("summary failed: %s (retry: python -m slopestudy.summary %s)", e, sweep_dir)
        if busy:
            print(f"\n{len(busy)} job(s) skipped, in use by another process:\n  "
                  + "\n  ".join(f"{job} (pid {pid})" for job, pid in busy.items()))  # fmt: skip
        print(f"\nSweep folder: {sweep_dir}")
        print(f"Review it:    tensorboard --logdir {sweep_dir}")
        if failed:
            print(f"\n{len(failed)} job(s) failed (see their run.json):\n  " + "\n  ".join(failed))
            raise SystemExit(1)
