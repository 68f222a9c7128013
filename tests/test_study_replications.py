"""The claims analyses on synthetic run frames whose answers are known by construction."""

import pandas as pd
import pytest

from slopestudy.science import stats
from slopestudy.study.analyses import fixes, replications
from slopestudy.summary.tables import committed

from .helpers.runs import final_loss


def runs(rows):
    frame = pd.DataFrame(
        rows, columns=["slope", "init_gain", "depth", "seed", "lr", "status", "val_acc", "test_acc"]
    )
    return frame.assign(val_loss=frame["val_acc"].map(final_loss))


def test_phase_ridge_finds_the_deepest_learned_depth_and_its_sigma2():
    frame = runs([
        (0.0, 1.0, 10, 0, 0.01, "completed", 0.9, 0.9), (0.0, 1.0, 20, 0, 0.01, "completed", 0.11, 0.1),
        (0.0, 2.0, 10, 0, 0.01, "completed", 0.9, 0.9), (0.0, 2.0, 20, 0, 0.01, "completed", 0.8, 0.8),
        (0.0, 2.8, 20, 0, 0.01, "diverged", 0.6, 0.6),  # diverged: never counts as learned
        (0.5, 1.0, 20, 0, 0.01, "completed", 0.35, 0.3),  # learned at 0.2, not at 0.5
    ])  # fmt: skip
    ridge = replications.phase_ridge(frame).set_index("slope")
    assert ridge.loc[0.0, "deepest_learned"] == 20 and ridge.loc[0.0, "ridge_sigma2"] == "2"
    assert ridge.loc[0.0, "ridge_g"] == "1.00" and ridge.loc[0.5, "critical_sigma2"] == 1.6
    assert ridge.loc[0.5, "deepest_learned"] == 0 and ridge.loc[0.5, "ridge_sigma2"] == "-"
    assert replications.phase_ridge(frame, threshold=0.2).set_index("slope").loc[0.5, "deepest_learned"] == 20
    counts = replications.phase_counts(frame)
    assert counts.loc[(0.0, 2.0), "depth 20"] == "1/1" and counts.loc[(0.0, 1.0), "depth 20"] == "0/1"


def test_lr_slope_table_counts_rates_with_exact_intervals_and_the_stability_edge():
    frame = runs(
        [(0.0, 2.0, 30, s, 0.01, "completed", 0.96, 0.95 + s / 1000) for s in range(5)]
        + [(0.0, 2.0, 30, s, 0.05, "completed", 0.95, 0.95) for s in range(5)]
        + [(0.5, 2.0, 30, s, 0.01, "completed", 0.96, 0.96) for s in range(5)]
        + [(0.5, 2.0, 30, s, 0.05, "diverged", 0.1, 0.1) for s in range(2)]
        + [(0.5, 2.0, 30, s, 0.05, "completed", 0.9, 0.9) for s in range(2, 5)]
    )  # fmt: skip
    table = replications.lr_slope_table(frame).set_index(["slope", "lr"])
    assert table.loc[(0.5, 0.05), "learned"] == "3/5 [0.15, 0.95]"
    assert table.loc[(0.5, 0.05), "diverged"] == "2/5"
    assert table.loc[(0.0, 0.01), "test acc of the runs that learned"].startswith("0.952 [")
    edge = replications.stability_edge(replications.lr_slope_table(frame)).set_index("slope")
    assert edge.loc[0.0, "largest lr with no divergence"] == 0.05
    assert edge.loc[0.5, "largest lr with no divergence"] == 0.01
    assert edge.loc[0.5, "smallest lr with a divergence"] == 0.05


def test_compare_arms_uses_fisher_for_rates_and_welch_only_where_all_learned():
    ok = [(0.0, 2.0, 30, s, 0.01, "completed", 0.9, 0.90 + s / 100) for s in range(5)]
    fail = [(0.0, 2.0, 30, s, 0.01, "completed", 0.11, 0.11) for s in range(5)]
    arms = {"relu": runs(fail), "leaky": runs(ok), "relu again": runs(fail[:4] + ok[:1])}
    table = replications.compare_arms(arms, base="relu").set_index("arm")
    assert table.loc["leaky", "learned"] == "5/5 [0.48, 1.00]"
    assert table.loc["leaky", "fisher p vs relu"] == pytest.approx(2 / 252)  # 5/5 vs 0/5
    assert table.loc["relu again", "fisher p vs relu"] == pytest.approx(1.0)
    assert pd.isna(table.loc["leaky"].get("test acc difference (Welch)", float("nan")))  # relu failed
    # Holm over the two tests: the smaller p times 2
    assert table.loc["leaky", "p (Holm)"] == pytest.approx(2 * 2 / 252)
    both = replications.compare_arms({"a": runs(ok), "b": runs(ok)}, base="a").set_index("arm")
    assert both.loc["b", "test acc difference (Welch)"].startswith("0.000 [")
    assert "| arm" in replications.markdown(table.reset_index())


