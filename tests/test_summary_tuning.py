"""Choosing a nuisance value per cell on validation data, and the intervals reported with it."""

import math

import pandas as pd
import pytest
from hydra import compose, initialize_config_dir

from slopestudy.config import ConfigError, register
from slopestudy.run.validate import to_study_config
from slopestudy.summary.summarize import summarize
from slopestudy.summary.tuning import rank_values

from .helpers import ROOT
from .helpers.runs import make_run

# val accuracy peaks at lr 0.01; test accuracy (never to be used) peaks at lr 0.1.
VAL = {0.001: 0.90, 0.01: 0.95, 0.1: 0.30}
TEST = {0.001: 0.10, 0.01: 0.20, 0.1: 0.99}


def tuning_sweep(root, test=TEST):
    for slope in (0.0, 0.2):
        for lr, val in VAL.items():
            for seed in (0, 1):
                status = "diverged" if (lr == 0.1 and seed == 1) else "completed"
                make_run(root, f"slope={slope},lr={lr}/seed={seed}", slope=slope, lr=lr, seed=seed,
                         val=val + 0.01 * seed, acc=test[lr], status=status)  # fmt: skip


def test_tune_picks_best_mean_validation_value_per_cell(tmp_path):
    tuning_sweep(tmp_path)
    s = summarize([tmp_path], figures=False, tune_key="lr")
    t = s.tuned.set_index("slope")
    assert list(s.tuned.columns[:4]) == ["slope", "depth", "tuned_key", "lr"]  # cell keys first
    assert t.loc[0.0, "lr"] == 0.01 and t.loc[0.2, "lr"] == 0.01  # not 0.1, the test optimum
    assert t.loc[0.0, "val_acc"] == pytest.approx(0.955) and t.loc[0.0, "n"] == 2
    assert t.loc[0.0, "grid"] == "0.001,0.01,0.1" and not t.loc[0.0, "at_edge"]
    assert (s.out_dir / "tuned.csv").exists()
    assert "lr chosen per cell" in (s.out_dir / "tables.md").read_text()
    assert s.tuned["failures"].tolist() == [0, 0]


def test_the_margin_over_the_runner_up_is_published(tmp_path):
    tuning_sweep(tmp_path)
    row = summarize([tmp_path], figures=False, tune_key="lr").tuned.iloc[0]
    assert row["chosen_by"] == "val_acc" and not row["untrainable_on_grid"]
    assert row["runner_up"] == 0.001 and row["margin"] == pytest.approx(0.955 - 0.905)
    assert row["val_loss"] == pytest.approx(0.3)


def test_a_cell_where_no_lr_learns_takes_the_lowest_validation_loss_not_the_grid_edge(tmp_path):
    # Every lr stays at chance with the same val accuracy: the old rule gave the tie to the
    # smallest lr. The loss decides; a diverged run (its last loss was low) counts as infinite.
    losses = {0.001: 2.302, 0.01: 2.25, 0.1: 2.29, 1.0: 0.5}
    for lr, loss in losses.items():
        for seed in (0, 1):
            status = "diverged" if lr == 1.0 and seed == 0 else "completed"
            make_run(tmp_path, f"lr={lr}/seed={seed}", lr=lr, seed=seed, val=0.1135, acc=0.1135,
                     val_loss=loss + 0.001 * seed, status=status)  # fmt: skip
    s = summarize([tmp_path], figures=False, tune_key="lr")
    row = s.tuned.iloc[0]
    assert row["lr"] == 0.01 and row["untrainable_on_grid"]
    assert row["chosen_by"] == "val_loss (untrainable on grid)"
    assert row["runner_up"] == 0.1 and row["val_loss"] == pytest.approx(2.2505)
    assert row["failures"] == row["n"] == 2
    assert any(n.startswith("UNTRAINABLE: slope=0.0, depth=4: no lr of") for n in s.notes)
    table = pd.read_csv(s.out_dir / "tuned.csv")
    assert list(table.columns[:4]) == ["slope", "depth", "tuned_key", "lr"]  # validate.apply_tuned's contract
    assert bool(table["untrainable_on_grid"].iloc[0]) and table["runner_up"].iloc[0] == 0.1


def test_a_tie_on_validation_accuracy_goes_to_the_lower_validation_loss(tmp_path):
    # Two lrs learn equally well (the same val accuracy); the larger one has the lower loss.
    # Grid order would pick 0.01; the loss picks 0.1, in either order of the folders.
    for lr, loss in {0.01: 0.40, 0.1: 0.20, 1.0: 0.9}.items():
        for seed in (0, 1):
            make_run(tmp_path, f"lr={lr}/seed={seed}", lr=lr, seed=seed, val=0.95 if lr < 1 else 0.5,
                     val_loss=loss)  # fmt: skip
    row = summarize([tmp_path], figures=False, tune_key="lr").tuned.iloc[0]
    assert row["lr"] == 0.1 and row["chosen_by"] == "val_loss (tie on val_acc)"
    assert row["runner_up"] == 0.01 and row["margin"] == 0 and not row["untrainable_on_grid"]


def test_rank_values_orders_divergence_before_loss_when_nothing_learns():
    inf, no = math.inf, False
    runs = pd.DataFrame({"slope": [0.0] * 6, "lr": [0.1, 0.1, 0.2, 0.2, 0.05, 0.05],
                         "score": [0.1, 0.0, 0.0, 0.0, 0.1, 0.1], "loss": [2.0, inf, inf, inf, 2.3, 2.3],
                         "learned": [no] * 6, "diverged": [no, True, True, True, no, no]})  # fmt: skip
    ranked = rank_values(runs, ["slope"], "lr")
    assert ranked["lr"].tolist() == [0.05, 0.1, 0.2]  # never diverged, half diverged, always diverged
    assert set(ranked["chosen_by"]) == {"val_loss (untrainable on grid)"}


