"""The study runner: the published page against its committed summaries (report writes the same
bytes), the declared sections against the repository (every summary, marker and preset
accounted for), status, and `run` on a tiny section, stopped mid-way and run again."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal

import numpy as np
import pandas as pd
import pytest

from slopestudy.study.analyses import fair, headline, learned, protocol
from slopestudy.study.analyses.page import (
    anchors,
    contents,
    figures,
    headings,
    read_block,
    replace_block,
    slug,
)
from slopestudy.study.publish import FROM_TABLES, NEED_SWEEP, PAGE, published_state, redraw, report
from slopestudy.study.runner import Study, main, run_sweeps
from slopestudy.study.sections import PAGE_SECTIONS, SECTIONS, SummaryFolder
from slopestudy.study.sweeps import (
    Job,
    Launch,
    Sweep,
    comparable,
    done_here_or_committed,
    done_in_folder,
    done_in_table,
    not_in_summary,
    parts,
    resolve,
)
from slopestudy.summary.tables import md_table, pm

from .helpers import ROOT
from .helpers.children import Child, run_child
from .helpers.study_tiny import FIRST, SECOND

RESULTS = ROOT / "results"
ALL = list(SECTIONS.values())


def copy_results(dest):
    """What report reads and writes: the committed CSVs and Markdown (no figures)."""
    shutil.copytree(
        RESULTS, dest / "results", ignore=shutil.ignore_patterns("*.png", "events.out.tfevents.*")
    )
    return dest / "results"


def markdown_files(results) -> dict[str, bytes]:
    return {str(p.relative_to(results)): p.read_bytes() for p in sorted(results.rglob("*.md"))}


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    return copy_results(tmp_path_factory.mktemp("committed"))


# --- the page and its data ---------------------------------------------------------------------
def test_report_on_the_committed_results_changes_nothing(committed):
    before = markdown_files(committed)
    assert report(committed, ALL) == []
    assert markdown_files(committed) == before  # every .md byte for byte, the page's blocks included


def test_every_generated_block_of_the_page_is_current():
    for section in ALL:
        state = published_state(RESULTS, section)
        assert state in ("up to date", "no generated tables"), f"{section.name}: {state}"


def test_report_follows_the_data(tmp_path):
    """A changed number in a summary changes the block that quotes it, and only that block."""
    results = copy_results(tmp_path)
    ci = pd.read_csv(results / "fair_final_sgd" / "accuracy_ci.csv")
    first = (ci["init"] == "kaiming") & (ci["depth"] == 5) & (ci["slope"] == 0)
    ci.loc[first, "test_acc"] = 0.5
    ci.to_csv(results / "fair_final_sgd" / "accuracy_ci.csv", index=False)
    page = (results / PAGE).read_text()
    assert published_state(results, SECTIONS["fair"]).startswith("REPORT WOULD CHANGE fair/sgd (stale)")
    assert sorted(p.name for p in report(results, ALL)) == [PAGE, "fair.md"]
    new = (results / PAGE).read_text()
    assert "| kaiming | 5 | 5/5 [0.48, 1.00]: 0.500 [0.974, 0.977] |" in read_block(new, "fair/sgd")
    for name in ("fair/long", "fair/adam", "learned_slope"):
        assert read_block(new, name) == read_block(page, name)
    assert new.replace(read_block(new, "fair/sgd"), "") == page.replace(read_block(page, "fair/sgd"), "")
    assert published_state(results, SECTIONS["fair"]) == "up to date"


def test_report_from_the_command_line(committed, capsys):
    assert main(["--root", str(committed.parent), "report"]) == 0
    assert "nothing changed" in capsys.readouterr().out


def test_redraw_writes_only_the_figures_the_tables_determine(tmp_path):
    folder = tmp_path / "slope_depth_lowlr"
    shutil.copytree(RESULTS / "slope_depth_lowlr", folder)
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.glob("*.png")}
    drawn = {p.name for p in redraw(folder)}
    assert drawn and {p.removesuffix(".png") for p in drawn} <= set(FROM_TABLES)
    for name in NEED_SWEEP:
        if f"{name}.png" in stamps:
            assert (folder / f"{name}.png").stat().st_mtime_ns == stamps[f"{name}.png"]
    assert all((folder / p).read_bytes()[:4] == b"\x89PNG" for p in drawn)


# --- what is declared --------------------------------------------------------------------------
def test_retired_sections_say_why_and_are_listed_apart(capsys):
    retired = [s for s in ALL if s.retired]
    assert {s.name for s in retired} >= {"slope_depth", "adam_contrast", "phase_diagram", "headline"}
    assert all(s.number is None and len(s.retired) > 20 for s in retired)
    assert all(s.number in PAGE_SECTIONS for s in ALL if not s.retired)  # a live part has its section
    with pytest.raises(SystemExit):
        main(["--help"])
    listed = capsys.readouterr().out
    live, _, old = listed.partition("retired (still run when named):")
    assert all(f"  {s.name} " in old and f"  {s.name} " not in live for s in retired)


def test_every_committed_summary_and_marker_is_declared_once():
    outs = [s.out for section in ALL for s in section.summaries]
    assert len(outs) == len(set(outs))
    committed = {p.parent.name for p in RESULTS.glob("*/runs.csv")}
    assert committed <= set(outs), f"summaries no section declares: {committed - set(outs)}"
    page = (RESULTS / PAGE).read_text()
    on_page = set(re.findall(r"<!-- study (.+?): begin -->", page))
    declared = {name for section in ALL if section.blocks for name in section.blocks(RESULTS)}
    assert on_page == declared | {"contents", "figures"}  # the page's indexes: report makes them from it
    assert "<!--" not in re.sub(r"<!-- study .+?: (begin|end) -->", "", page)  # no other generator's markers
    for section in ALL:
        assert set(section.needs) <= set(SECTIONS)


def test_the_page_numbers_its_sections_as_declared_one_number_one_title():
    numbered = [re.match(r"(\d+)\. (.+?) \(([^()]*)\)$", h) for h in headings((RESULTS / PAGE).read_text())]
    on_page = {int(m[1]): m[2] for m in numbered if m}
    assert on_page == PAGE_SECTIONS
    assert {s.number for s in ALL if not s.retired} == set(PAGE_SECTIONS)  # every section has its parts


def test_every_link_to_a_section_of_the_page_lands_on_a_heading():
    page = (RESULTS / PAGE).read_text()
    targets = anchors(page)
    assert slug("2. Training, compared fairly: 5 seeds, 95 % CIs (fair_tune)") == (
        "2-training-compared-fairly-5-seeds-95--cis-fair_tune"
    )  # GitHub's rule: punctuation dropped, each space a hyphen
    assert len(contents(page).splitlines()) == len(headings(page)) >= 9
    links = {"README.md": re.findall(r"results/README\.md#([^)\s]+)", (ROOT / "README.md").read_text()),
             PAGE: re.findall(r"\]\(#([^)\s]+)\)", page)}  # fmt: skip
    for where, found in links.items():
        assert found and set(found) <= targets, f"{where}: no heading for {set(found) - targets}"


def test_the_figure_index_lists_every_embedded_figure_with_its_section_and_an_existing_file():
    page = (RESULTS / PAGE).read_text()
    shown = figures(page)
    index = read_block(page, "figures").splitlines()
    assert len(index) == len(shown) >= 9
    for (alt, path, section), line in zip(shown, index, strict=True):
        assert (RESULTS / path).is_file(), path
        assert line.startswith(f"- [{alt}]({path}) — [") and f"(#{slug(section)})" in line
        assert "drawn by `python -m slopestudy.study " in line, line


def test_every_preset_has_a_fixed_folder_and_shared_folders_split_their_jobs():
    presets = sorted(p.stem for p in (ROOT / "conf" / "experiment").glob("*.yaml"))
    folders = {s.preset: r.folder for s, r in resolve([Sweep(p) for p in presets]).items()}
    assert all(f.startswith("multirun/") and "$" not in f for f in folders.values()), folders
    declared = resolve([sweep for section in ALL for sweep in section.sweeps])
    assert len(declared) == sum(len(section.sweeps) for section in ALL)  # no sweep declared twice
    by_folder: dict[str, list] = {}
    for r in declared.values():
        by_folder.setdefault(r.folder, []).append(r)
    for shared in by_folder.values():  # e.g. fair_tune's grid and its widened edge
        # a key one sweep does not set names no folder level of its jobs (override_dirname): None
        keys = set.union(*(set(r.jobs[0]) for r in shared)) - {"experiment"}
        jobs = [tuple(comparable(j.get(k)) for k in sorted(keys)) for r in shared for j in r.jobs]
        assert len(jobs) == len(set(jobs)), [r.sweep.label for r in shared]


def test_the_declared_sweeps_ask_for_the_published_jobs(committed):
    """Each summary's sweeps ask for exactly the runs of its committed runs.csv, no more, no fewer."""
    for section in ALL:
        for summary in section.summaries:
            path = committed / summary.out / "runs.csv"
            if not path.exists():
                continue
            runs = pd.read_csv(path)
            for sweep, r in resolve(list(summary.sweeps)).items():
                assert done_in_table(r.jobs, runs)[0] == len(r.jobs), sweep.label
            assert sum(len(r.jobs) for r in resolve(list(summary.sweeps)).values()) == len(runs), summary.out


