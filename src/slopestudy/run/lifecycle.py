"""One run from start to end, around trainer.Run's step math: resume from the last checkpoint,
the epochs with their progress line, a checkpoint and run.json after every epoch, a divergence
or a signal recorded as such, and the end written in an order a kill cannot corrupt."""

from __future__ import annotations

import logging
import math
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from tqdm import tqdm

from slopestudy.run import checkpoint
from slopestudy.run.records import (
    RunRecord,
    Status,
    code_line,
    epoch_line,
    finish_record,
    gradflow,
    write_run,
)
from slopestudy.run.stopping import Interrupted, pause_if_asked, stop_on_signals

if TYPE_CHECKING:
    from slopestudy.run.trainer import Run

log = logging.getLogger("slopestudy.run.trainer")  # one name for a run's lines (stopping, checkpoint too)


def execute(run: Run) -> dict:
    """Train `run` to its last epoch (or resume it there) and return its run.json record."""
    cfg = run.cfg
    resumed = try_resume(run)
    log.info(
        "depth=%d width=%d slope=%g act=%s init=%s optimizer=%s lr=%g | %d params | %d train / %d "
        "test examples | %d steps/epoch | device %s, %d threads%s | code %s",
        cfg.depth, cfg.width, cfg.slope, cfg.act.value, cfg.init.value, cfg.optimizer.value, cfg.lr,
        run.record.n_params, len(run.data.x_train), len(run.data.x_test),
        run.steps_per_epoch, run.device, run.threads,
        f" | resumed after epoch {run.record.epochs_done}" if resumed else "",
        code_line(run.record.env),
    )  # fmt: skip
    # purge_step hides events a killed run wrote after its last checkpoint.
    run.open_logger(purge_step=run.step if resumed else None)
    save(run)
    with stop_on_signals():
        try:
            train(run, resumed)
        except BaseException as e:
            # SystemExit: submitit's timeout handler requeued the job and exits; the run resumes.
            if isinstance(e, Interrupted | KeyboardInterrupt | SystemExit):
                log.warning("stopped by %s after epoch %d: status interrupted, checkpoint kept",
                            e if isinstance(e, Interrupted) else type(e).__name__,
                            run.record.epochs_done)  # fmt: skip
                run.record.status = Status.interrupted
            finish(run, first_error=e)
            raise
    finish(run)
    return run.record


def train(run: Run, resumed: bool) -> None:
    """Step 0 (unless resumed), then the epochs: each ends with its measures, a progress line, a
    checkpoint and run.json, and a pause if one was asked for."""
    cfg = run.cfg
    if not resumed:
        # Step 0: the first batch's gradient before any update, where theory is exact.
        xb, yb = next(run.batches())
        loss0, norms0 = run.forward_backward(xb, yb, measure=True)
        loss0_value = run.measures.log_norms(0, loss0, norms0)
        run.measures.end_of_epoch(0, 0, loss0_value, 0.0)
        if not math.isfinite(loss0_value):
            return diverged(run, 0)
        run.batch_gen.manual_seed(cfg.seed)  # training sees the same batch order as step 0

    bar = tqdm(total=cfg.epochs * run.steps_per_epoch, initial=run.step, leave=False, unit="step",
               disable=not sys.stderr.isatty(), dynamic_ncols=True)  # fmt: skip
    with bar:
        for epoch in range(run.record.epochs_done + 1, cfg.epochs + 1):
            t0 = time.perf_counter()
            train_loss = run.train_epoch(on_step=bar.update)
            if not math.isfinite(train_loss):
                return diverged(run, run.first_bad_step)
            e = run.measures.end_of_epoch(epoch, run.step, train_loss, time.perf_counter() - t0)
            msg = epoch_line(e, cfg.epochs, len(run.data.x_train))
            log.info(msg) if bar.disable else bar.write(msg)
            save_checkpoint(run)
            save(run)
            pause_if_asked(epoch)
    run.record.status = Status.completed


def diverged(run: Run, at_step: int) -> None:
    log.warning("loss became non-finite at step %d: stopping this run (status diverged)", at_step)
    run.record.status, run.record.diverged_at_step = Status.diverged, at_step


# --- checkpoints: written at every epoch end, so a killed run resumes where it was ---------
def checkpoint_path(run: Run) -> Path:
    return run.out_dir / checkpoint.CHECKPOINT


def save_checkpoint(run: Run) -> None:
    checkpoint.save(checkpoint_path(run), run.model, run.optimizer, run.batch_gen, run.step, run.record)


def try_resume(run: Run) -> bool:
    state = checkpoint.load(checkpoint_path(run), run.device, run.record.config)
    if state is None:
        return False
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.batch_gen.set_state(state["batch_gen"])
    run.step, record = state["step"], RunRecord.from_json(state["record"])
    record.status, record.env, record.threads = Status.running, run.record.env, run.threads
    record.resumed_at_step = [*(record.resumed_at_step or []), run.step]
    run.record = run.measures.record = record
    return True


# --- the end -------------------------------------------------------------------------------
def finish(run: Run, first_error: BaseException | None = None) -> None:
    """Write the end of the run: hparams and flushed events, then run.json. After an error
    (`first_error`), a failure to write (a full disk) is logged and the first error wins."""
    try:
        _write_end(run)
    except Exception as e:
        if first_error is None:
            raise
        log.error("could not write the end of the run in %s: %s", run.out_dir, e)


def _write_end(run: Run) -> None:
    finish_record(run.record)
    if run.logger is not None:
        if run.record.status != Status.running:
            # Every run gets the same metric keys; NaN (not None) where a value is missing.
            metrics = gradflow(run.record) | {
                f"final/{k}": math.nan if v is None else v for k, v in run.record.final.items()
            }
            run.logger.hparams({**run.hparams, "status": run.record.status}, metrics, run.record.step)
        run.logger.close()
    # run.json first, then the checkpoint: a kill in between leaves a finished run.json and a
    # spare checkpoint, never a "running" run.json without its checkpoint.
    save(run)
    if run.record.is_result:
        checkpoint_path(run).unlink(missing_ok=True)  # done: nothing to resume


def save(run: Run) -> None:
    write_run(run.out_dir, run.record)
