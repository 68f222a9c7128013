"""The cluster path on a real SLURM: `hydra/launcher=slurm` (Hydra's submitit plugin) submitting
sbatch job arrays to a one-node cluster (scripts/slurm_up.sh), a job requeued mid-run, and a job
that reaches its time limit.

Skipped, with the reason, where no SLURM cluster with an idle node on this host is reachable.
Every wait has a deadline that fails with what the scheduler and the jobs said (squeue, the
sweep's controller output, the jobs' submitit logs); every job is cancelled at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from slopestudy.run.stopping import PAUSE_ENV, PAUSED_MESSAGE
from slopestudy.summary.summarize import summarize

from .helpers import ROOT

pytestmark = pytest.mark.slurm

TINY = ["width=16", "batch_size=32", "probe_size=64", "data.fetch=false", "data.verify_md5=false",
        "data.val_size=64"]  # fmt: skip
METRICS = ["val_acc", "val_loss", "test_acc", "test_loss", "train_loss", "decay_step0", "grad_ratio_step0",
           "dead_frac_end"]  # fmt: skip
# (b) and (c): one job, stopped after epoch 1 of 3 by the scheduler, then resumed.
RESUME_ARGS = ["depth=3", "epochs=3", "seed=3", "log_every=2"]


def _cluster() -> tuple[str | None, str]:
    """(partition, "") where an idle node of a reachable cluster is this host, else (None, why)."""
    hint = "scripts/slurm_up.sh starts a one-node cluster on this machine (as root)"
    if not all(shutil.which(c) for c in ("sinfo", "sbatch", "scontrol")):
        return None, f"no SLURM client (sinfo/sbatch/scontrol not on PATH); {hint}"
    try:
        ping = _cmd("scontrol", "ping", timeout=20)  # answers at once; sinfo retries for ~10 s
        if ping.returncode != 0:
            said = (ping.stdout or ping.stderr).strip().splitlines()[:1]
            return None, f"no SLURM controller answers (scontrol ping: {' '.join(said)}); {hint}"
        out = _cmd("sinfo", "-h", "-N", "-o", "%N %t %P", timeout=20)
    except subprocess.TimeoutExpired:
        return None, f"scontrol/sinfo did not answer within 20 s; {hint}"
    if out.returncode != 0:
        return None, f"sinfo failed: {(out.stderr or out.stdout).strip()}; {hint}"
    rows = [line.split() for line in out.stdout.splitlines() if len(line.split()) == 3]
    host = socket.gethostname().split(".")[0]
    # The tests share their tmp folders with the jobs, so the node must be this machine.
    usable = [(state, part) for node, state, part in rows if node == host and state in ("idle", "mix")]
    if not usable:
        listed = out.stdout.strip() or "no nodes"
        return None, f"no idle SLURM node on this host {host!r} (sinfo: {listed}); {hint}"
    return usable[0][1].rstrip("*"), ""


@pytest.fixture(scope="module")
def partition() -> str:
    part, why = _cluster()
    if part is None:
        pytest.skip(why)
    return part


def _tail(path: Path, n: int = 2500) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as e:
        return f"({e})"
    # submitit's status watcher warns on every poll when the cluster has no accounting (sacct)
    lines = [line for line in text.splitlines() if "sacct" not in line and "accounting storage" not in line]
    return "\n".join(lines)[-n:]


def _cmd(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)


class Sweep:
    """`python train.py -m hydra/launcher=slurm …` in the background: the sweep's controller,
    which submits the job array and waits for it. Its jobs carry a unique name, so squeue and
    scancel see only them."""

    def __init__(self, partition: str, tiny_root: Path, folder: Path, args: list[str],
                 launcher: tuple[str, ...] = (), env: dict | None = None) -> None:  # fmt: skip
        self.dir = folder
        self.name = f"slopestudy-test-{uuid.uuid4().hex[:8]}"
        cmd = [sys.executable, "train.py", "-m", "hydra/launcher=slurm",
               f"hydra.launcher.partition={partition}", f"hydra.launcher.name={self.name}", *launcher,
               *TINY, *args, f"hydra.sweep.dir={folder}"]  # fmt: skip
        full_env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root), **(env or {})}
        full_env.pop("OMP_NUM_THREADS", None)  # threads come from SLURM_CPUS_PER_TASK
        folder.parent.mkdir(parents=True, exist_ok=True)
        self.log = folder.parent / f"{folder.name}.controller.log"
        with open(self.log, "w") as out:  # a file, not a pipe: nothing blocks on a full buffer
            self.proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT)

    # --- what the scheduler and the jobs say ---------------------------------------------------
    def squeue(self) -> list[tuple[str, str, str]]:
        """(job id, state, reason) of this sweep's jobs still known to squeue."""
        out = _cmd("squeue", "-h", "-n", self.name, "-o", "%i %T %r").stdout
        return [tuple(line.split(maxsplit=2)) for line in out.splitlines() if line.strip()]

    def job_logs(self) -> str:
        """submitit's stdout and stderr of every job, in one string."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.dir.glob(".submitit/*/*_log.*")))

    def diagnostics(self) -> str:
        parts = [f"--- controller ({' '.join(map(str, self.proc.args[1:4]))} …), exit {self.proc.poll()}:",
                 _tail(self.log), "--- squeue -n " + self.name + ":",
                 _cmd("squeue", "-n", self.name, "-o", "%i %T %r %M %l %S").stdout]  # fmt: skip
        for log in sorted(self.dir.glob(".submitit/*/*_log.*")):
            parts += [f"--- {log.relative_to(self.dir)}:", _tail(log)]
        for run in sorted(self.dir.rglob("run.json")):
            record = json.loads(run.read_text())
            parts.append(f"--- {run.relative_to(self.dir)}: status {record.get('status')}, "
                         f"epochs_done {record.get('epochs_done')}")  # fmt: skip
        return "\n".join(parts)

    def fail(self, why: str) -> None:
        pytest.fail(f"{why}\n{self.diagnostics()}", pytrace=False)

    # --- waiting, always with a deadline -------------------------------------------------------
    def wait_until(self, what: str, check, timeout: float):
        """Poll `check()` until it returns something truthy; fail (with the logs) at the deadline
        or when the controller exits first."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.proc.poll() is not None:
                self.fail(f"the sweep ended (exit {self.proc.returncode}) before: {what}")
            time.sleep(0.5)
        self.fail(f"timed out after {timeout:.0f} s waiting for: {what}")

    def wait(self, timeout: float, give_up=lambda: None) -> int:
        """The sweep's exit code; fails at the deadline, or as soon as give_up() says why."""
        deadline = time.monotonic() + timeout
        while self.proc.poll() is None:
            why = give_up()
            if why:
                self.fail(why)
            if time.monotonic() > deadline:
                self.fail(f"the sweep did not finish within {timeout:.0f} s")
            time.sleep(0.5)
        return self.proc.returncode

    def finish_resumed(self, job_dir: Path, timeout: float) -> None:
        """Wait for the sweep to succeed; a requeued run that starts over instead of resuming
        reaches its pause after epoch 1 a second time, and waits there: fail at once then."""

        def started_over():
            if (job_dir / "train.log").read_text(errors="replace").count(PAUSED_MESSAGE) > 1:
                return "the requeued job started over (paused after epoch 1 again) instead of resuming"
            return None

        rc = self.wait(timeout, give_up=started_over)
        if rc != 0:
            self.fail(f"the sweep exited {rc}")

    def paused_job(self, timeout: float) -> Path:
        """The job folder whose run stopped at the fault-injection point (PAUSE_ENV)."""

        def paused():
            for log in self.dir.rglob("train.log"):
                if PAUSED_MESSAGE in log.read_text(errors="replace"):
                    return log.parent
            return None

        return self.wait_until(f"a job logs '{PAUSED_MESSAGE} 1'", paused, timeout)

    def requeued_and_restarted(self, job_dir: Path, timeout: float) -> dict:
        """Once the killed job is pending again, let it start at once (SLURM holds a requeued
        job back by its credential lifetime, 120 s by default) and return the run.json it left."""

        def pending():
            return [j for j in self.squeue() if j[1] == "PENDING"]

        job_id, _, reason = self.wait_until("the job to be requeued (PENDING)", pending, timeout)[0]
        left = json.loads((job_dir / "run.json").read_text())  # the old process has ended
        mid = summarize([job_dir], self.dir.parent / "mid", figures=False)
        left["summary_status"] = mid.runs["status"][0]
        if reason == "BeginTime":
            _cmd("scontrol", "update", f"jobid={job_id}", "starttime=now")
        return left

    def cancel(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        if shutil.which("scancel"):
            _cmd("scancel", "-n", self.name)


@pytest.fixture
def sweeps():
    """Start sweeps with sweeps(...); whatever happens, their controllers and jobs are ended."""
    started: list[Sweep] = []

    def start(*args, **kwargs) -> Sweep:
        started.append(Sweep(*args, **kwargs))
        return started[-1]

    yield start
    for sweep in started:
        sweep.cancel()


def local(tiny_root: Path, *args: str, multirun: bool = False) -> subprocess.CompletedProcess:
    """The same runs without SLURM, one thread like the SLURM jobs (cpus_per_task=1)."""
    cmd = [sys.executable, "train.py", *(["-m"] if multirun else []), *TINY, *args, "threads=1"]
    env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="module")