def test_step0_vs_theory_groups_by_fix_and_depth_and_shows_no_theory_where_there_is_none():
    frame = pd.DataFrame({
        "job": ["+fix=a,depth=10/seed=0", "+fix=a,depth=10/seed=1", "+fix=b,depth=10/seed=0"],
        "depth": [10, 10, 10], "decay_step0": [0.10, 0.12, -0.05], "decay_theory": [0.1, 0.1, float("nan")],
        "grad_ratio_step0": [-1.0, -1.2, 0.5],
    })  # fmt: skip
    table = fixes.step0_vs_theory(frame).set_index("fix")
    assert table.loc["a", "measured (log10/layer)"] == "0.110 ± 0.014" and table.loc["a", "gap"] == "+0.010"
    assert table.loc["a", "n"] == 2 and table.loc["a", "log10 grad first/last"] == "-1.10"
    assert table.loc["b", "theory"] == "–" and table.loc["b", "gap"] == "–"


def test_depth30_power_pools_fair_final_and_pairs_by_seed():
    def run(slope, seed, acc, init="kaiming", depth=30):
        return {"slope": slope, "seed": seed, "init": init, "depth": depth, "lr": 0.01, "status": "completed",
                "val_acc": acc, "test_acc": acc, "val_loss": final_loss(acc)}  # fmt: skip

    power = pd.DataFrame([run(0.0, s, 0.960 + s / 1000) for s in (300, 301, 302)]
                         + [run(0.2, s, 0.965 + s / 1000) for s in (300, 301, 302)])  # fmt: skip
    fair = pd.DataFrame([run(0.0, 100, 0.95), run(0.2, 100, 0.97), run(0.0, 100, 0.5, depth=20)])
    table = replications.depth30_power(power, fair).set_index("arm")
    assert table.loc["a=0", "n"] == 4 and table.loc["a=0.2", "n"] == 4  # depth 20 left out
    # the 4 shared seeds differ by +0.005, +0.005, +0.005 and +0.02
    assert table.loc["a=0.2", "paired difference (4 seeds)"].startswith("0.009 [")
    assert table.loc["a=0.2", "fisher p vs a=0"] == pytest.approx(1.0)


def test_compare_pairs_tests_each_declared_pair_at_both_thresholds_with_holm():
    def arm(vals):
        frame = runs([(0.0, 1.0, 30, s, 0.001, "completed", v, v) for s, v in enumerate(vals)])
        return frame.assign(dead_frac_step0=0.5, grad_ratio_step0=-3.0)

    arms = {"relu": arm([0.1] * 10), "leaky": arm([0.9] * 9 + [0.3]), "shift": arm([0.9] * 4 + [0.1] * 6)}
    table, tests = replications.compare_pairs(arms, [("leaky", "relu"), ("shift", "relu")])
    assert table.set_index("arm").loc["leaky", "learned"].startswith("10/10 [0.69, 1.00]; 9/10 at 0.5")
    by = tests.set_index("arm")
    assert (
        by.loc["leaky", "learned at 0.2"] == "10/10 vs 0/10"
        and by.loc["leaky", "learned at 0.5"] == "9/10 vs 0/10"
    )
    p_leaky, p_shift = stats.fisher_p(10, 10, 0, 10), stats.fisher_p(4, 10, 0, 10)
    assert by.loc["leaky", "fisher p at 0.2"] == pytest.approx(p_leaky)
    # Holm over the two pairs: the smaller p doubled, the larger kept (here both monotone)
    assert by.loc["leaky", "p (Holm) at 0.2"] == pytest.approx(2 * p_leaky)
    assert by.loc["shift", "p (Holm) at 0.2"] == pytest.approx(max(p_shift, 2 * p_leaky))


def test_trained_fixes_table_counts_learned_runs_per_fix_and_depth():
    rows = []
    for fix, accs in (("leaky_he", [0.95, 0.96, 0.97]), ("leaky_default", [0.11, 0.11, 0.95])):
        for seed, acc in enumerate(accs):
            grad = -1.0 if fix == "leaky_he" else -5.0
            rows.append({"job": f"+fix={fix},depth=30/seed={seed}", "depth": 30, "seed": seed,
                         "status": "completed", "val_acc": acc, "test_acc": acc, "grad_ratio_end": grad,
                         "val_loss": final_loss(acc),
                         "seconds": 60.0, "steps": 3000, "val_gain_last_half": 0.0})  # fmt: skip
    table = fixes.trained_table(pd.DataFrame(rows))
    he = next(line for line in table.splitlines() if line.startswith("| leaky_he |"))
    default = next(line for line in table.splitlines() if line.startswith("| leaky_default |"))
    assert "3/3 [0.29, 1.00]: 0.960 [" in he and he.endswith("| -1.00 |")
    assert "1/3 [0.01, 0.91]" in default and "median 0.110" in default and "| -5.00 |" in default


