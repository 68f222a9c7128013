"""Shared fixtures: tiny IDX files written by the tests, so the real torchvision loader runs."""

from __future__ import annotations

import queue
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
REAL_DATA = ROOT / "data"


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX format: magic (0, 0, uint8 code 0x08, ndim), big-endian dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    path.write_bytes(header + array.astype(np.uint8).tobytes())


def write_tiny_mnist(root: Path, n_train: int = 256, n_test: int = 128, seed: int = 0) -> Path:
    """A learnable toy MNIST: each class lights up its own band of pixels, plus noise."""
    rng = np.random.default_rng(seed)
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n)
        images = rng.integers(0, 60, (n, 28, 28))
        for i, c in enumerate(labels):
            images[i, 2 * c + 4 : 2 * c + 6, :] = 255
        write_idx(raw / f"{split}-images-idx3-ubyte", images)
        write_idx(raw / f"{split}-labels-idx1-ubyte", labels)
    return root


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory) -> Path:
    return write_tiny_mnist(tmp_path_factory.mktemp("tiny_data"))


@pytest.fixture
def python() -> str:
    return sys.executable


# --- children: started with default signals, never waited on without a deadline -------------
def default_signals() -> None:
    """preexec_fn: the child starts with SIGINT and SIGTERM at their default disposition.

    A shell without job control starts background commands with SIGINT ignored, and a child
    inherits that: a test's SIGINT would then be dropped and the test would hang. Every child a
    test signals is started through this, however pytest itself was started."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, signal.SIG_DFL)


def run_child(cmd: list[str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    """subprocess.run with captured text output; past `timeout` the test fails with that output."""
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=default_signals, **kw)  # fmt: skip
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"{' '.join(map(str, cmd))} ran past {timeout} s; its output:\n{_text(e.stdout)}{_text(e.stderr)}"
        )


def _text(data) -> str:
    return data.decode(errors="replace") if isinstance(data, bytes) else (data or "")


class Child:
    """A child process whose output a thread collects line by line, so waiting for a line or for
    the end always has a deadline, and a failure shows everything the child printed."""

    def __init__(self, cmd: list[str], reset_signals: bool = True, **kw) -> None:
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     preexec_fn=default_signals if reset_signals else None, **kw)  # fmt: skip
        self.pid = self.proc.pid
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self._queue.put(line)
        self._queue.put(None)  # end of output

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        """Return once a line containing `text` was printed; fail if the child ends or the
        deadline passes first."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                self.kill()
                pytest.fail(f"no line with {text!r} within {timeout} s; output so far:\n{self.output}")
            if line is None:
                self.proc.wait(timeout=30)
                pytest.fail(
                    f"the child ended (rc {self.proc.returncode}) before printing {text!r}:\n{self.output}"
                )
            self.lines.append(line)
            if text in line:
                return

    def finish(self, timeout: float = 120) -> int:
        """Wait for the end (all output read); past the deadline kill it and fail with its output."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"the child did not end within {timeout} s; its output:\n{self.output}")
        while (line := self._queue.get(timeout=30)) is not None:
            self.lines.append(line)
        return self.proc.returncode

    def send_signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=30)


def mlp(**kw):
    """build_mlp for the config keys given (the rest at their defaults)."""
    from slopestudy.config import StudyConfig
    from slopestudy.run.model import build_mlp

    return build_mlp(StudyConfig(**kw))


def theory_decay(init, slope, width=256, gain=2.0, depth=10, **kw):
    """profiles.theory_decay_per_layer for these keys (for LeakyReLU the decay does not depend on depth)."""
    from slopestudy.config import Init, StudyConfig
    from slopestudy.science.profiles import theory_decay_per_layer

    return theory_decay_per_layer(StudyConfig(init=Init(init), slope=slope, width=width, init_gain=gain,
                                              depth=depth, **kw))  # fmt: skip
