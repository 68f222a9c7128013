"""The trainer: one run's loop (batches, forward/backward, epochs), its checkpoints (through
checkpoint) and its record (through records); what it measures and logs is measures.Measures."""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from slopestudy.config import Optimizer, StudyConfig, as_plain_dict
from slopestudy.run import checkpoint, tblog
from slopestudy.run import data as data_mod
from slopestudy.run.measures import Measures
from slopestudy.run.model import build_mlp
from slopestudy.run.probes import GradientProbe
from slopestudy.run.records import (
    DONE,
    RUN_JSON,
    Status,
    code_line,
    environment,
    epoch_line,
    finish_record,
    gradflow,
    write_json_atomic,  # fmt: skip
)
from slopestudy.run.resources import pick_device, set_threads
from slopestudy.run.stopping import Interrupted, pause_if_asked, stop_on_signals
from slopestudy.run.tblog import RunLogger

log = logging.getLogger(__name__)


def make_optimizer(cfg: StudyConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer is Optimizer.adam:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


class Run:
    """State of one training run; `execute()` runs it and returns the run.json record."""

    def __init__(self, cfg: StudyConfig, out_dir: str | Path, data: data_mod.Tensors | None = None) -> None:
        self.cfg = cfg
        self.out_dir = Path(out_dir)
        self.device = pick_device(cfg.device)
        self.threads = set_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.data = data if data is not None else data_mod.load(cfg.data, self.device)
        self.model = build_mlp(cfg)
        self.model.to(self.device)
        self.probe = GradientProbe(self.model)
        self.optimizer = make_optimizer(cfg, self.model)
        self.batch_gen = torch.Generator().manual_seed(cfg.seed)
        n_train, n_test = len(self.data.x_train), len(self.data.x_test)
        self.probe_x = self.data.x_train[: min(cfg.probe_size, n_train)]
        # the kernel probe's examples: all their pairs, compared layer by layer
        kernel_x = self.probe_x[: cfg.kernel_size]
        self.kernel_x = kernel_x if cfg.kernel_size and len(kernel_x) >= 2 else None
        self.steps_per_epoch = math.ceil(n_train / cfg.batch_size)
        sizes = {"train": n_train, "val": len(self.data.x_val), "test": n_test}
        self.hparams = tblog.job_hparams(as_plain_dict(cfg), sizes)
        self.record: dict = {
            "status": Status.running,
            "config": as_plain_dict(cfg),
            "device": str(self.device),
            "threads": self.threads,
            "n_params": sum(p.numel() for p in self.model.parameters()),
            "steps_per_epoch": self.steps_per_epoch,
            "data_sizes": sizes,
            "hparams": self.hparams,
            "step": 0,
            "epochs_done": 0,
            "history": [],
            "env": environment(),
        }
        self.logger: RunLogger | None = None  # opened by execute(), after a possible resume
        self.measures = Measures(cfg, self.model, self.data, self.probe_x, self.kernel_x, self.record)
        self.step = 0  # optimizer updates done so far

    def open_logger(self, purge_step: int | None = None) -> RunLogger:
        """Start writing this run's TensorBoard events (execute() does; so do the benchmark and
        tests that call train_epoch() on their own; they close it)."""
        self.logger = self.measures.logger = RunLogger(self.out_dir, self.hparams, purge_step=purge_step)
        return self.logger

    # --- the pieces of a step -------------------------------------------------------------
    def batches(self):
        perm = torch.randperm(len(self.data.x_train), generator=self.batch_gen).to(self.device)
        for i in range(0, len(perm), self.cfg.batch_size):
            idx = perm[i : i + self.cfg.batch_size]
            yield self.data.x_train[idx], self.data.y_train[idx]

    def forward_backward(self, xb, yb, measure: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
        self.probe.armed = measure
        loss = F.cross_entropy(self.model(xb), yb)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norms = self.probe.read() if measure else None
        self.probe.armed = False
        return loss.detach(), norms

    # --- the run --------------------------------------------------------------------------
    def execute(self) -> dict:
        cfg = self.cfg
        resumed = self.try_resume()
        log.info(
            "depth=%d width=%d slope=%g act=%s init=%s optimizer=%s lr=%g | %d params | %d train / %d "
            "test examples | %d steps/epoch | device %s, %d threads%s | code %s",
            cfg.depth, cfg.width, cfg.slope, cfg.act.value, cfg.init.value, cfg.optimizer.value, cfg.lr,
            self.record["n_params"], len(self.data.x_train), len(self.data.x_test),
            self.steps_per_epoch, self.device, self.threads,
            f" | resumed after epoch {self.record['epochs_done']}" if resumed else "",
            code_line(self.record["env"]),
        )  # fmt: skip
        # purge_step hides events a killed run wrote after its last checkpoint.
        self.open_logger(purge_step=self.step if resumed else None)
        self.save()
        with stop_on_signals():
            try:
                self._train(resumed)
            except BaseException as e:
                # SystemExit: submitit's timeout handler requeued the job and exits; the run resumes.
                if isinstance(e, Interrupted | KeyboardInterrupt | SystemExit):
                    log.warning("stopped by %s after epoch %d: status interrupted, checkpoint kept",
                                e if isinstance(e, Interrupted) else type(e).__name__,
                                self.record["epochs_done"])  # fmt: skip
                    self.record["status"] = Status.interrupted
                self.finish(first_error=e)
                raise
        self.finish()
        return self.record

    # --- checkpoints: written at every epoch end, so a killed run resumes where it was -----
    @property
    def checkpoint_path(self) -> Path:
        return self.out_dir / checkpoint.CHECKPOINT

    def save_checkpoint(self) -> None:
        checkpoint.save(
            self.checkpoint_path, self.model, self.optimizer, self.batch_gen, self.step, self.record
        )

    def try_resume(self) -> bool:
        state = checkpoint.load(self.checkpoint_path, self.device, self.record["config"])
        if state is None:
            return False
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.batch_gen.set_state(state["batch_gen"])
        self.step, record = state["step"], state["record"]
        self.record = {**record, "status": Status.running, "env": self.record["env"], "threads": self.threads}
        self.record["resumed_at_step"] = [*record.get("resumed_at_step", []), self.step]
        self.measures.record = self.record
        return True

    def _train(self, resumed: bool) -> None:
        cfg = self.cfg
        if not resumed:
            # Step 0: the first batch's gradient before any update, where theory is exact.
            xb, yb = next(self.batches())
            loss0, norms0 = self.forward_backward(xb, yb, measure=True)
            loss0_value = self.measures.log_norms(0, loss0, norms0)
            self.measures.end_of_epoch(0, 0, loss0_value, 0.0)
            if not math.isfinite(loss0_value):
                return self.diverged(0)
            self.batch_gen.manual_seed(cfg.seed)  # training sees the same batch order as step 0

        bar = tqdm(total=cfg.epochs * self.steps_per_epoch, initial=self.step, leave=False, unit="step",
                   disable=not sys.stderr.isatty(), dynamic_ncols=True)  # fmt: skip
        with bar:
            for epoch in range(self.record["epochs_done"] + 1, cfg.epochs + 1):
                t0 = time.perf_counter()
                train_loss = self.train_epoch(on_step=bar.update)
                if not math.isfinite(train_loss):
                    return self.diverged(self.first_bad_step)
                self.report(
                    self.measures.end_of_epoch(epoch, self.step, train_loss, time.perf_counter() - t0), bar
                )
                self.save_checkpoint()
                self.save()
                pause_if_asked(epoch)
        self.record["status"] = Status.completed

    def train_epoch(self, on_step: Callable[[], object] = lambda: None) -> float:
        """One pass over the training set; returns the mean batch loss (non-finite: diverged).
        Needs open_logger() first (log steps write the norms)."""
        cfg = self.cfg
        # Batch losses stay on the device (one copy per step, no host sync) until a log step.
        losses = torch.full((self.steps_per_epoch,), math.nan, device=self.device)
        self._epoch_losses, self._epoch_start = losses, self.step
        for i, (xb, yb) in enumerate(self.batches()):
            measure = self.step % cfg.log_every == 0 and self.step > 0
            loss, norms = self.forward_backward(xb, yb, measure)
            losses[i] = loss
            if measure and not math.isfinite(self.measures.log_norms(self.step, loss, norms)):
                return math.nan
            self.optimizer.step()
            self.step += 1
            on_step()
        return losses.mean().item()

    @property
    def first_bad_step(self) -> int:
        """The first step of this epoch whose loss was not finite."""
        done = self.step - self._epoch_start + 1
        bad = (~torch.isfinite(self._epoch_losses[:done])).nonzero()
        return self._epoch_start + (int(bad[0]) if len(bad) else done - 1)

    def report(self, e: dict, bar: tqdm) -> None:
        msg = epoch_line(e, self.cfg.epochs, len(self.data.x_train))
        if bar.disable:
            log.info(msg)
        else:
            bar.write(msg)

    def diverged(self, at_step: int) -> None:
        log.warning("loss became non-finite at step %d: stopping this run (status diverged)", at_step)
        self.record.update(status=Status.diverged, diverged_at_step=at_step)

    def finish(self, first_error: BaseException | None = None) -> None:
        """Write the end of the run: hparams and flushed events, then run.json. After an error
        (`first_error`), a failure to write (a full disk) is logged and the first error wins."""
        try:
            self._write_end()
        except Exception as e:
            if first_error is None:
                raise
            log.error("could not write the end of the run in %s: %s", self.out_dir, e)

    def _write_end(self) -> None:
        finish_record(self.record)
        if self.logger is not None:
            if self.record["status"] != Status.running:
                # Every run gets the same metric keys; NaN (not None) where a value is missing.
                metrics = gradflow(self.record) | {
                    f"final/{k}": math.nan if v is None else v for k, v in self.record["final"].items()
                }
                hparams = {**self.hparams, "status": self.record["status"]}
                self.logger.hparams(hparams, metrics, self.record["step"])
            self.logger.close()
        # run.json first, then the checkpoint: a kill in between leaves a finished run.json and a
        # spare checkpoint, never a "running" run.json without its checkpoint.
        self.save()
        if self.record["status"] in DONE:
            self.checkpoint_path.unlink(missing_ok=True)  # done: nothing to resume

    def save(self) -> None:
        write_json_atomic(self.out_dir / RUN_JSON, self.record)
