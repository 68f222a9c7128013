"""run.json: the one file per job folder that says what happened, written atomically; and the
lock that lets one process at a time write a job folder."""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
import tempfile
from pathlib import Path

RUN_JSON = "run.json"
# run.json status: running (or killed while running) | completed | diverged | failed | interrupted
DONE = ["completed", "diverged"]  # statuses that are results; a restart runs anything else again
# Keys that may differ between a run and its restart without changing any result.
NOT_RESULT_KEYS = {"threads"}


def _finite_or_none(obj):
    # JSON has no NaN/inf; a diverged run's last loss becomes null rather than invalid JSON.
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _finite_or_none(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite_or_none(v) for v in obj]
    return obj


def write_json_atomic(path: str | Path, data: dict) -> None:
    """Write to a temp file in the same folder, fsync, then rename over `path`."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(_finite_or_none(data), f, indent=1, allow_nan=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_run(folder: str | Path) -> dict | None:
    """The run.json of a job folder, or None when it is missing or unreadable."""
    try:
        return json.loads((Path(folder) / RUN_JSON).read_text())
    except (OSError, ValueError):
        return None


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
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("torch", "torchvision", "hydra-core", "tensorboard", "numpy", "slopestudy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    repo = PACKAGE_DIR.parents[1]
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
        "git_commit": commit,
        "git_dirty": dirty,
        "code_hash": tree_hash(PACKAGE_DIR, "*.py"),
        "config_hash": tree_hash(repo / "conf", "*.yaml"),
    }


PACKAGE_DIR = Path(__file__).resolve().parent


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
