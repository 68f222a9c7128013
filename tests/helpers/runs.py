"""Synthetic run folders (a job's .hydra/config.yaml and run.json) with known numbers."""

from __future__ import annotations

import json

import yaml

BASE = {"slope": 0.0, "depth": 4, "width": 32, "init": "pytorch", "seed": 0, "optimizer": "sgd",
        "lr": 0.01, "epochs": 1, "data": {"name": "mnist", "root": "data", "train_size": None}}  # fmt: skip


def make_run(
    sweep, name, status="completed", decay=0.3, acc=0.9, write_json=True, val=None, val_loss=0.3, **overrides
):
    cfg = {**BASE, **overrides}
    job = sweep / name
    (job / ".hydra").mkdir(parents=True)
    (job / ".hydra" / "config.yaml").write_text(yaml.safe_dump(cfg))
    if not write_json:
        return job
    depth = cfg["depth"]
    # signal grows by `decay` decades per layer toward the output; the output layer is off-trend
    signal = [10 ** (decay * i - 5) for i in range(depth - 1)] + [123.0]
    grad = [10.0 ** (-2 + i / (depth - 1)) for i in range(depth)]  # first/last = 1e-1
    hist = {"dead_frac": [0.5] * (depth - 1), "signal_norm_mean": signal, "grad_norm_mean": grad}
    run = {
        "status": status, "config": cfg,
        "signal_norm_step0": signal, "grad_norm_step0": grad,
        "history": [{"epoch": 0, "step": 0, "test_acc": 0.1, **hist},
                    {"epoch": 1, "step": 100, "test_acc": acc, **hist}],
        "final": {"test_acc": acc, "test_loss": 0.3, "train_loss": 0.2},
    }  # fmt: skip
    if val is not None:
        run["final"].update(val_acc=val, val_loss=val_loss)
        run["history"][-1].update(val_acc=val, val_loss=val_loss)
    if status == "failed":
        run["error"] = "RuntimeError: boom"
    (job / "run.json").write_text(json.dumps(run))
    return job


def make_curve_run(sweep, name, accs, **overrides):
    """make_run with a validation accuracy after each epoch (`accs`; a diverged run has fewer
    than its `epochs`)."""
    job = make_run(sweep, name, val=accs[-1], **{"epochs": len(accs), **overrides})
    run = json.loads((job / "run.json").read_text())
    first, last = run["history"]
    run["history"] = [first] + [{**last, "epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]
    (job / "run.json").write_text(json.dumps(run))
    return job


def load(path):
    return json.loads(path.read_text())


def final_loss(acc: float | None) -> float:
    """A final validation loss that agrees with a synthetic run's accuracy: below chance (ln 10)
    where the run reached 0.2, just above it where it stayed at chance, NaN where it has none."""
    if acc is None or acc != acc:
        return float("nan")
    return 0.3 if acc >= 0.2 else 2.3030
