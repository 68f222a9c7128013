"""Sweep folders into frames: every run.json is read once, here, and nowhere else.

- runs:   one row per job folder: its config keys, status, final metrics and derived numbers
          (decay fits, gradient ratio, dead fractions, plateau gains);
- layers: one row per run, quantity and layer (signal_norm_step0, grad_norm_step0, and for
          PReLU nets prelu_slope at the end), long, so a figure picks what it draws;
- epochs: one row per run and evaluation (epoch 0 = before training), val and test accuracy and loss.
`run` in layers and epochs is the row's index in runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from slopestudy.config import config_from_record, sweep_jobs
from slopestudy.run.records import DONE, RUN_JSON, RunRecord, Status, lock_holder, read_run, train_seconds
from slopestudy.science.profiles import fit_decay, grad_ratio, theory_decay_per_layer

NUMERIC = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "steps_to_90",
           "dead_frac_step0", "dead_frac_end", "val_gain_last_half", "val_gain_last_epoch",
           "kernel_gap_step0", "kernel_gap_theory", "kernel_gap_end")  # fmt: skip
# per-layer lists kept from run.json (the kernel's: mean pair cosine of z_l, measured and predicted)
LAYER_QUANTITIES = ("signal_norm_step0", "grad_norm_step0", "kernel_cos_step0", "kernel_cos_theory")


@dataclass
class Collected:
    runs: pd.DataFrame
    layers: pd.DataFrame = field(default_factory=pd.DataFrame)
    epochs: pd.DataFrame = field(default_factory=pd.DataFrame)
    hparams: list[dict] = field(default_factory=list)  # each run's HParams record, for TensorBoard


# epochs.csv: one row per run and evaluation; the losses let a later reader apply the learned rule
# (stats.learned) at any epoch. Summaries written before they were kept have only the accuracies.
EPOCH_COLUMNS = ("run", "epoch", "step", "val_acc", "test_acc", "val_loss", "test_loss")


def collect(sweep_dirs: list[Path]) -> Collected:
    """Every job folder below `sweep_dirs`, its run.json read once."""
    rows, layers, epochs, hparams = [], [], [], []
    for sweep in sweep_dirs:
        for job in find_jobs(sweep):
            run = read_run(job)
            i = len(rows)
            rows.append(run_row(run, job, sweep))
            layers += layer_rows(run, i)
            epochs += [
                {"run": i, **{k: h.get(k) for k in EPOCH_COLUMNS[1:]}} for h in (run.history if run else [])
            ]
            if run and run.hparams:
                hparams.append(run.hparams)
    runs = pd.DataFrame(rows)
    for col in NUMERIC:
        if col in runs:
            runs[col] = pd.to_numeric(runs[col])
    long = pd.DataFrame(layers, columns=["run", "quantity", "layer", "value"])
    steps = pd.DataFrame(epochs, columns=list(EPOCH_COLUMNS))
    return Collected(runs, long, steps.astype({k: float for k in EPOCH_COLUMNS[3:]}), hparams)


# what a committed summary keeps of each run (write_tables): enough to summarize it again
KEPT_TABLES = {"runs": "runs.csv", "epochs": "epochs.csv", "layers": "kernel_layers.csv"}


def kept(summary_dir: Path, found: Collected, wanted=None) -> tuple[Collected, int]:
    """`found` plus the runs of the committed summary in `summary_dir` whose job folders are not
    among `found`'s: a summary extended on a machine where its earlier sweep folders are gone (a
    grid widened in a later session). Rows come in collect's order (sweep, then job path), so
    the result is what a summary of all the folders would write, but for the per-layer norm
    profiles, which a committed summary does not keep; how many runs were kept. `wanted` (the
    committed runs -> a boolean mask) keeps only the runs still asked for (the study runner's
    declared jobs). A job is its sweep folder's name and its job path, wherever the folder lies."""
    old = {name: pd.read_csv(summary_dir / f) if (summary_dir / f).exists() else None
           for name, f in KEPT_TABLES.items()}  # fmt: skip
    if old["runs"] is None:
        return found, 0

    def ids(runs: pd.DataFrame) -> list[tuple[str, str]]:
        return [(Path(s).name, j) for s, j in zip(runs["sweep"], runs["job"], strict=True)]

    here = set(ids(found.runs))
    keep = pd.Series([i not in here for i in ids(old["runs"])], index=old["runs"].index)
    if wanted is not None:
        keep &= wanted(old["runs"])
    if not keep.any():
        return found, 0
    if "act" in old["runs"] and (old["runs"][keep]["act"] == "prelu").any():
        raise ValueError(f"{summary_dir}: its PReLU runs' learned slopes per layer are not committed, "
                         "so they cannot be kept: summarize their folders")  # fmt: skip
    # each run by (its part, its row there): the part's per-epoch and per-layer rows follow it
    parts = [(old["runs"][keep], old["epochs"], old["layers"]), (found.runs, found.epochs, found.layers)]
    runs = pd.concat([p[0] for p in parts], ignore_index=True)
    source = [(n, i) for n, p in enumerate(parts) for i in p[0].index]
    # the sweeps in the committed order (it was collect's, over all the folders), then new ones
    sweeps = list(dict.fromkeys(Path(s).name for s in [*old["runs"]["sweep"], *found.runs["sweep"]]))

    def place(k: int) -> tuple:
        return sweeps.index(Path(runs["sweep"][k]).name), Path(runs["job"][k]).parts

    order = sorted(range(len(runs)), key=place)
    epochs, layers = [], []
    for new, k in enumerate(order):
        n, i = source[k]
        for frame, out in ((parts[n][1], epochs), (parts[n][2], layers)):
            if frame is not None and not frame.empty:
                out.append(frame[frame["run"] == i].assign(run=new))
    merged = Collected(
        runs.iloc[order].reset_index(drop=True),
        pd.concat(layers, ignore_index=True) if layers else found.layers,
        pd.concat(epochs, ignore_index=True) if epochs else found.epochs,
        found.hparams,
    )
    return merged, int(keep.sum())


