"""run.json: the one file per job folder that says what happened, written atomically; and the
lock that lets one process at a time write a job folder."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import platform
import subprocess
import tempfile
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from slopestudy.config import SLOPED_ACTS, Act, Norm, StudyConfig, config_from_record
from slopestudy.paths import PACKAGE, REPO
from slopestudy.science.profiles import fit_decay, grad_ratio, theory_decay_per_layer

RUN_JSON = "run.json"
FINAL_METRICS = ("val_acc", "val_loss", "test_acc", "test_loss", "train_loss")  # run.json "final"


class Status(StrEnum):
    """A run's status: run.json's (the first five) or what a summary finds in its job folder."""

    running = "running"  # or killed while running: collect tells the two apart by the lock
    completed = "completed"
    diverged = "diverged"  # a non-finite loss: a result (the run failed to learn)
    failed = "failed"  # an exception: not a result
    interrupted = "interrupted"  # stopped by a signal, resumable
    missing = "missing"  # a job folder without run.json
    unreadable = "unreadable"  # run.json there but not JSON


DONE = [Status.completed, Status.diverged]  # statuses that are results; a restart runs anything else again
PROBLEMS = [s for s in Status if s not in DONE]  # statuses a summary reports as not results
# Keys that may differ between a run and its restart without changing any result.
NOT_RESULT_KEYS = {"threads"}


@dataclass
class RunRecord:
    """run.json: what one job did. The run writes it after every epoch and at its end (and the
    checkpoint carries a copy); a restart, the sweep's callback, the study runner and the summary
    read it back, all through this class. Optional fields are left out of the file while unset."""

    config: dict = field(default_factory=dict)
    status: Status = Status.running
    device: str | None = None
    threads: int | None = None
    n_params: int | None = None
    steps_per_epoch: int | None = None
    data_sizes: dict = field(default_factory=dict)
    hparams: dict = field(default_factory=dict)
    step: int = 0  # optimizer updates done
    epochs_done: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per evaluation; 0 = before training
    env: dict = field(default_factory=dict)  # versions and code: records.environment()
    # step 0, per layer
    grad_norm_step0: list[float] | None = None
    signal_norm_step0: list[float] | None = None
    kernel_cos_step0: list[float] | None = None
    kernel_cos_theory: list[float] | None = None
    # the end
    final: dict | None = None  # FINAL_METRICS of the last evaluation
    grad_norm_epoch_mean: list | None = None
    signal_norm_epoch_mean: list | None = None
    diverged_at_step: int | None = None
    resumed_at_step: list[int] | None = None
    error: str | None = None
    traceback: str | None = None

    def to_json(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_json(cls, data: dict) -> RunRecord:
        """A record from run.json's dict; keys this version does not know are ignored, keys an
        older run did not write take their defaults."""
        known = {f.name for f in fields(cls)} - {"status"}
        try:
            status = Status(data.get("status", Status.missing))
        except ValueError:
            status = Status.unreadable
        return cls(status=status, **{k: v for k, v in data.items() if k in known})

    @property
    def is_result(self) -> bool:
        return self.status in DONE


def _finite_or_none(obj):
    # JSON has no NaN/inf; a diverged run's last loss becomes null rather than invalid JSON.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_atomic(path: str | Path, data: bytes | memoryview) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`: a reader sees the
    old file or the new one, never half of one; on any error (a full disk) the temp file goes."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | Path, data: dict) -> None:
    write_atomic(path, json.dumps(_finite_or_none(data), indent=1, allow_nan=False).encode())


def write_run(folder: str | Path, record: RunRecord) -> None:
    write_json_atomic(Path(folder) / RUN_JSON, record.to_json())


def read_run(folder: str | Path) -> RunRecord | None:
    """The run.json of a job folder, or None when it is missing or unreadable."""
    try:
        data = json.loads((Path(folder) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None
    return RunRecord.from_json(data) if isinstance(data, dict) else None


def train_seconds(run: RunRecord | None) -> float | None:
    """The sum of a run's epoch training times (start-up, data loading and evaluation not
    included); None when it recorded no epoch."""
    epochs = [h.get("seconds") or 0.0 for h in (run.history if run else [])]
    return sum(epochs) if epochs else None


def same_config(stored: dict, current: dict, defaults: dict | None = None) -> bool:
    """Would `current` reproduce the run recorded with `stored`?

    Keys in NOT_RESULT_KEYS are ignored. A key missing from `stored` was added to the schema
    after that run: it counts as equal when `current` holds its default (from `defaults`, the
    schema's defaults as a nested dict), so an upgrade does not rerun finished jobs; any real
    difference still does."""
    if defaults is not None:
        stored = _with_defaults(stored, defaults)
    return _without(stored, NOT_RESULT_KEYS) == _without(current, NOT_RESULT_KEYS)


def _with_defaults(stored: dict, defaults: dict) -> dict:
    filled = dict(stored)
    for key, default in defaults.items():
        if key not in filled:
            filled[key] = default
        elif isinstance(default, dict) and isinstance(filled[key], dict):
            filled[key] = _with_defaults(filled[key], default)
    return filled


def _without(d: dict, keys: set) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def environment() -> dict:
    """Package versions and what code ran: the git commit, whether the tree had uncommitted
    changes, and hashes of the package's source and the config files (what a sweep composes
    its jobs from), so a summary can tell runs of different code apart even without git."""

    versions = {}
    for pkg in ("torch", "torchvision", "hydra-core", "tensorboard", "numpy", "slopestudy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    repo = REPO
    commit, dirty = None, None
    try:
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                                capture_output=True, text=True, timeout=10)  # fmt: skip
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        if head.returncode == 0 and status.returncode == 0:
            dirty = bool(status.stdout.strip())
            commit = head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return {
        "python": platform.python_version(),
        "packages": versions,
        "cpu": cpu(),
        "git_commit": commit,
        "git_dirty": dirty,
        "code_hash": tree_hash(PACKAGE, "*.py"),
        "config_hash": tree_hash(repo / "conf", "*.yaml"),
    }


def cpu() -> dict:
    """The CPU and the instruction set torch's kernels use: float sums are rounded differently on
    different CPUs, so a rerun is bit-identical only where these match (a rerun elsewhere lands
    within seed-to-seed spread, not on the same digits)."""
    import torch  # here, not at the top: the summary reads records without needing torch's start-up

    model = None
    with contextlib.suppress(OSError):  # no /proc off Linux
        model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                      if line.startswith("model name")), None)  # fmt: skip
    return {"model": model or platform.processor() or None, "machine": platform.machine(),
            "torch_capability": torch.backends.cpu.get_cpu_capability()}  # fmt: skip


def tree_hash(folder: Path, pattern: str) -> str | None:
    """sha256 (first 16 hex digits) over the relative paths and contents of the files under
    `folder` that match `pattern`; None when the folder does not exist (an installed wheel has
    no conf/ beside it)."""
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    for path in sorted(folder.rglob(pattern)):
        if "__pycache__" not in path.parts:
            digest.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


# --- one process per job folder --------------------------------------------------------------
LOCK_FILE = ".lock"


class FolderLock:
    """An exclusive flock on `<job folder>/.lock`, holding the owner's pid.

    The OS drops the lock when its process ends, however it ends (SIGKILL included), so a
    lock is never stale; the file left behind means nothing without the flock."""

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> int | None:
        """Take the lock and return None, or return the pid holding it (-1 if not yet written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 32).decode(errors="replace").strip()
            os.close(fd)
            return int(holder) if holder.isdigit() else -1
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return None

    def release(self) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def lock_holder(folder: str | Path) -> int | None:
    """The pid of another process holding the folder's lock now, or None."""
    if not (Path(folder) / LOCK_FILE).exists():
        return None
    lock = FolderLock(folder)
    holder = lock.acquire()
    lock.release()
    return holder


