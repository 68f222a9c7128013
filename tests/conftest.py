"""Fixtures, and the rule of the fast tier: a test not marked `slow` may not start the project in
a child process (`make test-fast` runs `pytest -m "not slow"`). Helpers live in tests/helpers/."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from .helpers.data import write_tiny_mnist

# what a child of the project looks like: the interpreter, the CLI, or the cluster
_PROJECT_CHILD = ("python", "train.py", "slopestudy", "sbatch", "srun")


def _starts_the_project(args) -> bool:
    argv = [args] if isinstance(args, str | os.PathLike) else list(args)
    words = [os.path.basename(str(a)) for a in argv[:3]] + [str(a) for a in argv[:3]]
    return str(sys.executable) in map(str, argv[:1]) or any(w.startswith(_PROJECT_CHILD) for w in words)


@pytest.fixture(autouse=True)
def _fast_tests_start_no_child(request, monkeypatch):
    """Fail a test that starts the project in a child process without the `slow` mark, so the
    fast tier stays fast by construction (git and other tools the code calls are allowed)."""
    if request.node.get_closest_marker("slow"):
        return
    real = subprocess.Popen

    class Guarded(real):
        def __init__(self, args, *a, **kw):
            if _starts_the_project(args):
                pytest.fail(f"{request.node.nodeid} starts a child process ({args!r}): mark it slow")
            super().__init__(args, *a, **kw)

    monkeypatch.setattr(subprocess, "Popen", Guarded)


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture
def python() -> str:
    return sys.executable
