"""The summary on synthetic run folders: known inputs, known numbers."""

import json
import math

import pandas as pd
import pytest
import yaml

from slopestudy.science.profiles import fit_decay, grad_ratio
from slopestudy.summary import collect
from slopestudy.summary.figures import accuracy_vs_depth, signal_norm_step0, val_curves
from slopestudy.summary.summarize import main, retable, summarize, tables_from_runs

from .helpers.nets import theory_decay
from .helpers.runs import make_curve_run, make_run


def test_fit_decay_and_grad_ratio_known_values():
    assert fit_decay([10 ** (0.25 * i) for i in range(6)] + [1.0]) == pytest.approx(0.25)
    assert math.isnan(fit_decay([1.0, 2.0]))  # one hidden layer: nothing to fit
    assert math.isnan(fit_decay([0.0, 1.0, 2.0, 3.0]))  # exactly-zero gradient: no log
    assert grad_ratio([1e-3, 1.0, 1e-1]) == pytest.approx(-2.0)


def test_table_numbers_and_seed_aggregation(tmp_path):
    for seed, acc in enumerate([0.90, 0.92, 0.94]):
        make_run(tmp_path, f"slope=0/seed={seed}", seed=seed, acc=acc, decay=0.3 + 0.01 * seed)
    s = summarize([tmp_path], figures=False)
    assert len(s.runs) == 3 and set(s.runs["decay_step0"].round(6)) == {0.3, 0.31, 0.32}
    assert s.runs["grad_ratio_step0"].tolist() == pytest.approx([-1.0] * 3)
    row = s.agg.iloc[0]
    assert row["test_acc_mean"] == pytest.approx(0.92) and row["test_acc_n"] == 3
    assert row["test_acc_std"] == pytest.approx(0.02)
    assert row["decay_step0_mean"] == pytest.approx(0.31)
    assert row["decay_theory_mean"] == pytest.approx(theory_decay("pytorch", 0.0, 32, depth=4))
    assert row["steps_to_90_mean"] == 100
    table = s.tables["test accuracy"]["all runs"]
    assert table.loc[4, "slope=0"] == "0.920 ± 0.020 (3)"
    for f in ("runs.csv", "aggregate.csv", "tables.md", "test_acc__all.csv", "decay_step0__all.csv"):
        assert (s.out_dir / f).exists()
    assert pd.read_csv(s.out_dir / "runs.csv")["test_acc"].tolist() == pytest.approx([0.9, 0.92, 0.94])
    # per run and evaluation, keyed by the row of runs.csv (the endpoint check of § 8 reads it)
    epochs = pd.read_csv(s.out_dir / "epochs.csv")
    last = epochs.loc[epochs.groupby("run")["epoch"].idxmax()].set_index("run")
    assert last["test_acc"].tolist() == pytest.approx(s.runs["test_acc"].tolist())
    assert {"val_loss", "test_loss"} <= set(epochs.columns)  # the learned rule at any epoch needs them


def test_different_fixed_settings_are_never_averaged(tmp_path):
    make_run(tmp_path, "a/seed=0", width=32, acc=0.5)
    make_run(tmp_path, "b/seed=0", width=64, acc=0.7)
    make_run(tmp_path, "c/seed=0", width=64, acc=0.9, seed=1)
    s = summarize([tmp_path], figures=False)
    assert "width" in s.agg.columns and len(s.agg) == 2
    by_width = s.agg.set_index("width")["test_acc_mean"]
    assert by_width[32] == pytest.approx(0.5) and by_width[64] == pytest.approx(0.8)
    assert set(s.tables["test accuracy"]) == {"width=32", "width=64"}


