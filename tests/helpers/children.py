"""Child processes a test starts: default signals, output collected by a thread, and a deadline
on every wait, so a hung child fails its test with everything it printed. A test that uses these
is marked `slow` (conftest.py fails one that is not)."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time

import pytest

from slopestudy.run.stopping import PAUSE_ENV, PAUSED_MESSAGE

from . import ROOT


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


# --- `python train.py` on the tiny IDX data ---------------------------------------------------
TINY = [
    "width=16",
    "batch_size=32",
    "probe_size=64",
    "data.fetch=false",
    "data.verify_md5=false",
    "data.val_size=64",
]


def train(tiny_root, *args, multirun=False, wait=True, extra_env=None, **kw):
    cmd = [sys.executable, "train.py", *(["-m"] if multirun else []), *TINY, *args]
    env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root), **(extra_env or {})}
    if not wait:
        return Child(cmd, cwd=ROOT, env=env)
    return run_child(cmd, cwd=ROOT, env=env, **kw)


def start_paused(tiny_root, *args, epoch=3):
    """Start a run that stops after `epoch` (fault injection) and return it once it says so.

    Waiting for the line waits for the event itself, however fast or slow the machine; the run
    blocks its stop signals before printing it, so a signal sent now cannot be lost."""
    child = train(tiny_root, *args, wait=False, extra_env={PAUSE_ENV: str(epoch)})
    child.wait_for(f"{PAUSED_MESSAGE} {epoch}")
    return child
