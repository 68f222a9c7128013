"""What `python -m slopestudy.study report` writes: each section's marker blocks in
results/README.md and its generated pages, from the committed summaries (results/**/*.csv) only,
and, on request, the figures those CSVs determine.

Deterministic: the same CSVs give the same bytes, so a test can check that the committed page is
what its data says (tests/test_study_runner.py).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import warnings
from pathlib import Path

from slopestudy.study.analyses.page import contents, figure_index, read_block, replace_block
from slopestudy.study.sections import Section
from slopestudy.summary import figures as figs
from slopestudy.summary.cells import make_summary
from slopestudy.summary.summarize import retable
from slopestudy.summary.tables import committed

PAGE = "README.md"  # results/README.md: the published page
# Figures a summary's committed CSVs determine (runs.csv, prelu_slopes.csv). The others need
# what only the sweep folders hold, and `study run` (through summarize) draws them from there.
FROM_TABLES = ("decay_heatmap", "decay_vs_slope", "test_acc_vs_depth", "dead_frac_vs_depth", "phase_diagram",
               "prelu_slopes")  # fmt: skip
# ... and where the summary keeps epochs.csv (collect.KEPT_TABLES), the ones drawn from it too
FROM_EPOCHS = ("val_curves",)
NEED_SWEEP = {"signal_norm_step0": "each run's per-layer step-0 norms (run.json)",
              "val_curves": "each run's validation accuracy per epoch (run.json, or epochs.csv where "
                            "the summary keeps it)"}  # fmt: skip


def rendered(results: Path, section: Section) -> dict[str, str]:
    """What `report` writes for a section: marker name or page path -> text."""
    out = dict(section.blocks(results)) if section.blocks else {}
    return out | {path: make(results) for path, make in section.pages.items()}


def published_state(results: Path, section: Section) -> str:
    """'up to date', or which of the section's blocks and pages `report` would change."""
    if not section.blocks and not section.pages:
        return "no generated tables"
    page = (results / PAGE).read_text()
    stale = []
    for name, text in rendered(results, section).items():
        if name in section.pages:
            current = (results / name).read_text() if (results / name).exists() else None
        else:
            current = read_block(page, name)
        if current != text:
            stale.append(f"{name} ({'missing' if current is None else 'stale'})")
    return "up to date" if not stale else "REPORT WOULD CHANGE " + ", ".join(stale)


def report(
    results: Path,
    sections: list[Section],
    figures: bool = False,
    tables: bool = False,
    every: list[Section] | None = None,
) -> list[Path]:
    """Write every marker block and generated page of `sections`; return the files that changed.
    The page-wide indexes (contents, figures) are made from `every` section (default: `sections`).
    `tables` first writes each summary's own tables again from its runs.csv (summaries written
    before accuracy_ci.csv existed keep theirs: their format is older than every current rule)."""
    page = results / PAGE
    changed = []
    for section in sections if tables else ():
        for summary in section.summaries:
            if (results / summary.out / "accuracy_ci.csv").exists():
                changed += retable(results / summary.out)
    text = page.read_text()
    for section in sections:
        for name, body in (section.blocks(results) if section.blocks else {}).items():
            try:
                text = replace_block(text, name, body)
            except KeyError as e:
                print(f"{section.name}: {e.args[0]}: add its markers to the page", file=sys.stderr)
        for rel, make in section.pages.items():
            if write_if_changed(results / rel, make(results)):
                changed.append(results / rel)
        if figures:
            for summary in section.summaries:
                changed += redraw(results / summary.out)
            changed += draw_section_figures(results, section)
    indexes = {"contents": contents(text), "figures": figure_index(text, drawn_by(every or sections))}
    for name, body in indexes.items():
        try:
            text = replace_block(text, name, body)
        except KeyError as e:
            print(f"the {name} index: {e.args[0]}: add its markers to the page", file=sys.stderr)
    if write_if_changed(page, text):
        changed.insert(0, page)
    return changed


def drawn_by(sections: list[Section]):
    """path (relative to results/) -> the command that draws that figure: `report --figures` for
    a section's own figures and a summary's FROM_TABLES ones, else its section's `run`."""
    own = {rel for section in sections for rel in section.figures}
    section_of = {s.out: section.name for section in sections for s in section.summaries}

    def command(path: str) -> str:
        folder, stem = Path(path).parent.name, Path(path).stem
        if path in own or (folder in section_of and stem in FROM_TABLES):
            return "python -m slopestudy.study report --figures"
        if folder in section_of:
            return f"python -m slopestudy.study run {section_of[folder]}"
        return "see its section"

    return command


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text() == text:
        return False
    path.write_text(text)
    return True


def draw_section_figures(results: Path, section: Section) -> list[Path]:
    """A section's own figures (Section.figures), from the committed CSVs; the ones drawn."""
    import matplotlib.pyplot as plt

    drawn = []
    for rel, draw in section.figures.items():
        fig = draw(results)
        if fig is not None:
            fig.savefig(results / rel, dpi=110)
            plt.close(fig)
            drawn.append(results / rel)
    return drawn


def redraw(folder: Path) -> list[Path]:
    """Redraw a committed summary's FROM_TABLES figures from its CSVs, and its FROM_EPOCHS ones
    where it has epochs.csv (about 10 s per summary: hence `report --figures`, not the default);
    the PNGs written. A committed PNG of a figure that no longer applies (figures.not_applicable:
    e.g. accuracy figures of step-0 probes), or that the CSVs it is drawn from no longer give
    (e.g. decay_vs_slope of one slope per init), is deleted, not left stale."""
    if (runs := committed(folder.parent, folder.name)) is None:
        return []
    if "val_acc" not in runs:  # a summary from before the validation split
        runs["val_acc"] = float("nan")
    epochs = committed(folder.parent, folder.name, "epochs.csv")
    redrawable = set(FROM_TABLES) | (set(FROM_EPOCHS) if epochs is not None else set())
    drawn = []
    with tempfile.TemporaryDirectory() as tmp:
        s = make_summary(runs, Path(tmp), epochs=epochs)
        if (prelu := committed(folder.parent, folder.name, "prelu_slopes.csv")) is not None:
            s.prelu = prelu  # per layer: not in runs.csv
        gone = figs.not_applicable(s)
        with warnings.catch_warnings():  # the figures drawn without their data and dropped say so
            warnings.filterwarnings("ignore", "No artists with labels", UserWarning)
            paths = figs.draw_all(s, skip=tuple(set(figs.FIGURES) - redrawable))
        for path in paths:
            shutil.copyfile(path, folder / path.name)
            drawn.append(folder / path.name)
    stale = set(gone) | (redrawable - {p.stem for p in paths})
    for name in sorted(stale):
        if (old := folder / f"{name}.png").exists():
            old.unlink()
            print(f"removed {old}: " + gone.get(name, "its CSVs no longer give this figure"), file=sys.stderr)
    return drawn