def layer_rows(run: RunRecord | None, i: int) -> list[dict]:
    """The long per-layer rows of one run: step-0 profiles, and the learned PReLU slopes at the end."""
    if run is None:
        return []
    history = run.history
    series = {q: getattr(run, q) for q in LAYER_QUANTITIES}
    series["prelu_slope"] = history[-1].get("prelu_slope") if history else None
    series["kernel_cos_end"] = history[-1].get("kernel_cos") if len(history) > 1 else None
    return [{"run": i, "quantity": q, "layer": layer, "value": v}
            for q, values in series.items() for layer, v in enumerate(values or [])]  # fmt: skip


def run_row(run: RunRecord | None, job_dir: Path, sweep_dir: Path) -> dict:
    """One job as a row: config keys (flattened, hydra's left out), status, results."""
    if run is None:  # killed before run.json, or unreadable: report it, don't crash on it
        cfg = yaml.safe_load((job_dir / ".hydra" / "config.yaml").read_text()) or {}
        unreadable = (job_dir / RUN_JSON).exists()
        run = RunRecord(config=cfg, status=Status.unreadable if unreadable else Status.missing,
                        error=f"{job_dir / RUN_JSON} is not valid JSON" if unreadable else None)  # fmt: skip
    cfg = pd.json_normalize(run.config).iloc[0].to_dict() if run.config else {}
    history = run.history
    last = history[-1] if len(history) > 1 else {}
    final = run.final or {}
    row = {k: v for k, v in cfg.items() if not k.startswith("hydra")}
    acc_key = "val_acc" if final.get("val_acc") is not None else "test_acc"
    reached = [h["step"] for h in history if (h.get(acc_key) or 0) >= 0.9]
    status = run.status
    if status == Status.running:  # still running in another process, or killed while running
        status = Status.running if lock_holder(job_dir) is not None else Status.interrupted
    row.update(
        status=status,
        val_acc=final.get("val_acc"),
        val_loss=final.get("val_loss"),
        test_acc=final.get("test_acc"),
        test_loss=final.get("test_loss"),
        train_loss=final.get("train_loss"),
        steps_to_90=reached[0] if reached else None,
        decay_step0=fit_decay(run.signal_norm_step0),
        decay_end=fit_decay(last.get("signal_norm_mean")),
        grad_ratio_step0=grad_ratio(run.grad_norm_step0),
        grad_ratio_end=grad_ratio(last.get("grad_norm_mean")),
        dead_frac_step0=_mean(history[0]["dead_frac"]) if history else None,
        dead_frac_end=_mean(last["dead_frac"]) if last else None,
        kernel_gap_step0=top_hidden_gap(run.kernel_cos_step0),
        kernel_gap_theory=top_hidden_gap(run.kernel_cos_theory),
        kernel_gap_end=top_hidden_gap(last.get("kernel_cos")),
        val_gain_last_half=last_half_gain(history),
        val_gain_last_epoch=last_half_gain(history[-2:]) if len(history) > 2 else None,
        seconds=train_seconds(run),  # the study runner's compute, from a committed runs.csv
        error=run.error,
        job=str(job_dir.relative_to(sweep_dir)),
        code_hash=run.env.get("code_hash"),
        git_commit=run.env.get("git_commit"),
        sweep=shown(sweep_dir),
    )
    if run.config:
        row["decay_theory"] = theory_decay_per_layer(config_from_record(run.config))
    return row


