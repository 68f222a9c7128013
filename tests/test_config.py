import subprocess
import sys

import pytest
from hydra import compose, initialize_config_dir
from hydra.errors import ConfigCompositionException
from omegaconf.errors import OmegaConfBaseException

from slopestudy.config import ConfigError, Init, StudyConfig, register
from slopestudy.run.validate import to_study_config

from .helpers import ROOT

register()


def composed(*overrides):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def test_defaults_compose_to_typed_config():
    cfg = to_study_config(composed())
    assert isinstance(cfg, StudyConfig)
    assert cfg.init is Init.pytorch and cfg.data.name == "mnist"


def test_slope_zero_is_a_float():
    cfg = composed("slope=0")
    assert isinstance(cfg.slope, float) and cfg.slope == 0.0


@pytest.mark.parametrize(
    ("override", "expected"),
    [("slope=abc", "slope"), ("init=foo", "pytorch"), ("depth=ten", "depth"), ("nonsense=1", "nonsense")],
)
def test_type_errors_fail_at_composition(override, expected):
    with pytest.raises((ConfigCompositionException, OmegaConfBaseException)) as err:
        composed(override)
    assert expected in str(err.value) + str(err.value.__cause__)


@pytest.mark.parametrize(
    "override",
    ["depth=0", "width=-3", "slope=nan", "slope=-0.1", "lr=-1", "batch_size=0", "epochs=-1",
     "log_every=0", "data.train_size=0", "momentum=1.5"],
)  # fmt: skip
def test_range_errors_name_key_and_value(override):
    key, value = override.split("=")
    with pytest.raises(ConfigError) as err:
        to_study_config(composed(override))
    assert f"{key}=" in str(err.value) and value.lstrip("-") in str(err.value)
    assert "allowed" in str(err.value)


@pytest.mark.slow
def test_cli_rejects_bad_value_and_leaves_no_run_folder(tmp_path, python):
    proc = subprocess.run(
        [python, "train.py", "depth=0", f"hydra.run.dir={tmp_path}/run"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "depth=0" in proc.stderr and "allowed" in proc.stderr
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
def test_help_lists_every_key_with_its_default_and_meaning():
    from slopestudy.config import StudyConfig, field_docs, flat_dict

    proc = subprocess.run([sys.executable, "train.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    docs = field_docs(StudyConfig)
    for key in flat_dict(StudyConfig()):
        assert f"\n  {key} (" in proc.stdout, key
    assert "  slope (0.01): " + docs["slope"] in proc.stdout
    assert "  data.val_size (10000): Examples held out" in proc.stdout
    assert "+experiment=" in proc.stdout and "fair_tune" in proc.stdout
    for group in ("fix", "experiment"):  # every preset on a line of its own, with its comment
        for preset in (ROOT / "conf" / group).glob("*.yaml"):
            assert f"\n    {preset.stem:<24} " in proc.stdout, preset
    assert (
        "selu_lecun               SELU with LeCun init: self-normalizing by design (Klambauer et al. 2017)\n"
        in proc.stdout
    )
    assert "init (pytorch): Weight init: pytorch | kaiming | lecun |" in proc.stdout


def test_a_sweep_over_a_config_group_checks_each_jobs_own_tuned_cell(monkeypatch):
    """Each job is composed with its own `+fix=...` before its tuned lr is looked up (the check
    once validated the base config and stopped this sweep with 'no row for slope=0.01 ...')."""
    from slopestudy.config import sweep_job_overrides
    from slopestudy.run.validate import sweep_errors

    monkeypatch.chdir(ROOT)  # the preset's tuned.csv path is relative, as for a user
    task = ["+experiment=fixes_final", "depth=50", "+fix=leaky_he,leaky_residual"]
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        jobs = sweep_job_overrides(task, {"seed": "100,101", "+fix": "leaky_default"})
        assert len(jobs) == 4 and jobs[-1][-2:] == ["+fix=leaky_residual", "seed=101"]
        assert sweep_errors("config", jobs) == []
        bad = sweep_errors("config", sweep_job_overrides([*task[:1], "depth=70", task[2]], None))
    assert len(bad) == 2 and all("has no row" in e and "depth=70" in e for e in bad), bad


def test_readme_configuration_table_lists_every_key_of_the_schema():
    import dataclasses
    import re

    from slopestudy.config import DataConfig

    text = (ROOT / "README.md").read_text()
    table = text[text.index("| key | default | meaning |") :].split("\n\n", 1)[0]
    listed = {
        key for row in table.splitlines()[2:] for key in re.findall(r"`([a-z0-9_.]+)`", row.split("|")[1])
    }
    schema = {f.name for f in dataclasses.fields(StudyConfig)} | {
        f"data.{f.name}" for f in dataclasses.fields(DataConfig)
    }
    assert schema - listed == set(), "keys of the schema missing from README's configuration table"
    assert listed - schema == set(), "README's configuration table names keys the schema lacks"