def test_cost_table_reads_the_side_by_side_benchmark():
    bench = pd.DataFrame([
        {"fix": f, "depth": d, "ms_per_step": ms, "ratio_to_leaky_he": r}
        for f, d, ms, r in [("leaky_he", 10, 2.0, 1.0), ("leaky_he", 30, 5.0, 1.0),
                            ("leaky_batchnorm", 10, 3.0, 1.5), ("leaky_batchnorm", 30, 9.0, 1.8)]
    ])  # fmt: skip
    table = fixes.cost_table(bench)
    assert "| leaky_batchnorm | 3.0 (×1.50) | 9.0 (×1.80) |" in table
    with_spread = fixes.cost_table(bench.assign(ratio_q1=bench["ratio_to_leaky_he"] - 0.1, ratio_q3=2.0))
    assert "| leaky_batchnorm | 3.0 (×1.50 [1.40, 2.00]) |" in with_spread
    assert "depth 30: ms/step (× leaky_he)" in table


def test_tuning_figure_rings_each_cells_chosen_lr():
    from pathlib import Path

    results = Path(__file__).resolve().parents[1] / "results"
    if not (results / "fixes_tune" / "tuned.csv").exists():
        pytest.skip("fixes_tune not published")
    fig = fixes.tuning_figure(results)
    tuned_csv = pd.read_csv(results / "fixes_tune" / "tuned.csv")
    tuned = fixes.tuned_with_fix(tuned_csv, committed(results, "fixes_tune"))
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in axes] == [f"depth {d}" for d in sorted(tuned["depth"].unique())]
    for ax in axes:
        depth = int(ax.get_title().split()[1])
        rings = [ln for ln in ax.get_lines() if ln.get_marker() == "o" and ln.get_linestyle() == "None"]
        chosen = sorted(tuned[tuned["depth"] == depth]["lr"])
        assert sorted(x for line in rings for x in line.get_xdata()) == pytest.approx(chosen)
    assert fixes.tuning_figure(Path("/nonexistent")) is None


def test_fixes_vs_reference_holm_within_depth():
    rows = []
    accs = {"leaky_he": [0.95, 0.951, 0.952, 0.953],
            "leaky_batchnorm": [0.97, 0.971, 0.972, 0.973],
            "leaky_default": [0.11, 0.95, 0.95, 0.95],
            "selu_lecun": [0.951, 0.952, 0.953, 0.954]}  # fmt: skip
    for fix, values in accs.items():
        for seed, acc in enumerate(values):
            rows.append({"job": f"+fix={fix},depth=10/seed={seed}", "depth": 10, "seed": seed,
                         "status": "completed", "val_acc": acc, "test_acc": acc,
                         "val_loss": final_loss(acc), "grad_ratio_end": 0.0})  # fmt: skip
    t = fixes.vs_reference(pd.DataFrame(rows)).set_index("arm")
    assert fixes.REFERENCE not in t.index and set(t["depth"]) == {10}
    bn, selu = t.loc["leaky_batchnorm"], t.loc["selu_lecun"]
    assert bn["test acc difference (Welch)"].startswith("0.020 [")  # fix minus reference
    # Holm over the two Welch tests there are (the default net failed a run: no Welch test)
    raw = sorted([bn["Welch p"], selu["Welch p"]])
    assert sorted([bn["Welch p (Holm)"], selu["Welch p (Holm)"]]) == pytest.approx(
        [2 * raw[0], max(raw[1], 2 * raw[0])]
    )
    assert pd.isna(t.loc["leaky_default"].get("Welch p")) and t.loc["leaky_default", "k"] == 3
    table = fixes.vs_reference_table(pd.DataFrame(rows))
    assert "| leaky_batchnorm | 10 | 4/4 |" in table and "| yes |" in table
    assert "| leaky_default | 10 | 3/4 | 1.000 | – (a run failed) | – | – | no |" in table
    # the stricter check: Holm over every depth's Welch tests together (here 2 depths x 2 tests)
    both = pd.DataFrame(
        rows + [{**r, "depth": 30, "job": r["job"].replace("depth=10", "depth=30")} for r in rows]
    )
    t2 = fixes.vs_reference(both)
    welch = t2["Welch p"].dropna().to_numpy()
    assert t2["Welch p (Holm, all depths)"].dropna().to_numpy() == pytest.approx(stats.holm(welch))
    assert t2["Welch p (Holm, all depths)"].min() == pytest.approx(4 * welch.min())