# --- what a run found, in words: its first log line and its end-of-run report ----------------
def finish_record(record: RunRecord) -> None:
    """The record's summary fields, from its history: the last epoch's metrics and the per-epoch
    layer norms."""
    history = record.history
    last = history[-1] if history else {}
    record.final = {k: last.get(k) for k in FINAL_METRICS}
    record.grad_norm_epoch_mean = [h["grad_norm_mean"] for h in history[1:]]
    record.signal_norm_epoch_mean = [h["signal_norm_mean"] for h in history[1:]]


def epoch_line(e: dict, epochs: int, n_train: int) -> str:
    """The progress line of one finished epoch (a history entry of run.json)."""
    val = f"val_acc {e['val_acc']:.4f}  " if e["val_acc"] is not None else ""
    speed = n_train / e["seconds"]
    return (f"epoch {e['epoch']}/{epochs}  step {e['step']}  train_loss {e['train_loss']:.4f}  {val}"
            f"test_acc {e['test_acc']:.4f}  ({e['seconds']:.1f}s, {speed:.0f} samples/s)")  # fmt: skip


def describe_net(cfg: StudyConfig) -> str:
    """`slope=0.2`, or `act=selu`, plus the norm and skips when present."""
    text = f"slope={cfg.slope:g}" if cfg.act in SLOPED_ACTS else f"act={cfg.act}"
    if cfg.act is Act.prelu:
        text += f" (prelu, per {cfg.prelu_params})"
    if cfg.norm is not Norm.none:
        text += f" norm={cfg.norm}"
    return text + (" residual" if cfg.residual else "")


