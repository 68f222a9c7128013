"""The trainer: one run's loop (batches, forward/backward with probes, epochs, evaluation),
TensorBoard logging through tblog, checkpoints through checkpoint, the record through records."""

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
from slopestudy.run.model import build_mlp, linears, prelus
from slopestudy.run.probes import GradientProbe, activation_stats, kernel_profile, pair_cosines
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
from slopestudy.run.resources import EVAL_CHUNK, pick_device, set_threads
from slopestudy.run.stopping import Interrupted, pause_if_asked, stop_on_signals
from slopestudy.run.tblog import RunLogger
from slopestudy.science.profiles import denormal_from, theory_kernel_profile

log = logging.getLogger(__name__)


def make_optimizer(cfg: StudyConfig, model: torch.nn.Module) -> torch.optim.Optimizer:
    if cfg.optimizer is Optimizer.adam:
        return torch.optim.Adam(model.parameters(), lr=cfg.lr)
    return torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(loss, accuracy) over the whole split, as a device tensor (no host sync here)."""
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    was_training = model.training
    model.eval()  # BatchNorm: running statistics, not the chunk's
    for i in range(0, len(x), EVAL_CHUNK):
        out = model(x[i : i + EVAL_CHUNK])
        loss_sum += F.cross_entropy(out, y[i : i + EVAL_CHUNK], reduction="sum")
        correct += (out.argmax(dim=1) == y[i : i + EVAL_CHUNK]).sum()
    model.train(was_training)
    return torch.stack([loss_sum, correct]) / len(x)


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
        self._epoch_norms: list[list[float]] = []  # rows of [grad..., signal...] this epoch
        self.step = 0  # optimizer updates done so far

    def open_logger(self, purge_step: int | None = None) -> RunLogger:
        """Start writing this run's TensorBoard events (execute() does; so do the benchmark and
        tests that call train_epoch() on their own; they close it)."""
        self.logger = RunLogger(self.out_dir, self.hparams, purge_step=purge_step)
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

    def log_norms(self, step: int, loss: torch.Tensor, norms: torch.Tensor) -> float:
        """One host sync per log step: the norms and the loss together."""
        values = torch.cat([norms.flatten(), loss.view(1)]).tolist()
        depth = self.cfg.depth
        grad, signal, loss_value = values[:depth], values[depth : 2 * depth], values[-1]
        self.logger.layers("signal_norm", signal, step)
        self.logger.layers("grad_norm", grad, step)
        self.logger.scalar(f"{tblog.LOSS}/train_batch", loss_value, step)
        # A histogram of inf/NaN gradients cannot be drawn; the divergence check comes next.
        finite = all(math.isfinite(v) for v in grad)
        if finite and self.cfg.hist_every and step % self.cfg.hist_every == 0:
            self.logger.grad_histograms([layer.weight for layer in linears(self.model)], step)
        self._epoch_norms.append(grad + signal)
        self.log_prelu(step)
        if step == 0:
            self.warn_if_denormal(signal)
            self.record["grad_norm_step0"] = grad
            self.record["signal_norm_step0"] = signal
            self.logger.profile("signal_norm", signal, 0)
            self.logger.profile("grad_norm", grad, 0)
            for tag, value in gradflow(self.record).items():
                self.logger.scalar(tag, value, 0)
        return loss_value

    def warn_if_denormal(self, signal: list[float]) -> None:
        """One line when the step-0 signal falls into float32 denormals (profiles.denormal_from): some
        CPUs compute them many times slower (`python -m slopestudy.tools.bench --kernel` measures the
        default init against He side by side; on the development machine it found no slowdown).
        Flushing them to zero would change the measured norms there, so the run only says so."""
        widths = [layer.out_features for layer in linears(self.model)]
        top = denormal_from(signal, self.cfg.batch_size, widths)
        if top is not None and self.device.type == "cpu":
            log.warning("the backprop signal is below 1e-30 per unit from layer %d down to the input: "
                        "float32 denormals, which some CPUs compute many times slower (python -m "
                        "slopestudy.tools.bench --kernel measures this one); init=kaiming keeps it O(1)",
                        top)  # fmt: skip

    def log_prelu(self, step: int) -> list[float]:
        """PReLU's learned slopes per hidden layer (the mean over units for per-unit)."""
        slopes = [m.weight.detach().mean() for m in prelus(self.model)]
        if not slopes:
            return []
        values = torch.stack(slopes).tolist()
        self.logger.layers("prelu_slope", values, step)
        return values

    def end_of_epoch(self, epoch: int, step: int, train_loss: float, seconds: float) -> dict:
        stats = activation_stats(self.model, self.probe_x)
        test = evaluate(self.model, self.data.x_test, self.data.y_test)
        (dead, act_mean, act_std), (test_loss, test_acc) = stats.tolist(), test.tolist()
        val_loss = val_acc = None
        if len(self.data.x_val):
            val_loss, val_acc = evaluate(self.model, self.data.x_val, self.data.y_val).tolist()
            self.logger.scalar(f"{tblog.LOSS}/val", val_loss, step)
            self.logger.scalar(f"{tblog.ACC}/val", val_acc, step)
        self.logger.layers("dead_frac", dead, step)
        self.logger.layers("act_mean", act_mean, step)
        self.logger.layers("act_std", act_std, step)
        self.logger.scalar(f"{tblog.LOSS}/test", test_loss, step)
        self.logger.scalar(f"{tblog.ACC}/test", test_acc, step)
        if epoch > 0:
            self.logger.scalar(f"{tblog.LOSS}/train", train_loss, step)
        depth = self.cfg.depth
        means = [sum(col) / len(col) for col in zip(*self._epoch_norms, strict=True)]
        self._epoch_norms = []
        if epoch > 0 and means:
            self.logger.profile("grad_norm", means[:depth], epoch)
            self.logger.profile("signal_norm", means[depth:], epoch)
        entry = {
            "epoch": epoch, "step": step, "seconds": round(seconds, 3),
            "train_loss": train_loss, "val_loss": val_loss, "val_acc": val_acc,
            "test_loss": test_loss, "test_acc": test_acc,
            "dead_frac": dead, "act_mean": act_mean, "act_std": act_std,
            "grad_norm_mean": means[:depth], "signal_norm_mean": means[depth:],
        }  # fmt: skip
        if self.kernel_x is not None:
            entry["kernel_cos"] = self.log_kernel(epoch)
        if prelus(self.model):
            entry["prelu_slope"] = self.log_prelu(step)
        self.record["history"].append(entry)
        self.record.update(step=step, epochs_done=epoch)
        return entry

    def log_kernel(self, epoch: int) -> list[float]:
        """The kernel probe: mean cosine of z_l over the probe pairs, per layer; logged as 1 - cos
        (the readable quantity near 1) against the layer, with theory's at step 0."""
        cos = kernel_profile(self.model, self.kernel_x).tolist()
        self.logger.profile("kernel_gap", [1 - c for c in cos], epoch)
        if epoch == 0:
            theory = theory_kernel_profile(self.cfg, pair_cosines(self.kernel_x))
            self.record["kernel_cos_step0"] = cos
            self.record["kernel_cos_theory"] = theory
            if theory is not None:
                self.logger.profile("kernel_gap_theory", [1 - c for c in theory], 0)
        return cos

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
        return True

    def _train(self, resumed: bool) -> None:
        cfg = self.cfg
        if not resumed:
            # Step 0: the first batch's gradient before any update, where theory is exact.
            xb, yb = next(self.batches())
            loss0, norms0 = self.forward_backward(xb, yb, measure=True)
            loss0_value = self.log_norms(0, loss0, norms0)
            self.end_of_epoch(0, 0, loss0_value, 0.0)
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
                self.report(self.end_of_epoch(epoch, self.step, train_loss, time.perf_counter() - t0), bar)
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
            if measure and not math.isfinite(self.log_norms(self.step, loss, norms)):
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