def test_endpoint_check_compares_each_epoch_and_the_best_validation_epoch():
    # test accuracy after epochs 1-3 (val = test), per fix and seed: batchnorm leads only at epoch
    # 3; selu's best-validation epoch is 2; the default net's seed 0 never learns: left out
    curves = {"leaky_he": [[0.90, 0.95, 0.95]] * 4, "leaky_batchnorm": [[0.90, 0.95, 0.97]] * 4,
              "selu_lecun": [[0.90, 0.96, 0.94]] * 4,
              "leaky_default": [[0.11, 0.11, 0.11]] + [[0.11, 0.11, 0.95]] * 3}  # fmt: skip
    rows, epochs = [], []
    for fix, per_seed in curves.items():
        for seed, curve in enumerate(per_seed):
            accs = [0.1] + [a + 0.001 * seed for a in curve]  # epoch 0, then a jitter per seed
            epochs += [
                {"run": len(rows), "epoch": e, "val_acc": a, "test_acc": a} for e, a in enumerate(accs)
            ]
            rows.append({"job": f"+fix={fix},depth=30/seed={seed}", "depth": 30, "seed": seed,
                         "status": "completed", "val_acc": accs[-1], "test_acc": accs[-1],
                         "val_loss": final_loss(accs[-1])})  # fmt: skip
    t = fixes.endpoint_sensitivity(pd.DataFrame(rows), pd.DataFrame(epochs), last=2)
    t = t.set_index(["fix", "endpoint"])
    assert "leaky_default" not in t.index.get_level_values("fix")
    assert list(dict.fromkeys(t.index.get_level_values("endpoint"))) == ["epoch 2", "epoch 3", "best val"]
    assert t.loc[("leaky_batchnorm", "epoch 2"), "diff"] == pytest.approx(0.0)
    assert t.loc[("leaky_batchnorm", "epoch 3"), "diff"] == pytest.approx(0.02)
    assert t.loc[("leaky_batchnorm", "epoch 3"), "Holm p"] < 0.05
    # selu's best validation epoch is epoch 2 (0.96), the reference's the first of its equal 0.95s
    assert t.loc[("selu_lecun", "best val"), "diff"] == pytest.approx(0.01)
    table = fixes.endpoint_table(pd.DataFrame(rows), pd.DataFrame(epochs))
    assert "| leaky_batchnorm | 30 |" in table and "+0.020 (" in table
    means = fixes.epoch_means_table(pd.DataFrame(rows), pd.DataFrame(epochs))
    assert "| selu_lecun | 30 | 0.901 | 0.962 | 0.942 |" in means  # jitter 0-0.003: mean +0.0015
    # the failed run counts in the curves: (0.11 + 0.951 + 0.952 + 0.953) / 4 at epoch 3
    assert "| leaky_default | 30 | 0.112 | 0.112 | 0.741 |" in means
    # without per-epoch losses the success rates are not checked; with them, the one rule per epoch
    assert fixes.endpoint_learned_table(pd.DataFrame(rows), pd.DataFrame(epochs)) == ""
    with_loss = pd.DataFrame(epochs).assign(val_loss=lambda e: [final_loss(a) for a in e["val_acc"]])
    rates = fixes.endpoint_learned_table(pd.DataFrame(rows), with_loss, last=2)
    assert "| fix | depth | epoch 2 | epoch 3 | best val |" in rates
    assert (
        "| leaky_default | 30 | 0/4 | 3/4 | 3/4 |" in rates and "| leaky_he | 30 | 4/4 | 4/4 | 4/4 |" in rates
    )
    with_loss.loc[with_loss["val_acc"] > 0.9, "val_loss"] = 2.5  # accurate but above chance loss
    assert "| leaky_he | 30 | 0/4 | 0/4 | 0/4 |" in fixes.endpoint_learned_table(
        pd.DataFrame(rows), with_loss, last=2
    )


def test_cost_table_counts_the_rounds_in_which_each_fix_was_slower():
    key = "ratio_to_leaky_he"
    bench = pd.DataFrame({"fix": ["leaky_he", "leaky_batchnorm"], "depth": 10, "ms_per_step": [6.0, 7.5],
                          key: [1.0, 1.25], "ratio_q1": [1.0, 1.2], "ratio_q3": [1.0, 1.3]})  # fmt: skip
    rounds = pd.DataFrame({"fix": ["leaky_he"] * 3 + ["leaky_batchnorm"] * 3, "depth": 10,
                           "round": [1, 2, 3] * 2, key: [1.0, 1.0, 1.0, 1.3, 0.9, 1.2]})  # fmt: skip
    table = fixes.cost_table(bench, rounds)
    assert "| leaky_batchnorm | 7.5 (×1.25 [1.20, 1.30], slower in 2/3 rounds) |" in table
    assert "| leaky_he | 6.0 (×1.00 [1.00, 1.00]) |" in table  # the reference is not counted against itself
    assert "rounds" not in fixes.cost_table(bench)  # without the rounds file: the medians only
