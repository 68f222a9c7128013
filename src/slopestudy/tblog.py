"""TensorBoard logging for one run: the job folder is the run, tags are namespaced."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

LAYER_METRICS = {
    "grad_norm": "weight-gradient norm ||dL/dW_l||",
    "signal_norm": "backprop signal norm ||dL/dz_l||",
    "dead_frac": "dead (or negative-region) unit fraction",
    "act_mean": "activation mean",
    "act_std": "activation std",
}


def layer_tag(metric: str, layer: int) -> str:
    return f"{metric}/layer_{layer:02d}"


def custom_scalars_layout() -> dict:
    """One chart per metric with every layer on it (tags are full-match regexes)."""
    per_layer = {desc: ["Multiline", [rf"{metric}/layer_\d+"]] for metric, desc in LAYER_METRICS.items()}
    return {
        "gradient flow (per layer)": per_layer,
        "training": {
            "loss": ["Multiline", [r"loss/train", r"loss/test"]],
            "test accuracy": ["Multiline", [r"acc/test"]],
        },
    }


def markdown_table(flat: dict) -> str:
    rows = "\n".join(f"|{k}|{v}|" for k, v in flat.items())
    return "|key|value|\n|-|-|\n" + rows


class RunLogger:
    """Writes scalars, histograms, config text and hparams into `log_dir` (one TB run)."""

    def __init__(self, log_dir: str | Path, flat_config: dict, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self.writer.add_text("config", markdown_table(flat_config), 0)
        self.writer.add_custom_scalars(custom_scalars_layout())

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def layers(self, metric: str, values: Sequence[float], step: int) -> None:
        for i, v in enumerate(values):
            self.writer.add_scalar(layer_tag(metric, i), v, step)

    def grad_histograms(self, weights: Sequence[torch.Tensor], step: int) -> None:
        for i, w in enumerate(weights):
            self.writer.add_histogram(layer_tag("grad_hist", i), w.grad, step)

    def hparams(self, hparam_dict: dict, metric_dict: dict, step: int) -> None:
        # SummaryWriter.add_hparams would write into a new timestamped sub-run (pytorch#32651);
        # writing its three summaries ourselves keeps them in this job's run.
        for summary in hparams(hparam_dict, metric_dict):
            self.writer.file_writer.add_summary(summary, step)
        for tag, value in metric_dict.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()