def test_status_of_a_fresh_clone(committed, capsys):
    """No sweep folder: jobs from the committed runs.csv, the page current."""
    assert main(["--root", str(committed.parent), "status"]) == 0
    lines = {line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line[:1].isalpha()}
    assert re.search(r"871/871\s+unknown\s+up to date", lines["fair"])
    assert re.search(r"72/72\s+unknown\s+up to date", lines["learned_slope"])
    assert re.search(r"584/584\s+2 min 40 s wall\s+up to date", lines["init_probe"])
    assert re.search(r"–\s+–\s+up to date", lines["headline"])


def test_run_refuses_a_section_whose_inputs_are_missing(tmp_path):
    with pytest.raises(SystemExit, match="run fair first"):
        main(["--root", str(tmp_path), "run", "learned_slope"])


def test_dry_run_prints_the_commands_and_runs_nothing(tmp_path, capsys):
    assert main(["--root", str(tmp_path), "run", "fair", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "+experiment=fair_tune init=kaiming lr=0.001,0.002,0.005,0.01,0.02,0.05 depth=30" in out  # a part
    assert "--out results/fair_tune_sgd_kaiming --tune lr" in out
    assert out.count("would run") == 4 + 1 + 4 + 2 + 2 + 2  # parts: 4 depths per SGD grid
    assert not (tmp_path / "multirun").exists()


def test_run_only_runs_the_named_summaries(tmp_path, capsys):
    argv = ["--root", str(tmp_path), "run", "kernel_tune", "kernel_final", "--dry-run"]
    assert main([*argv, "--only", "kernel_final_d50", "kernel_tune_d200"]) == 0
    out = capsys.readouterr().out
    assert "--out results/kernel_tune_d200 --tune lr" in out and "--out results/kernel_final_d50" in out
    assert "kernel_tune_d50 " not in out and "kernel_final_d100" not in out
    with pytest.raises(SystemExit) as stop:  # a typo is one line and exit 2, before anything runs
        main([*argv, "--only", "kernel_final_d60"])
    assert stop.value.code == 2 and "no summary kernel_final_d60" in capsys.readouterr().err


# --- the analyses, on frames small enough to check by hand ------------------------------------
def test_page_blocks_and_grid():
    text = "a\n<!-- study x: begin -->\nold\n<!-- study x: end -->\nb\n"
    new = replace_block(text, "x", "new\n")
    assert new == "a\n<!-- study x: begin -->\nnew\n\n<!-- study x: end -->\nb\n"
    assert read_block(new, "x") == "new\n" and read_block(new, "y") is None
    with pytest.raises(KeyError):
        replace_block(text, "y", "z")
    assert md_table(["a", "b"], [["1", "2"]]) == "| a | b |\n|---|---|\n| 1 | 2 |"
    assert pm(pd.Series([-0.0001, 0.0001])) == "0.000 ± 0.000"
    assert pm(pd.Series([0.5])) == "0.500" and pm(pd.Series([np.nan])) == "–"


def test_fair_cells_and_sentences():
    row = pd.Series({"lr": 0.005, "at_edge": True, "failures": 2, "n": 2, "val_acc": 0.1})
    assert protocol.tuned_cell(row) == "0.005* (untrainable)"  # a tuned.csv without the flag
    assert protocol.tuned_cell(pd.Series({**row, "failures": 0})) == "0.005* (0.100)"
    flagged = pd.Series(
        {**row, "failures": 0, "untrainable_on_grid": False, "margin": 0.0012, "runner_up": 0.01}
    )
    assert protocol.tuned_cell(flagged) == "0.005* (0.100; +0.001 over 0.01)"
    assert protocol.tuned_cell(pd.Series({**flagged, "untrainable_on_grid": True})) == "0.005* (untrainable)"
    # one run of two failed: the choice used the mean over both (score), so that is what shows
    half = pd.Series({**flagged, "failures": 1, "val_acc": 0.9, "score": 0.5})
    assert protocol.tuned_cell(half) == "0.005* (0.500 over all runs, 1/2 failed; +0.001 over 0.01)"
    df = pd.DataFrame(
        {"init": ["kaiming"] * 3, "depth": [5, 5, 10], "slope": [0.0, 0.5, 0.0], "v": ["x", "y", "z"]}
    )
    assert protocol.grid(df, lambda r: r["v"]).splitlines() == [
        "| init | depth | a=0 | a=0.5 |",
        "|---|---|---|---|",
        "| kaiming | 5 | x | y |",
        "| kaiming | 10 | z | – |",
    ]


def test_long_section_counts_runs_that_learned(tmp_path):
    folder = tmp_path / "fair_long_sgd_pytorch"
    folder.mkdir()
    runs = pd.DataFrame({"lr": [0.05] * 3, "depth": [20, 30, 30], "slope": [0.0, 0.0, 0.5],
                         "status": ["completed", "completed", "diverged"], "val_acc": [0.95, 0.11, 0.1],
                         "test_acc": [0.95, 0.11, 0.1], "train_loss": [0.1, 2.30, np.nan],
                         "val_loss": [0.2, 2.31, np.nan]})  # fmt: skip
    runs.to_csv(folder / "runs.csv", index=False)
    lines = fair.long_section(tmp_path)
    assert "**1 of 3 runs learned**" in lines[0] and "1 diverged" in lines[0]
    assert lines[1] == "24 epochs (4x the final runs' 6): not run yet."


def test_learned_twins():
    prelu = pd.DataFrame({"init": "kaiming", "prelu_params": "layer", "slope": 0.2, "depth": 5, "lr": 0.05,
                          "epochs": 6, "status": "completed", "val_acc": 0.9, "val_loss": 0.3,
                          "seed": [100, 101, 102], "test_acc": [0.97, 0.98, 0.995]})  # fmt: skip
    fixed = prelu.drop(columns="prelu_params").assign(test_acc=[0.95, 0.96, 0.97], lr=[0.05, 0.05, 0.02])
    t = learned.twin_table(prelu, fixed)
    # paired on seed: differences 0.02, 0.02, 0.025
    assert t["d"].iloc[0] == pytest.approx(0.065 / 3) and t["d_lo"].iloc[0] < 0.02 < t["d_hi"].iloc[0]
    assert t["test"].iloc[0] == "paired" and t["p_holm"].iloc[0] == pytest.approx(t["p"].iloc[0])
    assert not t["alike"].iloc[0]  # the twin ran at other lrs: marked †
    assert "| 0.05† |" in learned.twin_markdown(t)


def test_headline_dying_units_counts():
    df = pd.DataFrame({"width": 4, "depth": 10, "slope": [0.0, 0.0, 0.2, 0.2], "dead_frac_step0": 0.5,
                       "status": "completed", "test_acc": [0.11, 0.9, 0.5, 0.5],
                       "test_loss": [2.303, 0.3, 0.9, 7.0]})  # fmt: skip
    # the last run reached 0.5 but its loss ended above chance's ln 10: not learned
    assert headline.dying_units(df)[-2].endswith("by slope: a=0: 1/2, a=0.2: 1/2")


# --- counting jobs -----------------------------------------------------------------------------
def test_jobs_are_matched_by_value():
    cell = {"experiment": "x", "lr": 0.01, "init": "kaiming", "seed": 1}
    expected = [{**cell, "slope": 0}, {**cell, "slope": 0.5}, {**cell, "slope": 0.2}]
    jobs = [
        Job({**cell, "experiment": "y", "slope": 0.0, "log_every": 3}, "completed", 3.0),  # same folder
        Job({**cell, "slope": 0.5}, "interrupted", 1.0),  # not a result yet
        Job({**cell, "slope": 0.2, "epochs": 8}, "completed", 2.0),
    ]  # another job (another folder)
    assert done_in_folder(expected, jobs) == (1, 3.0)
    runs = pd.DataFrame(
        {
            "slope": [0.0, 0.5],
            "lr": [0.01, 0.01],
            "init": "kaiming",
            "seed": 1,
            "status": ["diverged", "failed"],
        }
    )
    assert done_in_table(expected, runs) == (1, None)  # diverged is a result; `experiment` is no column
    assert comparable(np.bool_(True)) == comparable(True) == "true" and comparable(1) == comparable(1.0)


def finished_job(folder, overrides: list[str]) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text("{}\n")
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    (folder / "run.json").write_text(json.dumps({"status": "completed", "history": [{"seconds": 2.5}]}))


def test_a_done_sweep_reruns_when_the_tuned_table_it_reads_was_rewritten(tmp_path, capsys):
    sweep = Sweep("fair_final", ("init=kaiming", "depth=5", "slope=0", "seed=100"))
    r = resolve([sweep])[sweep]
    assert r.tuned == "results/fair_tune_sgd_kaiming/tuned.csv" and len(r.jobs) == 1
    finished_job(tmp_path / r.folder / "depth=5,init=kaiming,slope=0" / "seed=100", sweep.task())
    study = Study(launch=Launch(root=tmp_path))
    summary = SummaryFolder("x", sweeps=(sweep,))
    assert run_sweeps(study, SECTIONS["fair"], summary, {sweep: r}, dry_run=True) == (False, 0)
    assert "1/1 done, skipped" in capsys.readouterr().out
    run_sweeps(study, SECTIONS["fair"], summary, {sweep: r}, dry_run=True, rewritten={r.tuned})
    assert "1/1 done; would run: python train.py -m +experiment=fair_final" in capsys.readouterr().out


def test_on_a_fresh_machine_the_committed_runs_count_as_done_and_only_the_widened_grid_runs(tmp_path):
    sweep = Sweep("fair_final", ("init=kaiming", "depth=5", "slope=0", "seed=100,101"))
    r = resolve([sweep])[sweep]
    folder = tmp_path / r.folder
    committed = pd.DataFrame(
        {"init": "kaiming", "depth": 5, "slope": 0.0, "seed": [100], "status": "completed"}
    )
    assert done_here_or_committed(folder, r.jobs, committed) == 1  # no folder here: the table's
    assert not_in_summary(folder, r.jobs, committed) == 0
    finished_job(folder / "depth=5,init=kaiming,slope=0" / "seed=101", [*sweep.task()[:-1], "seed=101"])
    assert done_here_or_committed(folder, r.jobs, committed) == 2  # one here, one committed
    assert done_here_or_committed(folder, r.jobs, None) == 1
    assert not_in_summary(folder, r.jobs, committed) == 1  # run by hand: `run` rewrites the summary


def test_a_split_sweep_runs_one_part_per_value():
    r = resolve([Sweep("legacy/lr_tune", ("init=pytorch",), split="depth")])[
        Sweep("legacy/lr_tune", ("init=pytorch",), "depth")
    ]
    (task_a, jobs_a), (task_b, jobs_b) = parts(r)
    assert task_a[-1] == "depth=10" and task_b[-1] == "depth=20"
    assert len(jobs_a) == len(jobs_b) == 4 and all(j["depth"] == 10 for j in jobs_a)


def test_a_config_group_axis_is_split_and_narrowed_as_hydra_does():
    # fixes_final sweeps `+fix: ...` in its params; `+fix=a,b` on the command line replaces that
    # axis (Hydra keys it by `+fix`), and a part per fix must be spelled `+fix=...` too
    narrowed = resolve([Sweep("fixes_final", ("depth=30", "+fix=leaky_he,gelu_he"))])
    (r,) = narrowed.values()
    assert sorted({j["fix"] for j in r.jobs}) == ["gelu_he", "leaky_he"] and len(r.jobs) == 2 * 5
    (r,) = resolve([Sweep("fixes_final", ("depth=30",), split="fix")]).values()
    split = parts(r)
    assert len(split) == 8 and split[0][0][-1] == "+fix=leaky_default" and len(split[0][1]) == 5
    # the folder is the depth's own (`multirun/fixes_final_d${depth}`), so each depth's summary
    # holds that depth's runs only
    assert r.folder == "multirun/fixes_final_d30"


# --- run: stopped mid-way, run again ----------------------------------------------------------
def tiny(python, root, *args) -> list[str]:
    """The study's command line with the tiny section added (tests/helpers/study_tiny.py)."""
    return [python, "-m", "tests.helpers.study_tiny", "--root", str(root), *args]


@pytest.mark.slow  # about a minute: four tiny jobs in three Hydra multiruns
def test_run_resumes_after_a_kill_and_skips_what_finished(tmp_path, tiny_root, python):
    """`run tiny` is killed (the whole process group, SIGKILL) while the second sweep's second job
    is paused after its last epoch; run again, it skips the first sweep and the finished job, the
    killed job resumes from its checkpoint, and the summary and the block are written."""
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / PAGE).write_text("<!-- study tiny: begin -->\n<!-- study tiny: end -->\n")
    env = {**os.environ, "SLOPESTUDY_DATA": str(tiny_root)}
    cmd = tiny(python, tmp_path, "run", "tiny", "--launcher", "basic", "--echo")
    child = Child(cmd, cwd=ROOT, env={**env, "SLOPESTUDY_PAUSE_AFTER_EPOCH": "2"}, start_new_session=True)
    child.wait_for("paused after epoch 2", timeout=240)
    os.killpg(child.pid, signal.SIGKILL)
    child.finish()
    first, second = (
        tmp_path / "multirun" / "lr_tune" / "all",
        tmp_path / "multirun" / "slope_depth" / "kaiming",
    )
    finished = sorted(first.rglob("run.json")) + sorted(second.glob("*epochs=1*/*/run.json"))
    assert len(finished) == 3 and all(json.loads(p.read_text())["status"] == "completed" for p in finished)
    before = {p: p.read_bytes() for p in finished}
    assert not (tmp_path / "results" / "tiny").exists()

    proc = run_child(cmd, cwd=ROOT, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2/2 done, skipped (multirun/lr_tune/all)" in proc.stdout
    assert "1/2 done, running 1 into multirun/slope_depth/kaiming" in proc.stdout
    assert {p: p.read_bytes() for p in finished} == before  # finished jobs untouched
    resumed = json.loads(next(second.glob("*epochs=2*/*/run.json")).read_text())
    assert resumed["status"] == "completed" and resumed.get("resumed_at_step")
    runs = pd.read_csv(tmp_path / "results" / "tiny" / "runs.csv")
    assert len(runs) == 4 and set(runs["status"]) == {"completed"}
    assert read_block((tmp_path / "results" / PAGE).read_text(), "tiny") == "4 runs: 4 completed"

    again = run_child(tiny(python, tmp_path, "run", "tiny", "--launcher", "basic"), cwd=ROOT, env=env)
    assert again.returncode == 0 and again.stdout.count("skipped") == 2 and "summary" not in again.stdout
    status = run_child(tiny(python, tmp_path, "status", "tiny"), cwd=ROOT, env=env).stdout
    assert re.search(r"^tiny\s+4/4\s+\d+ s train\s+up to date", status, re.M), status
    assert status.count("2/2    folder") == 2 and FIRST.label in status and SECOND.label in status
