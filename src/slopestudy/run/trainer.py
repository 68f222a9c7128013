"""The trainer: one run's state and step math (batches, forward/backward, an epoch of updates).
Around it: lifecycle (resume, epochs, checkpoints, the end written), measures.Measures (what is
measured and logged), records (the run.json record's pieces)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F

from slopestudy.config import Optimizer, StudyConfig, as_plain_dict
from slopestudy.run import data as data_mod
from slopestudy.run import tblog
from slopestudy.run.measures import Measures
from slopestudy.run.model import build_mlp
from slopestudy.run.probes import GradientProbe
from slopestudy.run.records import RunRecord, environment
from slopestudy.run.resources import pick_device, set_threads
from slopestudy.run.tblog import RunLogger


def make_optimizer(cfg: StudyConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer is Optimizer.adam:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


class Run:
    """State of one training run; lifecycle.execute(run) runs it and returns the run.json record."""

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
        self.record = RunRecord(
            config=as_plain_dict(cfg),
            device=str(self.device),
            threads=self.threads,
            n_params=sum(p.numel() for p in self.model.parameters()),
            steps_per_epoch=self.steps_per_epoch,
            data_sizes=sizes,
            hparams=self.hparams,
            env=environment(),
        )
        self.logger: RunLogger | None = None  # opened by lifecycle.execute(), after a possible resume
        self.measures = Measures(cfg, self.model, self.data, self.probe_x, self.kernel_x, self.record)
        self.step = 0  # optimizer updates done so far

    def open_logger(self, purge_step: int | None = None) -> RunLogger:
        """Start writing this run's TensorBoard events (lifecycle.execute() does; so do the benchmark and
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