def reference(tiny_root, tmp_path_factory) -> dict:
    """RESUME_ARGS run uninterrupted, locally."""
    folder = tmp_path_factory.mktemp("reference") / "run"
    local(tiny_root, *RESUME_ARGS, f"hydra.run.dir={folder}")
    return json.loads((folder / "run.json").read_text())


def timeless(history: list[dict]) -> list[dict]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def assert_resumed_identically(sweep: Sweep, job_dir: Path, left: dict, reference: dict) -> None:
    # Stopped after epoch 1 and requeued: the record is no result, and the summary says so.
    assert left["epochs_done"] == 1 and left["summary_status"] == "interrupted", left
    record = json.loads((job_dir / "run.json").read_text())
    if record.get("resumed_at_step") != [record["steps_per_epoch"]]:
        sweep.fail(f"the requeued job did not resume from epoch 1's checkpoint "
                   f"(resumed_at_step {record.get('resumed_at_step')})")  # fmt: skip
    assert record["status"] == "completed"
    assert "resumed after epoch 1" in (job_dir / "train.log").read_text()
    assert sweep.job_logs().count("Starting with JobEnvironment") == 2  # one job, started twice
    assert record["final"] == reference["final"]  # as if never interrupted
    assert timeless(record["history"]) == timeless(reference["history"])
    assert not (job_dir / "checkpoint.pt").exists()