def code_line(env: dict) -> str:
    """The code a run ran, for its first log line; a dirty tree is said loudly, since such a run
    cannot be reproduced from its commit alone."""
    commit = (env.get("git_commit") or "unknown commit").removesuffix("+dirty")[:12]
    dirty = ""
    if env.get("git_dirty"):
        dirty = " DIRTY TREE (uncommitted changes: not reproducible from its commit)"
    return f"{commit}{dirty}, source {env.get('code_hash')}, conf {env.get('config_hash')}"


def gradflow(record: RunRecord) -> dict[str, float]:
    """The step-0 gradient-flow numbers, computed as the summary computes them."""
    return {
        "gradflow/decay_step0": fit_decay(record.signal_norm_step0),
        "gradflow/grad_ratio_step0": grad_ratio(record.grad_norm_step0),
    }


def run_report(record: RunRecord) -> str:
    """What one run found, in a few lines: its step-0 gradient flow next to theory, and its
    final accuracies. Printed at the end of every run."""
    cfg = record.config
    flow = gradflow(record)
    decay, ratio = flow["gradflow/decay_step0"], flow["gradflow/grad_ratio_step0"]
    study_cfg = config_from_record(cfg)
    theory = theory_decay_per_layer(study_cfg)
    lines = [f"result ({record.status}): depth={cfg['depth']} width={cfg['width']} init={cfg['init']} "
             + describe_net(study_cfg)]  # fmt: skip
    if math.isfinite(decay):
        hidden = cfg["depth"] - 2
        said = f"theory {theory:.3f}" if math.isfinite(theory) else "no plain mean-field theory here"
        lines.append(
            f"  step 0: signal decay {decay:.3f} decades/layer toward the input ({said}); over {hidden} "
            f"hidden layers its norm changes by x10^{-decay * hidden:.1f}"
            + (f" (theory x10^{-theory * hidden:.1f})" if math.isfinite(theory) else "")
        )
    else:
        lines.append("  step 0: signal decay not defined (fewer than 2 hidden layers, or a zero norm)")
    if math.isfinite(ratio):
        lines.append(f"  step 0: weight-gradient norm first/last layer = 10^{ratio:.2f}")
    final = record.final or {}
    accs = [f"{k} {final[k]:.4f}" for k in ("val_acc", "test_acc") if final.get(k) is not None]
    if record.epochs_done:
        lines.append(f"  after {record.epochs_done} epoch(s): " + (", ".join(accs) or "no accuracy"))
    else:
        lines.append("  no training (epochs=0): " + (", ".join(accs) or "no accuracy") + " at init")
    return "\n".join(lines)