def test_failed_interrupted_missing_and_partial_are_reported(tmp_path):
    make_run(tmp_path, "depth=4,slope=0/seed=0")
    make_run(tmp_path, "depth=4,slope=0.2/seed=0", slope=0.2, status="failed")
    make_run(tmp_path, "depth=6,slope=0/seed=0", depth=6, status="running")  # killed mid-run
    make_run(tmp_path, "depth=6,slope=0.2/seed=0", depth=6, slope=0.2, write_json=False)
    (tmp_path / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {
        "overrides": {"task": ["slope=0,0.2"]}, "sweeper": {"params": {"depth": "4,6,8"}}}}))  # fmt: skip
    s = summarize([tmp_path], figures=False)
    status = dict(zip(s.runs["job"], s.runs["status"], strict=True))
    assert status == {
        "depth=4,slope=0/seed=0": "completed",
        "depth=4,slope=0.2/seed=0": "failed",
        "depth=6,slope=0/seed=0": "interrupted",
        "depth=6,slope=0.2/seed=0": "missing",
    }
    assert len(s.agg) == 1  # only the completed run is tabulated
    notes = "\n".join(s.notes)
    assert "PARTIAL" in notes and "lacks 5 finished job(s)" in notes  # 6 asked, 1 finished
    assert "FAILED: depth=4,slope=0.2/seed=0 — RuntimeError: boom" in notes
    assert "INTERRUPTED: depth=6,slope=0/seed=0" in notes and "MISSING: depth=6,slope=0.2/seed=0" in notes
    assert "PARTIAL" in (s.out_dir / "tables.md").read_text()


def test_cli_help_and_figures(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["--help"])
    assert e.value.code == 0 and "sweep" in capsys.readouterr().out
    for slope in (0.0, 0.2):
        for depth in (3, 5):
            make_run(tmp_path, f"d{depth}s{slope}/seed=0", slope=slope, depth=depth)
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "test accuracy" in out and "slope=0.2" in out
    for name in ("signal_norm_step0", "decay_heatmap", "test_acc_vs_depth", "dead_frac_vs_depth"):
        assert (tmp_path / "out" / f"{name}.png").stat().st_size > 10_000
    assert list((tmp_path / "out").glob("events.out.tfevents.*"))
    assert main([str(tmp_path / "nope")]) == 1


def test_val_curves_leave_out_a_diverged_seed_whose_history_is_shorter(tmp_path):
    # A diverged run stops early: its history is shorter than its cell's other seeds' (it once
    # crashed the figure). The curve is the mean over the completed seeds only.
    for seed, status, accs in [(0, "completed", [0.5, 0.7, 0.8]), (1, "completed", [0.7, 0.9, 1.0]),
                               (2, "diverged", [0.3])]:  # fmt: skip
        make_curve_run(tmp_path, f"seed={seed}", accs, status=status, seed=seed, epochs=3)
    s = summarize([tmp_path], figures=True)
    assert (s.out_dir / "val_curves.png").exists()
    ax = val_curves(s).axes[0]
    (mean,) = [line for line in ax.get_lines() if line.get_label() == "a=0"]
    assert mean.get_xdata().tolist() == [1, 2, 3]
    assert mean.get_ydata().tolist() == pytest.approx([0.6, 0.8, 0.9])
    assert len(ax.get_lines()) == 1 + 2 + 1  # the mean, each completed run, the chance line
    assert ax.get_ylim() == (0, 1)  # runs at chance are never cut off


def test_plateau_columns_are_the_val_gain_over_the_second_half_and_the_last_epoch(tmp_path):
    job = make_run(tmp_path, "seed=0", epochs=6, val=0.9)
    run = json.loads((job / "run.json").read_text())
    first, last = run["history"]
    accs = [0.5, 0.6, 0.7, 0.8, 0.85, 0.9]
    run["history"] = [first] + [{**last, "epoch": i + 1, "val_acc": a} for i, a in enumerate(accs)]
    (job / "run.json").write_text(json.dumps(run))
    row = summarize([tmp_path], figures=False).runs.iloc[0]
    assert row["val_gain_last_half"] == pytest.approx(0.9 - 0.7)  # epoch 3 -> 6
    assert row["val_gain_last_epoch"] == pytest.approx(0.9 - 0.85)  # epoch 5 -> 6