@pytest.mark.slow
def test_sweep_through_slurm_completes_and_matches_local(partition, tiny_root, tmp_path, sweeps):
    grid = ["depth=2,3", "slope=0,0.2", "epochs=1"]
    sweep = sweeps(partition, tiny_root, tmp_path / "slurm", grid)
    rc = sweep.wait(timeout=300)
    if rc != 0:
        sweep.fail(f"the sweep exited {rc}")
    local(tiny_root, *grid, f"hydra.sweep.dir={tmp_path / 'local'}", multirun=True)

    runs = [json.loads(p.read_text()) for p in (tmp_path / "slurm").rglob("run.json")]
    assert len(runs) == 4 and all(r["status"] == "completed" for r in runs)
    assert all(r["threads"] == 1 for r in runs)  # SLURM_CPUS_PER_TASK=1 reached torch
    # each run was its own task of one job array, and each task ended cleanly
    tasks = sorted((tmp_path / "slurm" / ".submitit").glob("[0-9]*_[0-9]*"))
    assert len(tasks) == 4 and len({t.name.split("_")[0] for t in tasks}) == 1, tasks
    for task in tasks:
        assert "Job completed successfully" in "".join(p.read_text() for p in task.glob("*_log.*")), task

    keys = ["depth", "slope"]
    on_slurm = summarize([tmp_path / "slurm"], figures=False)
    here = summarize([tmp_path / "local"], figures=False)
    a = on_slurm.runs.sort_values(keys).reset_index(drop=True)
    b = here.runs.sort_values(keys).reset_index(drop=True)
    assert a["status"].tolist() == b["status"].tolist() == ["completed"] * 4
    assert a[keys + METRICS].equals(b[keys + METRICS]), (a[keys + METRICS], b[keys + METRICS])
    assert on_slurm.main_table() == here.main_table()