def top_hidden_gap(cosines: list[float] | None) -> float | None:
    """1 - the mean pair cosine at the last hidden layer's Linear output z_{L-2} (width units;
    the logits have only 10), where a deep net has made different inputs most alike."""
    if not cosines or len(cosines) < 2:
        return None
    return 1.0 - cosines[-2]


def last_half_gain(history: list[dict]) -> float | None:
    """Validation accuracy gained over the second half of the epochs: about 0 = plateaued."""
    epochs = [h for h in history if h.get("epoch", 0) > 0 and h.get("val_acc") is not None]
    if len(epochs) < 2:
        return None
    return epochs[-1]["val_acc"] - epochs[len(epochs) // 2 - 1]["val_acc"]


def shown(path: Path) -> str:
    """A path relative to the cwd when it is below it (so CSVs don't carry a home folder)."""
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def _mean(values):
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def find_jobs(sweep_dir: Path) -> list[Path]:
    """Every Hydra job folder at or below `sweep_dir` (each has .hydra/config.yaml)."""
    return sorted(p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml"))


def done(df: pd.DataFrame) -> pd.DataFrame:
    """The runs that are results: completed or diverged (a diverged run's accuracy is an outcome)."""
    return df[df["status"].isin(DONE)]


def job_folders(df: pd.DataFrame) -> list[Path]:
    return [Path(sweep) / job for sweep, job in zip(df["sweep"], df["job"], strict=True)]


def expected_jobs(sweep_dir: Path) -> list[dict] | None:
    """The jobs a sweep was asked for, from its multirun.yaml (None if there is none)."""
    path = sweep_dir / "multirun.yaml"
    if not path.exists():
        return None
    cfg = yaml.safe_load(path.read_text())
    return sweep_jobs(cfg["hydra"]["overrides"]["task"], cfg["hydra"].get("sweeper", {}).get("params"))


def missing_jobs(sweep_dir: Path, df: pd.DataFrame) -> list[dict]:
    expected = expected_jobs(sweep_dir)
    if expected is None:
        return []
    runs = done(df[df["sweep"] == shown(sweep_dir)])
    keys = [k for k in (expected[0] if expected else {}) if k in df.columns]
    found = {tuple(map(comparable, r)) for r in runs[keys].itertuples(index=False)}
    return [e for e in expected if tuple(comparable(e[k]) for k in keys) not in found]


def comparable(value) -> object:
    """A value as both Hydra's parser and a CSV give it, so the two compare: numbers as rounded
    floats, booleans and text as text, and a missing value (`key=null`, an empty cell) as None."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, bool | np.bool_):
        return str(bool(value)).lower()
    if isinstance(value, int | float | np.number):
        return round(float(value), 12)
    return str(value)
