"""One run in-process (run/lifecycle.py, run/records.py): what it records, that it repeats itself
exactly, and how a divergence ends it. No process boundary is under test here, so no child."""

import json
from importlib.metadata import version

from slopestudy.config import DataConfig, StudyConfig
from slopestudy.run import lifecycle
from slopestudy.run.records import RUN_JSON, RunRecord, Status, read_run, write_run
from slopestudy.run.trainer import Run


def tiny_config(tiny_root, **kw) -> StudyConfig:
    data = DataConfig(root=str(tiny_root), fetch=False, verify_md5=False, val_size=64)
    return StudyConfig(**{"depth": 4, "width": 16, "batch_size": 32, "probe_size": 64, "data": data, **kw})


def test_same_config_and_seed_give_identical_records(tiny_root, tmp_path):
    cfg = tiny_config(tiny_root, epochs=2, seed=7)
    a, b = (lifecycle.execute(Run(cfg, tmp_path / name)) for name in ("a", "b"))
    assert a.status == b.status == Status.completed and a.epochs_done == 2
    for key in ("final", "grad_norm_step0", "signal_norm_step0", "grad_norm_epoch_mean"):
        assert getattr(a, key) == getattr(b, key), key
    untimed = [[{k: v for k, v in e.items() if k != "seconds"} for e in r.history] for r in (a, b)]
    assert untimed[0] == untimed[1]  # every evaluation, not only the last
    assert a.env["packages"]["torch"] == version("torch") and a.env["cpu"]["torch_capability"]
    assert read_run(tmp_path / "a") == a  # run.json is the record, read back by the same class
    assert not (tmp_path / "a" / "checkpoint.pt").exists()  # done: nothing to resume


def test_a_huge_lr_ends_the_run_as_diverged_with_its_metrics_so_far(tiny_root, tmp_path):
    record = lifecycle.execute(Run(tiny_config(tiny_root, epochs=3, lr=1e6, log_every=1), tmp_path))
    assert record.status == Status.diverged and isinstance(record.diverged_at_step, int)
    assert record.step < 3 * record.steps_per_epoch  # ended early
    assert record.history[0]["test_acc"] is not None  # step 0's metrics are kept
    assert json.loads((tmp_path / RUN_JSON).read_text())["status"] == "diverged"


def test_a_record_reads_older_and_newer_files(tmp_path):
    write_run(tmp_path, RunRecord(config={"depth": 3}, status=Status.completed, final={"test_acc": 0.9}))
    data = json.loads((tmp_path / RUN_JSON).read_text())
    assert "error" not in data and "diverged_at_step" not in data  # unset fields stay out of the file
    data.update(a_key_from_a_newer_version=1)
    del data["history"]  # a key an older version did not write
    (tmp_path / RUN_JSON).write_text(json.dumps(data))
    record = read_run(tmp_path)
    assert record.status == Status.completed and record.history == [] and record.final == {"test_acc": 0.9}
    (tmp_path / RUN_JSON).write_text(json.dumps({"status": "no such status"}))
    assert read_run(tmp_path).status == Status.unreadable
    (tmp_path / RUN_JSON).write_text("{not json")
    assert read_run(tmp_path) is None