def test_accuracy_ci_reports_k_of_n_with_its_exact_interval_the_median_and_the_second_threshold(tmp_path):
    # Adam a=0.2 depth 30 as published: four runs "learned" at 0.2, only one of them at 0.5
    for seed, val in enumerate([0.213, 0.383, 0.472, 0.922, 0.11]):
        make_run(tmp_path, f"seed={seed}", seed=seed, val=val, acc=val)
    s = summarize([tmp_path], figures=False)
    row = s.ci.iloc[0]
    assert (row["n"], row["failures"], row["learned"], row["failures_at_0.5"]) == (5, 1, 4, 4)
    assert (row["learned_lo"], row["learned_hi"]) == pytest.approx((0.2836, 0.9949), abs=1e-4)
    assert row["test_acc_median"] == pytest.approx(0.383)  # of all five runs
    assert row["test_acc"] == pytest.approx((0.213 + 0.383 + 0.472 + 0.922) / 4)  # of the four that learned
    assert "4/5 [0.28, 0.99]: 0.49" in (s.out_dir / "tables.md").read_text()
    assert "; median 0.383; 1/5 at 0.5 |" in (s.out_dir / "tables.md").read_text()
    assert set(pd.read_csv(s.out_dir / "accuracy_ci.csv").columns) >= {
        "learned",
        "learned_lo",
        "failures_at_0.5",
    }


def test_every_run_json_is_read_once_per_summary_and_figures_read_none(tmp_path, monkeypatch):
    for slope in (0.0, 0.2):
        for depth in (3, 5):
            make_run(tmp_path, f"d{depth}s{slope}/seed=0", slope=slope, depth=depth, val=0.9, epochs=2)
    reads = []
    real = collect.read_run
    monkeypatch.setattr(collect, "read_run", lambda job: reads.append(job) or real(job))
    s = summarize([tmp_path], figures=True)
    assert len(reads) == len(set(reads)) == 4 and len(s.figures) >= 4
    assert set(s.layers["quantity"]) == {"signal_norm_step0", "grad_norm_step0"}
    assert len(s.layers[s.layers["quantity"] == "signal_norm_step0"]) == 2 * 3 + 2 * 5  # one row per layer


def test_the_tables_regenerate_from_runs_csv_alone(tmp_path):
    for slope in (0.0, 0.2):
        for seed in (0, 1, 2):
            make_run(
                tmp_path / "sweep",
                f"s{slope}/seed={seed}",
                slope=slope,
                seed=seed,
                val=0.9 + slope / 10 + seed / 100,
            )
    s = summarize([tmp_path / "sweep"], out_dir=tmp_path / "a", figures=False)
    tables_from_runs(pd.read_csv(s.out_dir / "runs.csv"), tmp_path / "b")
    for name in ("accuracy_ci.csv", "vs_slope0.csv", "aggregate.csv", "test_acc__all.csv"):
        assert (tmp_path / "a" / name).read_text() == (tmp_path / "b" / name).read_text()


def test_retable_writes_a_published_summary_again_from_its_runs_csv_and_keeps_its_folder_notes(tmp_path):
    for seed, val in enumerate([0.9, 0.91, 0.92]):
        make_run(tmp_path / "sweep", f"seed={seed}", seed=seed, val=val)
    out = summarize([tmp_path / "sweep"], out_dir=tmp_path / "pub", figures=False).out_dir
    tables = (out / "tables.md").read_text()
    assert retable(out) == []  # nothing changed: the same bytes
    # a note only the folders could give (a kept run) stays; a run whose loss blew up stops counting
    (out / "tables.md").write_text(tables.replace("- 3 runs", "- KEPT: 1 run(s) from elsewhere\n- 3 runs"))
    runs = pd.read_csv(out / "runs.csv")
    runs.loc[0, "val_loss"] = 5.0
    runs.to_csv(out / "runs.csv", index=False)
    changed = retable(out)
    assert out / "tables.md" in changed and out / "accuracy_ci.csv" in changed
    assert "- KEPT: 1 run(s) from elsewhere" in (out / "tables.md").read_text()
    assert pd.read_csv(out / "accuracy_ci.csv").iloc[0]["learned"] == 2


