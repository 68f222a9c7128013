"""Checkpoints: written at every epoch end, so a killed run resumes where it was, bit for bit."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch

from slopestudy.config import schema_defaults
from slopestudy.run.records import RunRecord, same_config, write_atomic

log = logging.getLogger("slopestudy.run.trainer")
CHECKPOINT = "checkpoint.pt"


def save(path: Path, model, optimizer, batch_gen: torch.Generator, step: int, record: RunRecord) -> None:
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "batch_gen": batch_gen.get_state(),
        "step": step,
        "record": json.dumps(record.to_json()),  # a string keeps torch.load(weights_only=True) happy
    }
    # Serialized in memory, written by Python: a full disk then raises OSError(ENOSPC) (torch's
    # own file writer reports only "unexpected pos"), and the partial file is removed, so the
    # previous checkpoint stays intact and no space is held by a half-written one.
    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_atomic(path, buffer.getbuffer())


def load(path: Path, device, config: dict) -> dict | None:
    """The checkpoint's state (its run record decoded) if it exists, loads and was written for
    `config`; otherwise None, and the run starts over."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location=device, weights_only=True)
        state["record"] = json.loads(state["record"])
    except Exception as e:  # noqa: BLE001 - a bad checkpoint means: start over
        log.warning("ignoring unreadable checkpoint %s (%s): starting over", path, e)
        return None
    if not same_config(state["record"]["config"], config, schema_defaults()):
        log.warning("checkpoint %s has another config: starting over", path)
        return None
    state["batch_gen"] = state["batch_gen"].cpu()  # map_location moved it; a Generator wants CPU
    return state
