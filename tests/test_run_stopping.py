"""The run's stop handling (slopestudy.run.stopping), in-process: a stop signal that arrives while a
scheduler's handler (submitit's requeue on SIGUSR2) runs waits for that handler."""

import os
import signal
import sys

import pytest

from slopestudy.run.stopping import Interrupted, stop_on_signals


@pytest.fixture
def usr2_handler():
    """Install a handler on SIGUSR2 (as submitit does before the run starts); restore after."""
    before = signal.getsignal(signal.SIGUSR2)
    yield lambda h: signal.signal(signal.SIGUSR2, h)
    signal.signal(signal.SIGUSR2, before)


def test_sigterm_during_the_schedulers_handler_lets_it_finish_its_requeue(usr2_handler):
    steps = []

    def requeue_and_exit(_signum, _frame):  # what submitit does: requeue (SLURM sends SIGTERM), exit
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("requeued")  # reached only if the SIGTERM did not stop the handler
        sys.exit(-1)

    usr2_handler(requeue_and_exit)
    with pytest.raises(SystemExit), stop_on_signals():
        os.kill(os.getpid(), signal.SIGUSR2)
    assert steps == ["requeued"]
    assert signal.getsignal(signal.SIGUSR2) is requeue_and_exit  # restored after the block


def test_a_deferred_sigterm_stops_the_run_once_the_handler_returns(usr2_handler):
    steps = []

    def returns(_signum, _frame):
        os.kill(os.getpid(), signal.SIGTERM)
        steps.append("handler done")

    usr2_handler(returns)
    with pytest.raises(Interrupted) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGUSR2)
    assert steps == ["handler done"] and stopped.value.signum == signal.SIGTERM


def test_sigterm_outside_a_schedulers_handler_stops_at_once():
    with pytest.raises(Interrupted) as stopped, stop_on_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        signal.sigtimedwait([], 0)  # a bytecode boundary, where Python runs the handler
        pytest.fail("the run went on after SIGTERM")
    assert stopped.value.exit_code == 143
