"""The published study, one entry per results section: its sweeps, its summaries, and what it
writes. `python -m slopestudy.study` runs, reports and checks what is declared here, and
nothing else names a sweep folder or a summary.

A section lists its summaries in the order they must be made (a tuning summary before the sweep
that reads its tuned.csv); each summary lists the sweeps it summarizes, each sweep a preset in
conf/experiment/ (with a fixed folder) and its overrides. What a section writes is computed from
the committed summaries alone (slopestudy.study.analyses): marker blocks of results/README.md
(`<!-- study NAME: begin -->` ... `end -->`) and generated pages under results/.

A new section: its presets in conf/experiment/, one `Section` below, and, if it publishes
tables, a function in slopestudy/analyses/ and its markers in results/README.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slopestudy.study.analyses import fair, fixes, headline, kernel, learned, narrow_and_fashion, replications
from slopestudy.study.sweeps import Sweep


@dataclass(frozen=True)
class SummaryFolder:
    """A committed summary, results/<out>/, and how it is made: `python -m slopestudy.summary <the
    sweeps' folders> --out results/<out> [--tune KEY]`."""

    out: str
    """Folder under results/ (the committed summary)."""
    sweeps: tuple[Sweep, ...]
    tune: str | None = None
    """Choose this key per cell on validation (writes tuned.csv, which later presets read)."""


# The page's numbered sections: results/README.md's "## N. <title> (<summaries>)" headings, one
# number and one title each (a test holds the page to it). 4 and 2b were retired and are not reused.
PAGE_SECTIONS = {
    1: "At initialization the slope barely matters; the init decides",
    2: "Training, compared fairly: lr tuned per cell on validation, 5 seeds, 95 % CIs",
    3: "Dying units in narrow deep nets, on the validation protocol",
    5: "Fashion-MNIST, on the validation protocol",
    6: "The edge of trainability: the slope shifts it like a rescaled init, at a fixed lr",
    7: "Let gradient descent pick the slope: PReLU",
    8: "What else fixes vanishing gradients: each fix at step 0 next to its theory, then trained",
    9: "Where the slope decides: the kernel",
}


@dataclass(frozen=True)
class Section:
    """One runnable part of the study: its sweeps, summaries and generated blocks. Several parts
    can make up one numbered section of the page (`number`, a key of PAGE_SECTIONS; None: retired)."""

    name: str
    number: int | None
    title: str
    """The part's own title (the page's section title is PAGE_SECTIONS[number])."""
    summaries: tuple[SummaryFolder, ...] = ()
    blocks: Callable[[Path], dict[str, str]] | None = None
    """results/ -> {marker name: Markdown} for the blocks of results/README.md."""
    pages: dict[str, Callable[[Path], str]] = field(default_factory=dict)
    """Generated pages: path under results/ -> results/ -> its text."""
    needs: tuple[str, ...] = ()
    """Sections whose summaries this one reads (its presets or its analysis)."""
    figures: dict[str, Callable[[Path], Any]] = field(default_factory=dict)
    """Section figures: path under results/ -> results/ -> a matplotlib Figure (None: no data yet),
    drawn from committed CSVs by `study run` and `report --figures`."""
    retired: str = ""
    """Why it is no longer part of the findings (the page's appendix); empty: a live section.
    A retired section still runs and reports when named; listings show it apart."""

    @property
    def sweeps(self) -> list[Sweep]:
        return [sweep for s in self.summaries for sweep in s.sweeps]

    @property
    def where(self) -> str:
        """Where the page shows it: "§ 2, <part title>" or "appendix, <part title>"."""
        return f"§ {self.number}, {self.title}" if self.number else f"appendix, {self.title}"


# Learning-rate grids of the fair comparison: log-spaced, 1-2-5 per decade, per optimizer and init.
GRIDS = {
    ("sgd", "kaiming"): "0.001,0.002,0.005,0.01,0.02,0.05",
    ("sgd", "pytorch"): "0.005,0.01,0.02,0.05,0.1,0.2",
    ("adam", "pytorch"): "0.0001,0.0002,0.0005,0.001,0.002,0.005",
}
# Section 3's grid: SGD-kaiming's without 0.001, which no fair_tune cell chose.
DYING_GRID = "0.002,0.005,0.01,0.02,0.05"
ADAM = ("optimizer=adam", "init=pytorch", "depth=30,20,10", "slope=0,0.2,0.5")  # where SGD fails


def _fair_blocks(results: Path) -> dict[str, str]:
    return {f"fair/{name}": body for name, body in fair.blocks(results).items()}


FAIR = Section(
    "fair",
    2,
    "lr tuned per cell on validation, 5 seeds (SGD, then Adam)",
    summaries=(
        SummaryFolder("fair_tune_sgd_kaiming", tune="lr", sweeps=(
            Sweep("fair_tune", ("init=kaiming", f"lr={GRIDS['sgd', 'kaiming']}"), split="depth"),
            # the grid's top (0.05) was best for two shallow cells: the grid widened there
            Sweep("fair_tune", ("init=kaiming", "depth=5", "slope=0.1,0.2", "lr=0.1,0.2")),
        )),
        SummaryFolder("fair_tune_sgd_pytorch", tune="lr", sweeps=(
            Sweep("fair_tune", ("init=pytorch", f"lr={GRIDS['sgd', 'pytorch']}"), split="depth"),
        )),
        SummaryFolder("fair_final_sgd", sweeps=(Sweep("fair_final", ("init=kaiming",)),
                                            Sweep("fair_final", ("init=pytorch",)))),
        SummaryFolder("fair_long_sgd_pytorch", sweeps=(Sweep("fair_long"),)),
        SummaryFolder("fair_24ep_sgd_pytorch", sweeps=(Sweep("fair_24ep"),)),
        SummaryFolder("fair_tune_adam_pytorch", tune="lr", sweeps=(
            Sweep("fair_tune", (*ADAM, f"lr={GRIDS['adam', 'pytorch']}")),
        )),
        SummaryFolder("fair_final_adam", sweeps=(Sweep("fair_final", ADAM),)),
    ),
    blocks=_fair_blocks,
    pages={"fair.md": fair.fair_md},
)  # fmt: skip


def _retired(name: str, title: str, why: str, *sweeps: Sweep) -> Section:
    """A retired section of one summary, named like its folder under results/ (and, without
    `sweeps`, like its one preset, kept in conf/experiment/legacy/ out of the live list)."""
    sweeps = sweeps or (Sweep(f"legacy/{name}"),)
    return Section(name, None, title, summaries=(SummaryFolder(name, sweeps=sweeps),), retired=why)


# Why the retired sections are retired (results/README.md's appendix says the same).
RETIRED_2B = "one lr per init chosen on test accuracy, 2 epochs, 3 seeds; superseded by § 2's protocol"
RETIRED_4 = "Adam at one lr, 2 epochs, 2 seeds; superseded by § 2's Adam protocol and power test"
RETIRED_HEADLINE = "2 epochs or fewer at one lr per sweep, from before the validation protocol"


def _learned_blocks(results: Path) -> dict[str, str]:
    return {"learned_slope": learned.block(results)}


SECTIONS: dict[str, Section] = {s.name: s for s in (
    Section("init_probe", 1, "signal decay per layer at step 0, per init and slope", summaries=(
        SummaryFolder("init_probe", sweeps=(Sweep("init_probe"),)),
        SummaryFolder("init_probe_depth3", sweeps=(Sweep("init_probe_depth3"),)),
    ), blocks=lambda r: {"init_probe": headline.init_probe_block(r)}),
    FAIR,
    Section("slope_depth", None, "the old § 2b (slope_depth)", retired=RETIRED_2B, summaries=(
        SummaryFolder("lr_tune", sweeps=(Sweep("legacy/lr_tune"),)),
        SummaryFolder("slope_depth", sweeps=(Sweep("legacy/slope_depth", ("init=kaiming", "lr=0.01")),
                                         Sweep("legacy/slope_depth", ("init=pytorch", "lr=0.1")))),
        SummaryFolder("slope_depth_lowlr", sweeps=(Sweep("legacy/slope_depth_lowlr"),)),
    )),
    _retired("dying_units", "headline.md's dying units", RETIRED_HEADLINE),
    _retired("adam_contrast", "the old § 4, Adam", RETIRED_4),
    _retired("fashion", "headline.md's Fashion-MNIST", RETIRED_HEADLINE,
             Sweep("legacy/fashion", ("init=kaiming", "lr=0.01")),
             Sweep("legacy/fashion", ("init=pytorch", "lr=0.1"))),
    _retired("phase_diagram", "the one-seed phase diagram",
             "one seed per cell; superseded by § 6's 3-seed diagram (claims_phase)"),
    Section("learned_slope", 7, "PReLU against its fixed-slope twin", summaries=(
        SummaryFolder("learned_slope", sweeps=(Sweep("learned_slope", ("init=kaiming",)),
                                           Sweep("learned_slope", ("init=pytorch",)))),
    ), blocks=_learned_blocks, pages={"learned.md": learned.learned_md}, needs=("fair",)),
    Section("headline", None, "results/headline.md", retired=RETIRED_HEADLINE,
            pages={"headline.md": headline.headline_md},
            needs=("init_probe", "slope_depth", "dying_units", "adam_contrast", "fashion")),
    # Follow-up tests on fresh seeds (§§ 2, 6), the validation protocol on narrow nets and
    # Fashion-MNIST (§§ 3, 5), and the other fixes (§ 8)
    Section("claims_phase", 6, "the phase diagram at lr 0.01, 3 seeds", summaries=(
        SummaryFolder("claims_phase", sweeps=(Sweep("claims_phase"),)),
    ), blocks=lambda r: {"claims_phase": replications.phase_block(r)}),
    Section("claims_lr_slope", 2, "lr × slope at depth 30, first 18 runs", summaries=(
        SummaryFolder("claims_lr_slope", sweeps=(Sweep("claims_lr_slope"),)),
    ), blocks=lambda r: {"claims_lr_slope": replications.lr_slope_block(r)}),
    # the full 60-run design (5 seeds, lr 0.005-0.05); claims_lr_slope's block shows it once summarized
    Section("claims_lr_slope_full", 2, "lr × slope at depth 30, 5 seeds", summaries=(
        SummaryFolder("claims_lr_slope_full", sweeps=(Sweep("claims_lr_slope_full", split="lr"),)),
    ), blocks=lambda r: {"claims_lr_slope": replications.lr_slope_block(r)}),
    Section("claims_power_sgd", 2, "He init, depth 30: 15 fresh seeds per slope", summaries=(
        SummaryFolder("claims_power_sgd", sweeps=(Sweep("claims_power_sgd"),)),
    ), blocks=lambda r: {"claims_power_sgd": replications.power_block(r)}, needs=("fair",)),
    Section("dying_fair", 3, "narrow nets: tuned, final, and a 10-seed replication", summaries=(
        SummaryFolder("dying_tune", tune="lr", sweeps=(
            Sweep("dying_tune", (f"lr={DYING_GRID}",), split="depth"),
        )),
        SummaryFolder("dying_final", sweeps=(Sweep("dying_final", split="depth"),)),
        SummaryFolder("dying_power", sweeps=(
            Sweep("dying_power"),
            # ReLU was untrainable on the grid there and ran at 0.002 (lowest validation loss);
            # the same seeds at a=0.2's lr, so that the slope is not confounded with the lr
            Sweep("dying_power", ("slope=0", "lr=0.01", "tuned=null")),
        )),
    ), blocks=lambda r: {"dying_fair": narrow_and_fashion.dying_block(r)}),
    Section("fashion_fair", 5, "Fashion-MNIST: tuned and final", summaries=(
        *(SummaryFolder(f"fashion_tune_{init}", tune="lr", sweeps=(
            Sweep("fashion_tune", (f"init={init}", f"lr={GRIDS['sgd', init]}")),
        )) for init in ("kaiming", "pytorch")),
        SummaryFolder("fashion_final", sweeps=(Sweep("fashion_final", ("init=kaiming",)),
                                           Sweep("fashion_final", ("init=pytorch",)))),
    ), blocks=lambda r: {"fashion_fair": narrow_and_fashion.fashion_block(r)}),
    Section("claims_power_adam", 2, "Adam, depth 30: 10 fresh seeds per slope; dead-unit control", summaries=(
        SummaryFolder("claims_power_adam", sweeps=(
            Sweep("claims_power_adam", ("slope=0.2,0.5",)),
            Sweep("claims_power_adam", ("slope=0", "lr=0.001,0.002", "tuned=null")),
            Sweep("claims_power_adam", ("slope=0", "lr=0.001", "bias_shift=0.1", "tuned=null")),
        )),
    ), blocks=lambda r: {"claims_power_adam": replications.adam_power_block(r)}, needs=("fair",)),
    Section("fixes_step0", 8, "each fix at step 0", summaries=(
        SummaryFolder("fixes_step0", sweeps=(Sweep("fixes_step0"),)),
        SummaryFolder("fixes_step0_gelu_width", sweeps=(Sweep("fixes_step0_gelu_width"),)),
    ), blocks=lambda r: {"fixes_step0": fixes.fixes_block(r)}),
    Section("fixes_train", 8, "each fix trained", summaries=(
        SummaryFolder("fixes_tune", tune="lr", sweeps=(
            Sweep("fixes_tune", ("lr=0.005,0.01,0.02,0.05",), split="depth"),
            # where a cell's choice fell on an edge of 0.005-0.05 (or every lr stayed at chance),
            # the grid widened by two steps below, or one above (validation only, 2 seeds each)
            Sweep("fixes_tune", ("+fix=leaky_batchnorm,leaky_layernorm,selu_lecun", "depth=30",
                                 "lr=0.001,0.002")),
            Sweep("fixes_tune", ("+fix=leaky_batchnorm", "depth=10", "lr=0.001,0.002")),
            Sweep("fixes_tune", ("+fix=gelu_he,leaky_default", "depth=10", "lr=0.1")),
            Sweep("fixes_tune", ("+fix=leaky_he,leaky_layernorm,selu_lecun,gelu_he,tanh_xavier,leaky_default",
                                 "depth=50", "lr=0.001,0.002")),
            Sweep("fixes_tune", ("+fix=leaky_default", "depth=30", "lr=0.001,0.002")),
            # the choices still on the lower edge (0.001; LayerNorm and SELU at depths 30 and 50,
            # GELU + He at 50, on steep curves) widened by two more steps, down to 2e-4
            Sweep("fixes_tune", ("+fix=leaky_layernorm,selu_lecun", "depth=30", "lr=0.0002,0.0005")),
            Sweep("fixes_tune", ("+fix=leaky_layernorm,selu_lecun,gelu_he", "depth=50", "lr=0.0002,0.0005")),
            # LayerNorm at depth 50 then chose 0.0002, the new edge: two more steps below
            Sweep("fixes_tune", ("+fix=leaky_layernorm", "depth=50", "lr=0.00005,0.0001")),
        )),
        # one summary per depth, cheapest first, each committed when done; 5 runs a part
        *(SummaryFolder(f"fixes_final_d{d}", sweeps=(Sweep("fixes_final", (f"depth={d}",), split="fix"),))
          for d in (10, 30, 50)),
    ), blocks=lambda r: {"fixes_train": fixes.fixes_train_block(r)},
       figures={"fixes_tune/lr_curves.png": fixes.tuning_figure}),
)}  # fmt: skip


# --- 9. Where the slope decides: the kernel (declared before its runs) --------------------------
# Arms, each against ReLU at each depth: slope 0.2, TAT's slope (eta 0.9: 0.426 / 0.569 / 0.679 at
# depth 50 / 100 / 200) and a pre-activation ReLU residual net (branch act -> Linear scaled by
# 1/sqrt(blocks): the form whose forward variance stays bounded, as in ResNet v2). The family:
# the 3 arms x 3 depths = 9 comparisons with ReLU (Fisher on k/n learned; where both arms learned
# 5/5, Welch on final test accuracy), Holm over the 9. Prediction, declared before the runs: at
# depths 100 and 200 the TAT net learns more often than ReLU or to a higher accuracy, at depth 50
# the arms differ little; over slopes 0-0.9, the best validation accuracy sits at a larger slope
# at depth 200 than at depth 100, as TAT's slope does (0.57 -> 0.68).
KERNEL_LRS = "0.00003,0.0001,0.0003,0.001,0.003"
KERNEL_DEPTHS = (50, 100, 200)
KERNEL_ARMS = (
    ("slope=0,0.2",),
    ("slope_rule=tat",),
    ("residual=true", "residual_branch=act_linear", "slope=0"),
)
SLOPE_DEPTHS = (100, 200)


# where a choice fell on an edge of KERNEL_LRS, the grid widened (validation only, 2 seeds each)
KERNEL_WIDENED = {50: "0.01,0.03"}  # every arm chose 0.003, the top
# the residual net alone chose the top, 0.003; at depth 200 the grid goes to 0.1 at once, as the
# residual net needed at depths 50 and 100
KERNEL_WIDENED_RESIDUAL = {100: "0.01,0.03", 200: "0.01,0.03,0.1"}


def _kernel_sweeps(preset: str, depth: int, *extra: str) -> tuple[Sweep, ...]:
    return tuple(Sweep(preset, (*arm, f"depth={depth}", *extra)) for arm in KERNEL_ARMS)


def _kernel_tune_sweeps(depth: int) -> tuple[Sweep, ...]:
    widened = (
        _kernel_sweeps("kernel_tune", depth, f"lr={KERNEL_WIDENED[depth]}") if depth in KERNEL_WIDENED else ()
    )
    residual = KERNEL_ARMS[2]
    if depth in KERNEL_WIDENED_RESIDUAL:
        widened += (
            Sweep("kernel_tune", (*residual, f"depth={depth}", f"lr={KERNEL_WIDENED_RESIDUAL[depth]}")),
        )
    if depth in (50, 100):  # the residual net chose 0.03, the widened top: one step more
        widened += (Sweep("kernel_tune", (*residual, f"depth={depth}", "lr=0.1")),)
    return (*_kernel_sweeps("kernel_tune", depth, f"lr={KERNEL_LRS}"), *widened)


SECTIONS |= {s.name: s for s in (
    Section("kernel_tune", 9, "lr per arm and depth", summaries=tuple(
        SummaryFolder(f"kernel_tune_d{d}", tune="lr", sweeps=_kernel_tune_sweeps(d))
        for d in KERNEL_DEPTHS), blocks=lambda r: {"kernel_step0": kernel.step0_table(r)},
        figures={"kernel_step0.png": kernel.step0_figure}),
    Section("kernel_final", 9, "5 seeds per arm", summaries=(
        *(SummaryFolder(f"kernel_final_d{d}", sweeps=_kernel_sweeps("kernel_final", d))
          for d in KERNEL_DEPTHS),
        # added after the final runs, outside the declared family: ReLU's depth-100 lr as a confound
        SummaryFolder("kernel_relu_lr_d100", sweeps=(Sweep("kernel_relu_lr"),)),
    ),
        needs=("kernel_tune",), blocks=lambda r: {"kernel_final": kernel.final_block(r)},
        figures={"kernel_final.png": kernel.final_figure}),
    # slopes 0 and 0.2 of this curve are kernel_tune's and kernel_final's runs (same protocol and
    # seeds 100-102 among theirs): the analysis joins the committed summaries
    Section("kernel_slopes", 9, "the best slope against depth", summaries=(
        *(SummaryFolder(f"kernel_slopes_tune_d{d}", tune="lr", sweeps=(
            Sweep("kernel_slopes_tune", (f"depth={d}", f"lr={KERNEL_LRS}")),)) for d in SLOPE_DEPTHS),
        *(SummaryFolder(f"kernel_slopes_final_d{d}", sweeps=(Sweep("kernel_slopes_final", (f"depth={d}",)),))
          for d in SLOPE_DEPTHS),
    ), needs=("kernel_tune", "kernel_final"), blocks=lambda r: {"kernel_slopes": kernel.slopes_block(r)},
        figures={"kernel_slopes.png": kernel.slopes_figure}),
)}  # fmt: skip
