"""run.json: the one file per job folder that says what happened, written atomically."""

from __future__ import annotations

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


def same_config(a: dict, b: dict) -> bool:
    return {k: v for k, v in a.items() if k not in NOT_RESULT_KEYS} == {
        k: v for k, v in b.items() if k not in NOT_RESULT_KEYS
    }


def environment() -> dict:
    """Package versions and the git commit of the code, for run.json."""
    import platform
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for pkg in ("torch", "torchvision", "hydra-core", "tensorboard", "numpy", "slopestudy"):
        try:
            versions[pkg] = version(pkg)
        except PackageNotFoundError:
            versions[pkg] = None
    repo = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
                             capture_output=True, text=True, timeout=10)  # fmt: skip
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, timeout=10
        )
        commit = (
            head.stdout.strip() + ("+dirty" if out.stdout.strip() else "") if head.returncode == 0 else None
        )
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "packages": versions, "git_commit": commit}
