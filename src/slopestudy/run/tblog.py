"""TensorBoard logging: one run per job folder, plus the sweep's `summary` run.

Tag groups are numbered so that TensorBoard (which sorts groups by name) shows gradient flow
first and activation statistics last:

    1_profile/signal_norm/epoch_NN   norm against the LAYER index (x axis = layer, not step)
    1_profile/grad_norm/epoch_NN     epoch 00 = step 0 (before any update); later = epoch mean
    2_signal_norm/layer_XX           ||dL/dz_l|| against the step
    3_grad_norm/layer_XX             ||dL/dW_l|| against the step
    4_loss/{train,train_batch,val,test}, 5_acc/{val,test}
    6_dead_frac/layer_XX, 7_act_mean/layer_XX, 8_act_std/layer_XX
    gradflow/{decay_step0,grad_ratio_step0}, final/{val_acc,test_acc,test_loss,train_loss}
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
from tensorboard.plugins.hparams import api_pb2, metadata, plugin_data_pb2
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from slopestudy.config import MACHINERY

GROUP = {  # metric -> its numbered tag group
    "signal_norm": "2_signal_norm",
    "grad_norm": "3_grad_norm",
    "dead_frac": "6_dead_frac",
    "act_mean": "7_act_mean",
    "act_std": "8_act_std",
}
LAYER_METRICS = {
    "signal_norm": "backprop signal norm ||dL/dz_l||",
    "grad_norm": "weight-gradient norm ||dL/dW_l||",
    "dead_frac": "dead (or negative-region) unit fraction",
    "act_mean": "activation mean",
    "act_std": "activation std",
}
PROFILE = "1_profile"
LOSS, ACC = "4_loss", "5_acc"
# The HParams dashboard's metrics, in the order the parallel-coordinates view shows them:
# slope -> step-0 gradient flow -> accuracy.
HPARAM_METRICS = ["gradflow/decay_step0", "gradflow/grad_ratio_step0", "final/val_acc", "final/test_acc",
                  "final/test_loss", "final/train_loss"]  # fmt: skip
# Differing hparams are listed in this order first (the dashboard checks the first five).
HPARAM_ORDER = [
    "slope",
    "slope_rule",
    "depth",
    "init",
    "act",
    "norm",
    "residual",
    "residual_branch",
    "width",
    "optimizer",
    "lr",
    "momentum",
    "epochs",
    "seed",
]
PROFILE_NOTE = (
    "**Layer profiles** (`1_profile/...`): the x axis of these charts is the **layer index** "
    "(0 = input side), not the training step. `epoch_00` is step 0, the first batch's gradient "
    "before any update, where mean-field theory is exact; `epoch_NN` is the mean over epoch NN's "
    "log steps. Switch the y axis to log scale: a straight line is geometric decay, and its slope "
    "per layer is the summary's `decay` (log10). `kernel_gap`: 1 - the mean cosine between the z_l of "
    "different probe examples (how alike the net makes different inputs); `kernel_gap_theory`: the "
    "correlation map's prediction from the same pairs' input cosines."
)


def layer_tag(metric: str, layer: int) -> str:
    return f"{GROUP.get(metric, metric)}/layer_{layer:02d}"


def profile_tag(metric: str, epoch: int) -> str:
    return f"{PROFILE}/{metric}/epoch_{epoch:02d}"


def custom_scalars_layout() -> dict:
    """Charts with many series each (tags are full-match regexes)."""
    profiles = {f"{log}{desc} vs LAYER (x = layer index)": ["Multiline", [rf"{PROFILE}/{log}{m}/epoch_\d+"]]
                for log in ("log10_", "") for m, desc in LAYER_METRICS.items()
                if m in ("signal_norm", "grad_norm")}  # fmt: skip
    profiles[
        "log10(1 - mean cosine of z_l over probe pairs) vs LAYER (x = layer index; "
        "kernel_gap_theory: the correlation map)"
    ] = ["Multiline", [rf"{PROFILE}/log10_kernel_gap(_theory)?/epoch_\d+"]]
    per_layer = {
        f"{desc}, all layers": ["Multiline", [rf"{GROUP[m]}/layer_\d+"]] for m, desc in LAYER_METRICS.items()
    }
    return {
        "1 layer profiles": profiles,
        "2 gradient flow per layer (x = step)": per_layer,
        "3 training": {
            "loss": ["Multiline", [rf"{LOSS}/train", rf"{LOSS}/val", rf"{LOSS}/test"]],
            "accuracy": ["Multiline", [rf"{ACC}/val", rf"{ACC}/test"]],
        },
    }


def key_value_table(flat: dict) -> str:
    """A config as a two-column Markdown table (TensorBoard's Text dashboard renders it)."""
    rows = "\n".join(f"|{k}|{v}|" for k, v in flat.items())
    return "|key|value|\n|-|-|\n" + rows


def job_hparams(config: dict, sizes: dict[str, int]) -> dict:
    """A job's hyperparameters for the HParams dashboard: every config key but machinery
    (seed kept), with the data sizes as counts; same keys in every run, no None."""
    flat = {
        k: v for k, v in config.items() if not isinstance(v, dict) and (k == "seed" or k not in MACHINERY)
    }
    flat["data.name"] = config["data"]["name"]
    flat.update({f"data.{split}_size": n for split, n in sizes.items()})
    return {k: ("none" if v is None else v) for k, v in flat.items()}


class RunLogger:
    """Writes scalars, profiles, histograms, config text and hparams into `log_dir` (one run)."""

    def __init__(self, log_dir: str | Path, flat_config: dict, purge_step: int | None = None) -> None:
        self.writer = SummaryWriter(log_dir=str(log_dir), purge_step=purge_step)
        self.writer.add_text("config", key_value_table(flat_config), 0)
        self.writer.add_text(f"{PROFILE}/about", PROFILE_NOTE, 0)
        self.writer.add_custom_scalars(custom_scalars_layout())

    def scalar(self, tag: str, value: float, step: int) -> None:
        self.writer.add_scalar(tag, value, step)

    def layers(self, metric: str, values: Sequence[float], step: int) -> None:
        for i, v in enumerate(values):
            self.writer.add_scalar(layer_tag(metric, i), v, step)

    def profile(self, metric: str, values: Sequence[float], epoch: int) -> None:
        """One tag per moment, step = layer index: a chart of the norm against the layer; and
        its log10 under `log10_<metric>`, so TensorBoard's default linear axis shows decades as
        a straight line (the slope per layer is the summary's decay)."""
        for i, v in enumerate(values):
            self.writer.add_scalar(profile_tag(metric, epoch), v, i)
            if v > 0 and math.isfinite(v):
                self.writer.add_scalar(profile_tag(f"log10_{metric}", epoch), math.log10(v), i)

    def grad_histograms(self, weights: Sequence[torch.Tensor], step: int) -> None:
        for i, w in enumerate(weights):
            self.writer.add_histogram(f"grad_hist/layer_{i:02d}", w.grad, step)

    def hparams(self, hparam_dict: dict, metric_dict: dict, step: int) -> None:
        # SummaryWriter.add_hparams would write into a new timestamped sub-run (pytorch#32651),
        # so the session summaries go into this job's run by hand. The experiment summary (which
        # hparams differ, in which order) is the sweep's to write: see write_summary_run.
        _experiment, start, end = hparams(hparam_dict, metric_dict)
        for summary in (start, end):
            self.writer.file_writer.add_summary(summary, step)
        for tag, value in metric_dict.items():
            self.writer.add_scalar(tag, value, step)

    def close(self) -> None:
        self.writer.close()


def experiment_summary(runs_hparams: list[dict]) -> Summary:
    """The HParams experiment of a sweep: hparams that differ between runs marked `differs` and
    listed first (so the dashboard opens on them), constants after; the metrics in order."""
    names = list(dict.fromkeys(k for h in runs_hparams for k in h))
    differs = {k: len({repr(h.get(k)) for h in runs_hparams}) > 1 for k in names}
    rank = {k: i for i, k in enumerate(HPARAM_ORDER)}
    names.sort(key=lambda k: (not differs[k], rank.get(k, len(rank)), k))
    infos = []
    for k in names:
        value = next(h[k] for h in runs_hparams if k in h)
        kind = ("DATA_TYPE_BOOL" if isinstance(value, bool) else "DATA_TYPE_FLOAT64"
                if isinstance(value, int | float) else "DATA_TYPE_STRING")  # fmt: skip
        infos.append(api_pb2.HParamInfo(name=k, type=api_pb2.DataType.Value(kind), differs=differs[k]))
    metrics = [api_pb2.MetricInfo(name=api_pb2.MetricName(tag=t)) for t in HPARAM_METRICS]
    content = plugin_data_pb2.HParamsPluginData(
        experiment=api_pb2.Experiment(hparam_infos=infos, metric_infos=metrics),
        version=metadata.PLUGIN_DATA_VERSION,
    )
    smd = SummaryMetadata(
        plugin_data=SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
    )
    return Summary(value=[Summary.Value(tag=metadata.EXPERIMENT_TAG, metadata=smd)])


def write_summary_run(
    out_dir: Path, images: dict[str, np.ndarray], texts: dict[str, str], runs_hparams: list[dict]
) -> None:
    """The sweep's `summary` run: its figures (Images), its tables (Text) and the HParams
    experiment. Written anew each time (a re-summary replaces, never duplicates)."""
    for old in Path(out_dir).glob("events.out.tfevents.*"):
        old.unlink()
    with SummaryWriter(log_dir=str(out_dir)) as writer:
        for name, image in images.items():
            writer.add_image(f"summary/{name}", image, 0, dataformats="HWC")
        for tag, text in texts.items():
            writer.add_text(tag, text, 0)
        if runs_hparams:
            writer.file_writer.add_summary(experiment_summary(runs_hparams), 0)