@pytest.mark.slow
def test_requeued_job_resumes_from_its_checkpoint(partition, tiny_root, tmp_path, sweeps, reference):
    sweep = sweeps(partition, tiny_root, tmp_path / "sweep", RESUME_ARGS, env={PAUSE_ENV: "1"})
    job_dir = sweep.paused_job(timeout=180)
    [(job_id, state, _)] = sweep.squeue()
    assert state == "RUNNING"
    # what an operator or a preemption does: SLURM sends SIGTERM, SIGKILL after KillWait, and
    # puts the job back in the queue with the same id, script and environment
    requeue = _cmd("scontrol", "requeue", job_id)
    assert requeue.returncode == 0, requeue.stderr
    left = sweep.requeued_and_restarted(job_dir, timeout=120)
    # the run's own SIGTERM handling (submitit only logs SIGTERM): interrupted, checkpoint kept
    assert left["status"] == "interrupted", left["status"]
    sweep.finish_resumed(job_dir, timeout=240)
    assert_resumed_identically(sweep, job_dir, left, reference)


@pytest.mark.slow
def test_job_at_its_time_limit_is_requeued_by_submitit_and_completes(
    partition, tiny_root, tmp_path, sweeps, reference
):
    # A 1-minute limit, USR2 5 s before it (SLURM checks limits every 30 s, so it comes 25-55 s
    # after the start): submitit's handler checkpoints the launcher's call, runs
    # `scontrol requeue` and exits; the run keeps epoch 1's checkpoint.
    limits = ("hydra.launcher.timeout_min=1", "hydra.launcher.signal_delay_s=5",
              "hydra.launcher.max_num_timeout=1")  # fmt: skip
    pause = {PAUSE_ENV: "1"}
    sweep = sweeps(partition, tiny_root, tmp_path / "sweep", RESUME_ARGS, launcher=limits, env=pause)
    job_dir = sweep.paused_job(timeout=120)
    # What a user cares about: the job goes back to the queue, resumes from epoch 1's checkpoint
    # and ends as if never stopped (assert_resumed_identically). SLURM's requeue sends SIGTERM
    # while submitit's handler is still inside `scontrol requeue`; the run defers it
    # (signals.stop_on_signals), so the handler finishes and says so in the job's log.
    left = sweep.requeued_and_restarted(job_dir, timeout=150)
    log = (job_dir / "train.log").read_text()  # the run's and submitit's lines, in order
    if log.find("Caught signal SIGUSR2") < log.find(PAUSED_MESSAGE):
        sweep.fail("USR2 came before the run reached epoch 1 (a slow start): nothing mid-run was tested")
    assert "this job is timed-out" in log
    # submitit ends the process with sys.exit after its requeue: the run records "interrupted"
    # ("running" if read while the old process still writes; the summary reads both as stopped)
    assert left["status"] in ("running", "interrupted"), left["status"]
    sweep.finish_resumed(job_dir, timeout=240)
    assert_resumed_identically(sweep, job_dir, left, reference)
    assert "Requeued job" in sweep.job_logs()  # the SIGTERM waited for submitit's requeue
