"""The Hydra job: validate the config, run it, record failures in run.json."""

from __future__ import annotations

import errno
import logging
import shutil
import sys
import threading
import traceback
from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from slopestudy.config import ConfigError, as_plain_dict, schema_defaults
from slopestudy.run import lifecycle
from slopestudy.run.records import (
    RUN_JSON,
    FolderLock,
    RunRecord,
    Status,
    read_run,
    run_report,
    same_config,
    write_run,
)
from slopestudy.run.stopping import Interrupted
from slopestudy.run.trainer import Run
from slopestudy.run.validate import to_study_config

log = logging.getLogger("slopestudy")


def job_error(multirun: bool, msg: str, code: int, level: int = logging.ERROR) -> None:
    """The one exit path of a job that cannot go on: a single run prints one line and exits with
    `code`; in a multirun the job logs it and returns (None), so the other jobs still run."""
    if not multirun:
        print(f"error: {msg}", file=sys.stderr)
        raise SystemExit(code) from None
    log.log(level, "%s", msg)


def run_job(cfg: DictConfig) -> float | None:
    """Body of `python train.py`; returns the final test accuracy (Hydra's job return value).

    In a multirun a failing job records `status: failed` in its run.json and returns, so the
    other jobs still run and the end-of-sweep callback still summarizes; that callback then
    lists the failures and exits non-zero. A single run re-raises.
    """
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    multirun = HydraConfig.get().mode == RunMode.MULTIRUN
    try:
        study_cfg = to_study_config(cfg)  # values, device and memory: all config errors
    except ConfigError as e:
        if multirun:
            record_failure(out_dir, cfg, e)
        else:
            remove_unused_job_dir(out_dir)
        return job_error(multirun, str(e), 2)
    lock = FolderLock(out_dir)
    holder = lock.acquire()
    if holder is not None:
        # Another process (a sweep restarted while the first still runs, a requeued SLURM job)
        # is writing this folder: leave run.json, the checkpoint and the events to it.
        msg = f"{out_dir} is in use by process {holder} (another run of this job); not touching it"
        return job_error(multirun, msg if not multirun else f"skipped: {msg}", 3, logging.WARNING)
    try:
        return run_locked(cfg, study_cfg, out_dir, multirun)
    except Interrupted as e:
        # The run recorded `interrupted` and kept its checkpoint; a sweep stops here too, and
        # the exit code says which signal (130 SIGINT, 143 SIGTERM). A rerun resumes it.
        print(f"interrupted by {e}: {out_dir} keeps its last checkpoint; rerun to resume", file=sys.stderr)
        raise SystemExit(e.exit_code) from None
    finally:
        lock.release()


def run_locked(cfg: DictConfig, study_cfg, out_dir: Path, multirun: bool) -> float | None:
    previous = read_run(out_dir)
    if (
        previous
        and previous.is_result
        and same_config(previous.config, as_plain_dict(study_cfg), schema_defaults())
    ):
        # Re-running a sweep into the same folder: finished jobs are results, keep them.
        log.info("already %s with this config, skipping: %s", previous.status, out_dir)
        return (previous.final or {}).get("test_acc")
    default_hook, threading.excepthook = threading.excepthook, quiet_full_disk_in_threads
    try:
        record = lifecycle.execute(Run(study_cfg, out_dir))
    except Exception as e:
        try:
            record_failure(out_dir, cfg, e)
        except OSError as write_error:  # e.g. the disk is still full
            log.error("could not record the failure in %s: %s", out_dir / RUN_JSON, write_error)
        if no_space(e):
            # One line that says what to do; the last finished epoch's checkpoint is intact.
            msg = (f"{out_dir}: no space left on device; the last finished epoch's checkpoint is kept: "
                   "free space and rerun the same command to resume")  # fmt: skip
            return job_error(multirun, msg, 1)
        if not multirun:
            raise
        log.exception("job failed; recorded in %s", out_dir / RUN_JSON)
        return None
    finally:
        threading.excepthook = default_hook
    log.info("%s\n  folder: %s", run_report(record), out_dir)
    return record.final["test_acc"]


def quiet_full_disk_in_threads(args: threading.ExceptHookArgs) -> None:
    """TensorBoard's writer thread meets a full disk too and would print its traceback into
    the middle of the job's one error line; the main thread's next write raises the same
    error and reports it, so the thread's copy is logged at debug level only."""
    if no_space(args.exc_value):
        log.debug("%s: %s", args.thread.name if args.thread else "thread", args.exc_value)
        return
    threading.__excepthook__(args)


def no_space(error: BaseException | None) -> bool:
    """Whether a full disk caused `error` (ENOSPC anywhere in its chain of causes)."""
    while error is not None:
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            return True
        error = error.__cause__ or error.__context__
    return False


def remove_unused_job_dir(out_dir: Path) -> None:
    """Nothing ran: remove the folder Hydra made, so no summary mistakes it for a result.

    Only a folder that holds nothing but Hydra's own files is removed (never `hydra.run.dir=.`).
    """
    hydra_files = {".hydra", f"{HydraConfig.get().job.name}.log"}
    if out_dir.is_dir() and {p.name for p in out_dir.iterdir()} <= hydra_files:
        shutil.rmtree(out_dir, ignore_errors=True)


def record_failure(out_dir: Path, cfg: DictConfig, error: BaseException) -> None:
    record = read_run(out_dir) or RunRecord(config=OmegaConf.to_container(cfg, resolve=True))
    record.status = Status.failed
    record.error, record.traceback = f"{type(error).__name__}: {error}", traceback.format_exc()
    out_dir.mkdir(parents=True, exist_ok=True)
    write_run(out_dir, record)
