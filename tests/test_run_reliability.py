"""Faults injected for real: huge learning rates, killed processes, corrupt files, bad values."""

import json
import os
import shutil
import signal
import sys

import pytest
import torch

from slopestudy.run.stopping import PAUSE_ENV, PAUSED_MESSAGE
from slopestudy.summary.summarize import summarize

from .helpers import ROOT
from .helpers.children import TINY, Child, run_child, start_paused, train
from .helpers.runs import load

pytestmark = pytest.mark.slow  # every test here starts train.py, a sweep or the cluster


@pytest.fixture
def sweep_dir(tmp_path):
    return tmp_path / "sweep"


def test_huge_lr_is_recorded_as_diverged(tiny_root, sweep_dir):
    sweep = f"hydra.sweep.dir={sweep_dir}"
    # hist_every=1: a histogram of the exploding gradients is due at every step (it once made
    # such a run "failed" instead of "diverged")
    proc = train(tiny_root, "lr=0.01,1e6", "depth=4", "epochs=3", "log_every=1", "hist_every=1", sweep,
                 multirun=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr  # diverging is a result, not a failure
    runs = {load(p)["config"]["lr"]: load(p) for p in sweep_dir.rglob("run.json")}
    bad, good = runs[1e6], runs[0.01]
    assert bad["status"] == "diverged" and isinstance(bad["diverged_at_step"], int)
    assert bad["step"] < 3 * bad["steps_per_epoch"]  # ended early
    assert bad["history"][0]["test_acc"] is not None  # metrics up to then are kept
    assert good["status"] == "completed"
    assert "DIVERGED" in proc.stdout
    assert not list(sweep_dir.rglob("checkpoint.pt"))  # finished runs leave no checkpoint


def test_runtime_failure_is_isolated_and_listed(tiny_root, sweep_dir):
    # Fashion-MNIST is not in the tiny data root and fetching is off: that job fails at load.
    proc = train(tiny_root, "data=mnist,fashion", "depth=3", "epochs=1", f"hydra.sweep.dir={sweep_dir}",
                 multirun=True)  # fmt: skip
    assert proc.returncode == 1
    runs = {load(p)["config"]["data"]["name"]: load(p) for p in sweep_dir.rglob("run.json")}
    assert runs["mnist"]["status"] == "completed"
    assert runs["fashion"]["status"] == "failed" and "DataError" in runs["fashion"]["error"]
    assert "Traceback" in runs["fashion"]["traceback"]
    assert "1 job(s) failed" in proc.stdout and "data=fashion" in proc.stdout


def test_rerun_skips_completed_and_reruns_failed(tiny_root, sweep_dir):
    args = ["depth=2,3", "epochs=1", f"hydra.sweep.dir={sweep_dir}"]
    assert train(tiny_root, *args, multirun=True).returncode == 0
    jobs = sorted(sweep_dir.rglob("run.json"))
    # Make one job look failed; the other stays completed.
    failed = load(jobs[0]) | {"status": "failed", "error": "injected"}
    jobs[0].write_text(json.dumps(failed))
    mtime = jobs[1].stat().st_mtime_ns
    proc = train(tiny_root, *args, multirun=True)
    assert proc.returncode == 0
    assert "skipping" in proc.stdout
    assert jobs[1].stat().st_mtime_ns == mtime  # untouched
    assert load(jobs[0])["status"] == "completed"  # run again


def timeless(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


# status in run.json and exit code after each signal: SIGKILL leaves "running" (nothing can
# run), SIGINT and SIGTERM end the run cleanly with 128 + the signal number.
AFTER_SIGNAL = {
    signal.SIGKILL: ("running", -signal.SIGKILL),
    signal.SIGINT: ("interrupted", 130),
    signal.SIGTERM: ("interrupted", 143),
}


RESUMED_ARGS = ["depth=3", "epochs=6", "log_every=2", "seed=3"]


@pytest.fixture(scope="module")
def uninterrupted(tiny_root, tmp_path_factory):
    """The run every killed-and-resumed run must reproduce: computed once per module (the three
    signals resume the same config; one fewer child each keeps the suite fast on a loaded machine)."""
    ref_dir = tmp_path_factory.mktemp("uninterrupted")
    proc = train(tiny_root, *RESUMED_ARGS, f"hydra.run.dir={ref_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return load(ref_dir / "run.json")


@pytest.mark.parametrize("sig", list(AFTER_SIGNAL), ids=lambda s: s.name)
def test_killed_run_leaves_readable_files_and_resumes_identically(tiny_root, tmp_path, sig, uninterrupted):
    args, run_dir = RESUMED_ARGS, tmp_path / "run"
    child = start_paused(tiny_root, *args, f"hydra.run.dir={run_dir}", epoch=3)
    child.send_signal(sig)
    status, code = AFTER_SIGNAL[sig]
    assert child.finish() == code, child.output
    record = load(run_dir / "run.json")  # valid JSON whenever the process died
    assert record["status"] == status
    assert record["epochs_done"] == 3
    s = summarize([run_dir], figures=False)
    assert s.runs["status"].tolist() == ["interrupted"]
    torch.load(run_dir / "checkpoint.pt", weights_only=True)  # loads safely
    if sig != signal.SIGKILL:  # the events were flushed: the last epoch's accuracy is readable
        assert f"interrupted by {sig.name}" in child.output
        assert tb_scalars(run_dir, "5_acc/test")[-1] == record["history"][-1]["test_acc"]

    proc = train(tiny_root, *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed after epoch 3" in proc.stdout
    resumed, ref = load(run_dir / "run.json"), uninterrupted
    assert resumed["status"] == "completed" and resumed["resumed_at_step"]
    assert resumed["final"] == ref["final"]  # bit-identical to the uninterrupted run
    assert timeless(resumed["history"]) == timeless(ref["history"])


def tb_scalars(run_dir, tag):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return [pytest.approx(e.value, rel=1e-6) for e in acc.Scalars(tag)]


def test_signals_reach_the_run_when_pytest_itself_ignores_sigint(tiny_root, tmp_path):
    """What a background job of a script sees: SIGINT ignored, inherited by every child. The
    test helpers restore the default disposition, so the run still stops on SIGINT; and a run
    that really inherits an ignored SIGINT keeps ignoring it (and still stops on SIGTERM)."""
    args = ["depth=3", "epochs=4", "seed=1"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        child = start_paused(tiny_root, *args, f"hydra.run.dir={tmp_path / 'a'}", epoch=1)
        child.send_signal(signal.SIGINT)
        assert child.finish() == 130, child.output
        env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root), PAUSE_ENV: "1"}
        cmd = [sys.executable, "train.py", *TINY, *args, f"hydra.run.dir={tmp_path / 'b'}"]
        # started without the helper's reset: SIGINT stays ignored in the run
        ignoring = Child(cmd, reset_signals=False, cwd=ROOT, env=env)
        ignoring.wait_for(PAUSED_MESSAGE)
        ignoring.send_signal(signal.SIGINT)  # dropped
        ignoring.send_signal(signal.SIGTERM)  # ends it: 143, not SIGINT's 130
        assert ignoring.finish() == 143, ignoring.output
    finally:
        signal.signal(signal.SIGINT, previous)
    assert load(tmp_path / "a" / "run.json")["status"] == "interrupted"
    assert load(tmp_path / "b" / "run.json")["status"] == "interrupted"


def test_second_process_on_a_job_folder_leaves_it_alone(tiny_root, tmp_path):
    args = ["depth=3", "epochs=4", "seed=5", f"hydra.run.dir={tmp_path / 'run'}"]
    first = start_paused(tiny_root, *args, epoch=1)  # holds the folder, mid-run
    run_json = tmp_path / "run" / "run.json"
    before = (run_json.read_bytes(), sorted(p.name for p in (tmp_path / "run").iterdir()))
    second = train(tiny_root, *args)
    assert second.returncode == 3
    assert f"is in use by process {first.pid}" in second.stderr
    assert (run_json.read_bytes(), sorted(p.name for p in (tmp_path / "run").iterdir())) == before
    # In a summary the held folder reads as running, not as interrupted.
    assert summarize([tmp_path / "run"], figures=False).runs["status"].tolist() == ["running"]
    first.kill()  # SIGKILL: the OS drops the lock with the process
    again = train(tiny_root, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resumed after epoch 1" in again.stdout and load(run_json)["status"] == "completed"


def test_multirun_skips_a_job_held_by_another_process(tiny_root, sweep_dir):
    sweep = [f"hydra.sweep.dir={sweep_dir}", "epochs=2", "seed=0"]
    name = "batch_size=32,data.val_size=64,depth={},epochs=2,width=16"  # from the overrides
    job = sweep_dir / name.format(3) / "seed=0"
    first = start_paused(tiny_root, "depth=3", f"hydra.run.dir='{job}'", "epochs=2", epoch=1)
    proc = train(tiny_root, "depth=2,3", *sweep, multirun=True)
    first.kill()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 job(s) skipped, in use by another process" in proc.stdout and f"pid {first.pid}" in proc.stdout
    assert load(sweep_dir / name.format(2) / "seed=0" / "run.json")["status"] == "completed"
    assert load(job / "run.json")["epochs_done"] == 1  # the other process's state, untouched


def test_altered_data_file_fails_md5_with_the_file_named(tiny_root, tmp_path):
    cmd = [
        sys.executable,
        "train.py",
        "data.fetch=false",
        f"data.root={tiny_root}",
        f"hydra.run.dir={tmp_path}",
    ]
    proc = run_child(cmd, timeout=120, cwd=ROOT)
    assert proc.returncode != 0
    assert "train-images-idx3-ubyte fails its MD5 check" in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "override",
    ["device=cuda", "data.train_size=70000", "batch_size=0", "lr=-1", "slope=nan", "width=-3"],
)
def test_bad_value_exits_before_work_with_one_line(tiny_root, tmp_path, override):
    if override == "device=cuda" and torch.cuda.is_available():
        pytest.skip("a GPU is present")
    proc = train(tiny_root, override, f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    key, value = override.split("=")
    assert proc.stderr.startswith(f"error: invalid config: {key}=") and "allowed" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "run").exists()


def test_finished_run_recorded_before_a_key_existed_is_skipped_after_the_upgrade(tiny_root, tmp_path):
    args = ["depth=3", "epochs=1", "seed=2", f"hydra.run.dir={tmp_path / 'run'}"]
    assert train(tiny_root, *args).returncode == 0
    run_json = tmp_path / "run" / "run.json"
    # The record as the code before `bias_shift` wrote it: the same run, without that key.
    older = load(run_json)
    del older["config"]["bias_shift"]
    run_json.write_text(json.dumps(older))
    proc = train(tiny_root, *args)
    assert proc.returncode == 0 and "already completed with this config, skipping" in proc.stdout
    assert load(run_json) == older  # untouched
    # A real difference in the new key still reruns the job.
    proc = train(tiny_root, *args, "bias_shift=0.1")
    assert proc.returncode == 0 and "skipping" not in proc.stdout
    assert load(run_json)["config"]["bias_shift"] == 0.1


def test_run_records_its_code_and_says_so_first(tiny_root, tmp_path):
    proc = train(tiny_root, "depth=3", "epochs=1", f"hydra.run.dir={tmp_path / 'run'}")
    env = load(tmp_path / "run" / "run.json")["env"]
    assert len(env["code_hash"]) == 16 and len(env["config_hash"]) == 16
    assert isinstance(env["git_dirty"], bool)
    assert env["git_commit"].endswith("+dirty") == env["git_dirty"]
    assert env["cpu"]["machine"] and env["cpu"]["torch_capability"]  # bit-identical reruns need the same CPU
    first = next(line for line in proc.stdout.splitlines() if "slopestudy" in line)
    assert f"source {env['code_hash']}" in first
    assert ("DIRTY TREE" in first) == env["git_dirty"]


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs: a disk that a test can fill. Skipped where it cannot be mounted."""
    disk = tmp_path / "disk"
    disk.mkdir()
    if os.geteuid() != 0 or run_child(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(disk)],
                                      timeout=30).returncode != 0:  # fmt: skip
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield disk
    run_child(["umount", "-l", str(disk)], timeout=30)


def fill(disk):
    """Write zeros until the filesystem refuses: ENOSPC from here on."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass
    return filler


def test_full_disk_fails_cleanly_and_the_rerun_resumes_identically(tiny_root, tmp_path, small_disk):
    args = ["depth=3", "epochs=4", "log_every=2", "seed=4"]
    ref_dir, run_dir = tmp_path / "ref", small_disk / "run"
    assert train(tiny_root, *args, f"hydra.run.dir={ref_dir}").returncode == 0
    child = start_paused(tiny_root, *args, f"hydra.run.dir={run_dir}", epoch=2)
    filler = fill(small_disk)
    child.send_signal(signal.SIGUSR1)  # go on: epoch 3 meets a full disk
    assert child.finish() == 1, child.output
    errors = [line for line in child.output.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {run_dir}: no space left on device; the last finished epoch's checkpoint "
                      "is kept: free space and rerun the same command to resume"], child.output  # fmt: skip
    assert "Traceback" not in child.output  # TensorBoard's writer thread stays quiet too
    record = load(run_dir / "run.json")  # still valid JSON: the atomic write never left half a file
    assert record["epochs_done"] == 2 and record["status"] in ("running", "failed")
    state = torch.load(run_dir / "checkpoint.pt", weights_only=True)  # the epoch-2 checkpoint, intact
    assert state["step"] == 2 * record["steps_per_epoch"]
    assert not (run_dir / "checkpoint.tmp").exists()

    filler.unlink()  # space freed: the same command resumes
    proc = train(tiny_root, *args, f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resumed after epoch 2" in proc.stdout
    resumed, ref = load(run_dir / "run.json"), load(ref_dir / "run.json")
    assert resumed["final"] == ref["final"] and timeless(resumed["history"]) == timeless(ref["history"])


def test_summary_names_unreadable_records_and_mixed_code(tiny_root, sweep_dir):
    assert (
        train(tiny_root, "depth=2,3", "epochs=1", f"hydra.sweep.dir={sweep_dir}", multirun=True).returncode
        == 0
    )
    first, second = sorted(sweep_dir.rglob("run.json"))
    record = load(first)
    record["env"]["code_hash"] = "0123456789abcdef"  # as if the source changed between jobs
    first.write_text(json.dumps(record))
    second.write_text('{"status": "compl')  # cut short: not JSON
    s = summarize([sweep_dir], figures=False)
    assert sorted(s.runs["status"]) == ["completed", "unreadable"]
    notes = "\n".join(s.notes)
    assert f"UNREADABLE: {second.parent.relative_to(sweep_dir)}" in notes and "not valid JSON" in notes
    assert "MIXED CODE" not in notes  # one readable run: one version
    third = sweep_dir / "extra"
    shutil.copytree(first.parent, third)
    record["env"]["code_hash"] = "fedcba9876543210"
    (third / "run.json").write_text(json.dumps(record))
    assert "MIXED CODE: these runs ran 2 versions" in "\n".join(summarize([sweep_dir], figures=False).notes)
