"""How a run stops: SIGINT and SIGTERM end it cleanly (status `interrupted`, checkpoint kept,
exit code 128 + signal), and the fault-injection pause that lets tests act at a chosen epoch."""

from __future__ import annotations

import logging
import os
import select
import signal
import threading
from contextlib import contextmanager

log = logging.getLogger("slopestudy.run.trainer")


# --- signals: SIGINT (Ctrl-C) and SIGTERM (`kill`, a scheduler) end a run the same way --------
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """A stop signal arrived: the run records `interrupted`, keeps its last checkpoint and ends
    with exit code 128 + signal number (130 for SIGINT, 143 for SIGTERM), as shells report it.
    A BaseException, like KeyboardInterrupt: no `except Exception` may swallow it."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def _ignored(sig: int) -> bool:
    # A shell without job control starts background commands with SIGINT ignored (POSIX), so
    # Ctrl-C in the terminal does not reach them; a run keeps such a disposition.
    return signal.getsignal(sig) is signal.SIG_IGN


# A scheduler's own handlers of these signals run inside the run (submitit's timeout handler on
# SIGUSR2 checkpoints the launcher's call, runs `scontrol requeue` and exits): SLURM's requeue sends
# SIGTERM while that handler still runs, and stopping there would cut the requeue short.
SCHEDULER_SIGNALS = (signal.SIGUSR1, signal.SIGUSR2)


@contextmanager
def stop_on_signals():
    """While the block runs, SIGINT and SIGTERM raise Interrupted once; a second signal during
    the cleanup that follows is ignored, so run.json and the events are always written.

    A stop signal that arrives while a scheduler's handler of SIGUSR1/SIGUSR2 runs (submitit's
    requeue at a time limit) waits for it: the handler finishes its requeue and ends the process
    itself (SystemExit, which the run records as interrupted), or, if it returns, the deferred
    signal then stops the run as usual."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers (KeyboardInterrupt still works there)
        return
    in_scheduler: list[bool] = []
    deferred: list[int] = []

    def ignore_further() -> None:
        for sig in handled:
            signal.signal(sig, signal.SIG_IGN)

    def stop(signum, _frame):
        if in_scheduler:
            deferred.append(signum)
            return
        ignore_further()
        raise Interrupted(signum)

    def deferring(handler):
        def run_scheduler_handler(signum, frame):
            in_scheduler.append(True)
            try:
                handler(signum, frame)
            except BaseException:
                ignore_further()  # the handler ends the process: let the cleanup finish
                raise
            finally:
                in_scheduler.pop()
            if deferred:
                ignore_further()
                raise Interrupted(deferred[0])

        return run_scheduler_handler

    handled = [sig for sig in STOP_SIGNALS if not _ignored(sig)]
    previous = {sig: signal.signal(sig, stop) for sig in handled}
    for sig in SCHEDULER_SIGNALS:
        handler = signal.getsignal(sig)
        if callable(handler):
            previous[sig] = signal.signal(sig, deferring(handler))
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


# Fault injection, for tests only: with this variable set to N, a run stops after epoch N's
# checkpoint and run.json are written, logs PAUSED_MESSAGE and waits: a stop signal ends it,
# SIGUSR1 lets it go on. A test then acts at a point it controls (kills it, fills the disk),
# however fast or slow the machine is.
PAUSE_ENV = "SLOPESTUDY_PAUSE_AFTER_EPOCH"
PAUSED_MESSAGE = "paused after epoch"


def pause_if_asked(epoch: int) -> None:
    if os.environ.get(PAUSE_ENV) != str(epoch):
        return
    # Wait on a pipe that Python's signal machinery writes to (set_wakeup_fd) rather than in
    # signal.pause(): a signal that arrives after the "paused" line but before the wait, or that
    # the kernel hands to another thread (torch and TensorBoard run their own), leaves a byte in
    # the pipe, so the wait never misses it. The handler of stop_on_signals then raises here.
    go_on: list[bool] = []
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
    previous_usr1 = signal.signal(signal.SIGUSR1, lambda *_: go_on.append(True))
    try:
        log.warning("%s %d (%s is set): waiting for a signal", PAUSED_MESSAGE, epoch, PAUSE_ENV)
        while not go_on:
            select.select([read_end], [], [])
            os.read(read_end, 64)  # an ignored signal writes nothing
    finally:
        signal.signal(signal.SIGUSR1, previous_usr1)
        signal.set_wakeup_fd(previous)
        os.close(read_end)
        os.close(write_end)