def test_figures_put_at_most_four_panels_in_a_row_and_share_the_y_axis(tmp_path):
    # 2 inits x 5 depths: the signal profile is a row of 4 and a row of 1 per init, one y axis
    for init in ("pytorch", "kaiming"):
        for depth in (3, 4, 5, 6, 7):
            make_run(
                tmp_path,
                f"{init}/d{depth}/seed=0",
                init=init,
                depth=depth,
                decay=0.3 if init == "pytorch" else 0.0,
            )
    s = summarize([tmp_path], figures=False)
    fig = signal_norm_step0(s)
    shown = [ax for ax in fig.axes if ax.get_visible()]
    rows = {ax.get_subplotspec().rowspan.start for ax in shown}
    assert len(shown) == 10 and len(rows) == 4 and max(ax.get_subplotspec().colspan.stop for ax in shown) <= 4
    assert len({ax.get_ylim() for ax in shown}) == 1  # flat (kaiming) and falling (pytorch) on one scale


def test_runs_csv_records_each_runs_training_seconds(tmp_path):
    job = make_run(tmp_path, "seed=0")
    run = json.loads((job / "run.json").read_text())
    run["history"][0]["seconds"], run["history"][1]["seconds"] = 0.0, 12.5  # step 0, then one epoch
    (job / "run.json").write_text(json.dumps(run))
    make_run(tmp_path, "seed=1", seed=1)  # an older record without epoch times: 0, not a crash
    s = summarize([tmp_path], figures=False)
    assert pd.read_csv(s.out_dir / "runs.csv").set_index("seed")["seconds"].tolist() == [12.5, 0.0]


def test_val_curves_never_average_runs_of_different_learning_rates(tmp_path):
    # a tuning sweep: one cell (slope 0, depth 4) at two lrs; each lr must get its own mean curve
    for seed, lr, accs in [
        (0, 0.01, [0.2, 0.3]),
        (1, 0.01, [0.2, 0.5]),
        (0, 0.1, [0.8, 0.9]),
        (1, 0.1, [0.8, 0.9]),
    ]:
        make_curve_run(tmp_path, f"lr={lr}/seed={seed}", accs, seed=seed, lr=lr)
    s = summarize([tmp_path], figures=False)
    means = {ax.get_title(): [ln.get_ydata().tolist() for ln in ax.get_lines() if ln.get_label() == "a=0"]
             for ax in val_curves(s).axes if ax.get_visible()}  # fmt: skip
    assert means == {
        "depth 4, lr 0.01": [pytest.approx([0.2, 0.4])],
        "depth 4, lr 0.1": [pytest.approx([0.8, 0.9])],
    }


def test_a_null_override_matches_the_empty_cell_of_its_finished_runs(tmp_path):
    """`tuned=null` in multirun.yaml is None; the runs' CSV column holds NaN: the same value, so
    finished jobs are not reported missing (they were, for the Adam power sweep's last part)."""
    sweep = tmp_path / "sweep"
    sweep.mkdir()
    task = ["slope=0", "lr=0.001", "tuned=null", "seed=1,2"]
    (sweep / "multirun.yaml").write_text(yaml.safe_dump({"hydra": {"overrides": {"task": task}}}))
    runs = pd.DataFrame({"sweep": collect.shown(sweep), "status": "completed", "slope": 0.0, "lr": 0.001,
                         "tuned": [float("nan"), float("nan")], "seed": [1, 2]})  # fmt: skip
    assert collect.missing_jobs(sweep, runs) == []
    assert [j["seed"] for j in collect.missing_jobs(sweep, runs.iloc[:1])] == [2]


def test_accuracy_figure_draws_no_mean_over_a_cell_where_some_runs_failed(tmp_path):
    # depth 3: both runs learned (a mean line); depth 4: one of two at chance (dots and "1/2" only)
    for depth, accs in ((3, (0.90, 0.92)), (4, (0.95, 0.10))):
        for seed, acc in enumerate(accs):
            make_run(tmp_path, f"d{depth}/seed={seed}", depth=depth, seed=seed, acc=acc, val=acc)
    s = summarize([tmp_path], figures=False)
    fig = accuracy_vs_depth(s)
    ax = fig.axes[0]
    assert [t.get_text() for t in ax.texts] == ["1/2"]
    mean_line = next(line for line in ax.lines if line.get_marker() == "o")
    assert list(mean_line.get_xdata()) == [3] and list(mean_line.get_ydata()) == pytest.approx([0.91])
    dots = [line for line in ax.lines if line.get_marker() == "."]
    assert sum(len(d.get_xdata()) for d in dots) == 4  # every run is shown


