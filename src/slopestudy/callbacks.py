"""Hydra callbacks: what happens when a sweep ends."""

from __future__ import annotations

import logging
from pathlib import Path

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

log = logging.getLogger("slopestudy")


class SweepEnd(Callback):
    """At the end of a multirun: say where the sweep is and how to review it."""

    def on_multirun_end(self, config: DictConfig, **kwargs) -> None:
        sweep_dir = Path(config.hydra.sweep.dir).resolve()
        print(f"\nSweep folder: {sweep_dir}")
        print(f"Review it:    tensorboard --logdir {sweep_dir}")
