"""The boundary: Hydra's composed config -> a validated StudyConfig that fits the machine, for one
job (`to_study_config`, with a tuned.csv applied) or for every job of a sweep before the first
starts (`sweep_errors`)."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from slopestudy.config import SLOPED_ACTS, ConfigError, Init, SlopeRule, StudyConfig, flat_dict
from slopestudy.run.resources import check_fits, pick_device
from slopestudy.science import theory


def to_study_config(cfg: DictConfig) -> StudyConfig:
    """Hydra's composed config -> validated StudyConfig (raises ConfigError)."""
    try:
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as e:  # e.g. a missing value
        raise ConfigError(f"invalid config: {e}") from e
    assert isinstance(obj, StudyConfig)
    resolve_slope(obj)
    if obj.tuned:
        apply_tuned(obj)
    check_fits(obj, pick_device(obj.device))
    return obj


def resolve_slope(cfg: StudyConfig) -> None:
    """With slope_rule=tat, set `slope` to TAT's slope for this job's depth (so run.json, runs.csv
    and the HParams table carry the slope the net has); raise ConfigError where the rule cannot
    apply. A slope already equal to it (a recorded config read back) is accepted."""
    if cfg.slope_rule is not SlopeRule.tat:
        return
    if cfg.act not in SLOPED_ACTS:
        raise ConfigError(f"invalid config: slope_rule=tat with act={cfg.act}; allowed: an activation "
                          f"with a slope ({', '.join(a.value for a in SLOPED_ACTS)})")  # fmt: skip
    if cfg.init is not Init.kaiming:
        raise ConfigError(f"invalid config: slope_rule=tat with init={cfg.init}; allowed: init=kaiming "
                          "(TAT's slope assumes the slope's own He scale)")  # fmt: skip
    try:
        slope = theory.tat_slope(cfg.depth, cfg.tat_eta)
    except theory.UnreachableEta as e:
        raise ConfigError(f"invalid config: slope_rule=tat at depth={cfg.depth}, tat_eta={cfg.tat_eta}: "
                          f"{e}; allowed: a smaller tat_eta or a larger depth") from None  # fmt: skip
    default = StudyConfig.__dataclass_fields__["slope"].default
    if cfg.slope != default and not math.isclose(cfg.slope, slope, rel_tol=1e-9, abs_tol=1e-12):
        raise ConfigError(f"invalid config: slope={cfg.slope!r} with slope_rule=tat; allowed: no slope "
                          "(the rule computes it from the depth) or slope_rule=fixed")  # fmt: skip
    cfg.slope = slope


def apply_tuned(cfg: StudyConfig) -> None:
    """Set the tuned key (e.g. lr) from the `cfg.tuned` table's row for this run's cell.

    The table's columns before `tuned_key` are the cell's keys; a row matches when every one
    equals this run's value (numbers compared as numbers)."""
    path = Path(cfg.tuned)
    if not path.is_file():
        raise ConfigError(f"invalid config: tuned={cfg.tuned!r}; allowed: a tuned.csv from summarize --tune")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    header = list(rows[0]) if rows else []
    if "tuned_key" not in header:
        raise ConfigError(f"invalid config: tuned={cfg.tuned!r}; allowed: a tuned.csv (no tuned_key column)")
    cell_keys = header[: header.index("tuned_key")]
    mine = flat_dict(cfg)
    unknown = [k for k in cell_keys if k not in mine]
    if unknown:
        raise ConfigError(f"invalid config: tuned={cfg.tuned!r}; its cell keys {unknown} are not config keys")
    for row in rows:
        if all(_same_value(mine[k], row[k]) for k in cell_keys):
            key = row["tuned_key"]
            setattr(cfg, key, type(getattr(cfg, key))(float(row[key])))
            cfg.__post_init__()  # the tuned value must pass the same range checks
            return
    cell = ", ".join(f"{k}={mine[k]}" for k in cell_keys)
    raise ConfigError(f"invalid config: tuned={cfg.tuned!r} has no row for {cell}; allowed: its cells")


def _same_value(mine: object, text: str) -> bool:
    if isinstance(mine, bool) or not isinstance(mine, int | float):
        return str(mine) == text
    try:
        return math.isclose(float(mine), float(text), rel_tol=1e-9, abs_tol=1e-12)
    except ValueError:
        return False


def sweep_errors(config_name: str, jobs: list[list[str]]) -> list[str]:
    """Validate every job of a sweep before the first one runs: one message per bad value.

    Each job is composed from its own overrides as Hydra will compose it (config groups such as
    `+fix=...` included, so a tuned.csv row is looked up for the job's own cell), inside the
    running Hydra app (or an `initialize_config_dir` context)."""
    from hydra import compose
    from hydra.errors import HydraException

    errors: dict[str, None] = {}  # ordered, without repeats
    for overrides in jobs:
        try:
            to_study_config(compose(config_name=config_name, overrides=overrides))
        except ConfigError as e:
            errors[str(e)] = None
        except (HydraException, OmegaConfBaseException) as e:
            errors[_composition_error(e, overrides)] = None
    return list(errors)


def _composition_error(error: Exception, overrides: list[str]) -> str:
    """One line naming the key and value that failed to compose (OmegaConf's cause carries the
    key), e.g. `invalid config: slope='abc'; Value 'abc' of type 'str' could not be converted ...`."""
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    key = getattr(cause, "full_key", None)
    given = {o.split("=", 1)[0].lstrip("+~"): o.split("=", 1)[1] for o in overrides if "=" in o}
    what = f"{key}={given[key]!r}" if key in given else " ".join(overrides)
    return f"invalid config: {what}; {str(cause).splitlines()[0]}"