def test_tune_never_reads_test_accuracy(tmp_path):
    tuning_sweep(tmp_path / "a")
    tuning_sweep(tmp_path / "b", test={lr: 1.0 - v for lr, v in TEST.items()})  # test reversed
    chosen_a = summarize([tmp_path / "a"], figures=False, tune_key="lr").tuned["lr"].tolist()
    chosen_b = summarize([tmp_path / "b"], figures=False, tune_key="lr").tuned["lr"].tolist()
    assert chosen_a == chosen_b == [0.01, 0.01]


def test_divergence_scores_zero_and_edges_are_flagged(tmp_path):
    # lr 0.1 has the best val accuracy when it runs, but one of its two seeds diverges.
    for lr, val in {0.001: 0.80, 0.01: 0.85, 0.1: 0.97}.items():
        for seed in (0, 1):
            status = "diverged" if (lr == 0.1 and seed == 1) else "completed"
            make_run(tmp_path, f"lr={lr}/seed={seed}", lr=lr, seed=seed, val=val, status=status)
    s = summarize([tmp_path], figures=False, tune_key="lr")
    assert s.tuned["lr"].tolist() == [0.01]  # mean score of 0.1 is (0.97 + 0) / 2
    make_run(tmp_path, "lr=1/seed=0", lr=1.0, val=0.99)
    make_run(tmp_path, "lr=1/seed=1", lr=1.0, val=0.99, seed=1)
    s = summarize([tmp_path], figures=False, tune_key="lr")
    assert s.tuned["lr"].tolist() == [1.0] and s.tuned["at_edge"].tolist() == [True]
    assert any(n.startswith("EDGE:") for n in s.notes)


def test_tune_without_validation_or_without_the_key_is_an_error(tmp_path):
    make_run(tmp_path, "a/seed=0", lr=0.01)
    make_run(tmp_path, "b/seed=0", lr=0.1)
    with pytest.raises(ValueError, match="no validation split"):
        summarize([tmp_path], figures=False, tune_key="lr")
    with pytest.raises(ValueError, match="momentum does not vary"):
        summarize([tmp_path], figures=False, tune_key="momentum")


def compose_run(*overrides):
    register()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return to_study_config(compose("config", overrides=list(overrides)))


def test_tuned_csv_sets_each_cells_value(tmp_path):
    tuning_sweep(tmp_path)
    path = summarize([tmp_path], figures=False, tune_key="lr").out_dir / "tuned.csv"
    cfg = compose_run(f"+tuned={path}", "slope=0.2", "depth=4", "lr=0.5")
    assert cfg.lr == 0.01
    with pytest.raises(ConfigError, match="has no row for slope=0.5, depth=4"):
        compose_run(f"+tuned={path}", "slope=0.5", "depth=4")
    with pytest.raises(ConfigError, match="tuned="):
        compose_run(f"+tuned={tmp_path / 'nope.csv'}")


def test_a_per_cell_lr_is_not_an_axis_and_slopes_compare_to_slope0(tmp_path):
    # A final sweep: each slope at its own tuned lr; 3 seeds; slope 0.2 is 0.02 better at depth
    # 4; at depth 6 one slope-0.2 run never learned, so that cell is compared by its learned rate.
    for depth in (4, 6):
        for slope, lr in ((0.0, 0.01), (0.2, 0.02)):
            for seed, noise in enumerate((-0.001, 0.0, 0.001)):
                acc = 0.9 + slope / 10 + noise
                make_run(tmp_path, f"d={depth},slope={slope}/seed={seed}", slope=slope, lr=lr, seed=seed,
                         depth=depth, val=acc, acc=acc)  # fmt: skip
    make_run(tmp_path, "d=6,slope=0.2/seed=3", slope=0.2, lr=0.02, seed=3, depth=6, val=0.11, acc=0.11)
    s = summarize([tmp_path], figures=False)
    assert "lr" not in s.agg.attrs["group_keys"] and set(s.agg["lr"]) == {0.01, 0.02}
    welch, fisher = s.vs_base.set_index("depth").loc[4], s.vs_base.set_index("depth").loc[6]
    assert welch["slope"] == 0.2 and welch["test"] == "welch" and welch["d_test_acc"] == pytest.approx(0.02)
    assert welch["d_test_acc_lo"] > 0.0 and welch["p"] < 0.001 and welch["resolved"]
    # a failure on one side: no mean difference (bimodal), Fisher's test of 3/4 against 3/3
    assert fisher["failures"] == 1 and fisher["n"] == 4 and fisher["failures_base"] == 0
    assert math.isnan(fisher["d_test_acc"]) and fisher["test"] == "fisher" and fisher["p"] == 1.0
    assert fisher["d_learned"] == pytest.approx(-0.25) and not fisher["resolved"]
    assert s.vs_base["p_holm"].tolist() == pytest.approx([min(1, 2 * welch["p"]), 1.0])  # Holm, m = 2
    md = (s.out_dir / "tables.md").read_text()
    # a partial cell: the learners' mean, no t-interval
    assert "3/4 [0.19, 0.99]: 0.920 over the 3 that learned; median 0.919" in md
    assert "| 3/4 / 3/3" in md and "over the table's 2 tests" in md
