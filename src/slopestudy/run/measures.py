"""What a run measures beside its loss, logged to TensorBoard (tblog) and kept in its record:
the per-layer norms at each log step (and the step-0 profiles theory is checked against), and at
each epoch's end the evaluation, the activation and kernel probes and the epoch's mean norms."""

from __future__ import annotations

import logging
import math

import torch

from slopestudy.config import StudyConfig
from slopestudy.run import data as data_mod
from slopestudy.run import tblog
from slopestudy.run.model import linears, prelus
from slopestudy.run.probes import activation_stats, kernel_profile, pair_cosines
from slopestudy.run.records import gradflow
from slopestudy.run.resources import EVAL_CHUNK
from slopestudy.run.tblog import RunLogger
from slopestudy.science.profiles import denormal_from, theory_kernel_profile

log = logging.getLogger(__name__)


@torch.no_grad()
def evaluate(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """(loss, accuracy) over the whole split, as a device tensor (no host sync here)."""
    loss_sum = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    was_training = model.training
    model.eval()  # BatchNorm: running statistics, not the chunk's
    for i in range(0, len(x), EVAL_CHUNK):
        out = model(x[i : i + EVAL_CHUNK])
        loss_sum += torch.nn.functional.cross_entropy(out, y[i : i + EVAL_CHUNK], reduction="sum")
        correct += (out.argmax(dim=1) == y[i : i + EVAL_CHUNK]).sum()
    model.train(was_training)
    return torch.stack([loss_sum, correct]) / len(x)


class Measures:
    """One run's measurements; `logger` is set when the run opens it, `record` is the run's."""

    def __init__(self, cfg: StudyConfig, model: torch.nn.Module, data: data_mod.Tensors,
                 probe_x: torch.Tensor, kernel_x: torch.Tensor | None, record: dict) -> None:  # fmt: skip
        self.cfg, self.model, self.data = cfg, model, data
        self.probe_x, self.kernel_x = probe_x, kernel_x  # the activation and kernel probes' examples
        self.record = record
        self.logger: RunLogger | None = None
        self._epoch_norms: list[list[float]] = []  # rows of [grad..., signal...] this epoch

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
            self.record.grad_norm_step0 = grad
            self.record.signal_norm_step0 = signal
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
        if top is not None and self.probe_x.device.type == "cpu":
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
        self.record.history.append(entry)
        self.record.step, self.record.epochs_done = step, epoch
        return entry

    def log_kernel(self, epoch: int) -> list[float]:
        """The kernel probe: mean cosine of z_l over the probe pairs, per layer; logged as 1 - cos
        (the readable quantity near 1) against the layer, with theory's at step 0."""
        cos = kernel_profile(self.model, self.kernel_x).tolist()
        self.logger.profile("kernel_gap", [1 - c for c in cos], epoch)
        if epoch == 0:
            theory = theory_kernel_profile(self.cfg, pair_cosines(self.kernel_x))
            self.record.kernel_cos_step0 = cos
            self.record.kernel_cos_theory = theory
            if theory is not None:
                self.logger.profile("kernel_gap_theory", [1 - c for c in theory], 0)
        return cos