def test_a_summary_kept_from_its_committed_csvs_writes_what_one_from_all_folders_writes(tmp_path):
    # a grid widened on a fresh machine: the first sweep's folders are gone, its summary is
    # committed; the summary of the new folders, keeping the committed runs, is the full one
    for lr in (0.01, 0.1):
        for seed in (0, 1):
            make_curve_run(tmp_path / "sweep", f"lr={lr}/seed={seed}", [0.5, 0.8 + lr], lr=lr, seed=seed)
    full = summarize([tmp_path / "sweep"], tmp_path / "full", figures=False, tune_key="lr")
    kept_out = tmp_path / "kept"
    summarize([tmp_path / "sweep"], kept_out, figures=False, tune_key="lr")
    for seed in (0, 1):  # lr=0.01's folders are gone; lr=0.1's are here (rerun: they replace)
        (tmp_path / "sweep" / "lr=0.01" / f"seed={seed}" / "run.json").unlink()
        (tmp_path / "sweep" / "lr=0.01" / f"seed={seed}" / ".hydra" / "config.yaml").unlink()
    s = summarize([tmp_path / "sweep"], kept_out, figures=False, tune_key="lr", keep=True)
    for name in ("runs.csv", "epochs.csv", "aggregate.csv", "tuned.csv", "accuracy_ci.csv"):
        assert (kept_out / name).read_text() == (full.out_dir / name).read_text(), name
    assert any(n.startswith("KEPT: 2 run(s)") for n in s.notes)
    # without --keep the gone folders' runs are gone from the summary too
    assert len(summarize([tmp_path / "sweep"], tmp_path / "new", figures=False).runs) == 2


def test_keep_needs_the_summary_folder(tmp_path, capsys):
    make_run(tmp_path / "sweep", "seed=0")
    with pytest.raises(SystemExit) as e:
        main([str(tmp_path / "sweep"), "--keep"])
    assert e.value.code == 2 and "--keep needs --out" in capsys.readouterr().err


def test_kept_runs_keep_their_sweeps_order_and_only_what_is_still_wanted(tmp_path):
    for sweep in ("a", "b"):
        for seed in (0, 1):
            make_curve_run(
                tmp_path / sweep, f"seed={seed}", [0.5, 0.9], seed=seed, width=32 if sweep == "a" else 64
            )
    full = summarize([tmp_path / "a", tmp_path / "b"], tmp_path / "full", figures=False)
    out = tmp_path / "kept"
    summarize([tmp_path / "a", tmp_path / "b"], out, figures=False)
    for seed in (0, 1):  # the later sweep's folders are gone, the earlier one's are here
        (tmp_path / "b" / f"seed={seed}" / ".hydra" / "config.yaml").unlink()
    summarize([tmp_path / "a"], out, figures=False, keep=True)
    for name in ("runs.csv", "epochs.csv"):
        assert (out / name).read_text() == (full.out_dir / name).read_text(), name
    # a committed run no longer asked for (wanted: False) is not kept
    s = summarize([tmp_path / "a"], out, figures=False, keep=True, wanted=lambda runs: runs["seed"] == 0)
    assert sorted(zip(s.runs["width"], s.runs["seed"], strict=True)) == [(32, 0), (32, 1), (64, 0)]


def test_prelu_runs_cannot_be_kept_their_learned_slopes_are_not_committed(tmp_path):
    make_run(tmp_path / "a", "seed=0", act="prelu")
    summarize([tmp_path / "a"], tmp_path / "out", figures=False)
    make_run(tmp_path / "b", "seed=1", seed=1, act="prelu")
    with pytest.raises(ValueError, match="learned slopes per layer are not committed"):
        summarize([tmp_path / "b"], tmp_path / "out", figures=False, keep=True)
