"""The fair and learned-slope blocks' statistics on small synthetic frames: k/n cells, the
Welch-or-Fisher choice, Holm marks and the paired-by-seed analysis."""

from __future__ import annotations

import pandas as pd
import pytest

from slopestudy.science import stats
from slopestudy.study.analyses import fair, kernel, learned, protocol
from slopestudy.summary.cells import accuracy_ci, compare_to

from .helpers.runs import final_loss


def runs(cells: dict[tuple[int, float], list[float]], init: str = "pytorch") -> pd.DataFrame:
    """One row per run: (depth, slope) -> test accuracies of seeds 100, 101, ... (val = test)."""
    rows = [{"init": init, "depth": depth, "slope": slope, "seed": 100 + i, "status": "completed",
             "val_acc": acc, "test_acc": acc, "val_loss": final_loss(acc)}
            for (depth, slope), accs in cells.items() for i, acc in enumerate(accs)]  # fmt: skip
    return pd.DataFrame(rows)


RUNS = runs({
    (5, 0.0): [0.970, 0.972, 0.974, 0.971, 0.973],
    (5, 0.5): [0.960, 0.963, 0.964, 0.962, 0.961],  # lower on every seed: Welch and paired resolve
    (5, 0.2): [0.971, 0.972, 0.973, 0.972, 0.974],
    (30, 0.0): [0.11, 0.11, 0.11, 0.11, 0.11],  # never learned
    (30, 0.5): [0.95, 0.96, 0.94, 0.95, 0.96],  # all learned: Fisher 5/5 vs 0/5
    (30, 0.2): [0.30, 0.11, 0.40, 0.96, 0.11],  # 3/5 at 0.2, 1/5 at 0.5
})  # fmt: skip
KEYS = ["depth", "slope"]


def test_ci_cells_show_k_of_n_and_no_mean_over_failures():
    ci = accuracy_ci(RUNS, KEYS).assign(init="pytorch").set_index(["depth", "slope"])
    assert protocol.ci_cell(ci.loc[(5, 0.5)]).startswith("5/5 [0.48, 1.00]: 0.962 [")
    assert protocol.ci_cell(ci.loc[(30, 0.0)]) == "0/5 [0.00, 0.52]; median 0.110"
    # runs between the thresholds: k/n at both and the median, no mean or t-interval
    assert protocol.ci_cell(ci.loc[(30, 0.2)]) == f"{stats.fmt_rate(3, 5)}; 1/5 at 0.5; median 0.300"
    # every t-interval shown is over runs that learned only
    shown = ci[ci["learned"] == ci["n"]]
    assert (shown["test_acc_lo"] > 0.9).all()


def test_difference_section_chooses_welch_or_fisher_and_marks_holm():
    vs = protocol.with_paired(compare_to(RUNS, KEYS).assign(init="pytorch"), RUNS)
    by = vs.set_index(["depth", "slope"])
    assert list(by["test"]) == ["welch", "welch", "fisher", "fisher"]
    assert by.loc[(30, 0.5), "p"] == pytest.approx(stats.fisher_p(5, 5, 0, 5))
    assert by.loc[(30, 0.5), "p_paired"] == by.loc[(30, 0.5), "p"]  # Fisher cells keep Fisher's p
    assert by.loc[(5, 0.5), "p_paired"] == pytest.approx(
        stats.paired_p(RUNS[(RUNS.depth == 5) & (RUNS.slope == 0)]["test_acc"],
                       RUNS[(RUNS.depth == 5) & (RUNS.slope == 0.5)]["test_acc"]))  # fmt: skip
    assert list(vs["p_paired_holm"]) == pytest.approx(list(stats.holm(vs["p_paired"])))
    text = "\n".join(protocol.difference_section(vs))
    lines = text.splitlines()
    assert "Family: all 4 comparisons of this block" in text and "seeds 100–104" in text
    row = next(line for line in lines if line.startswith("| pytorch | 5 | 0.5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[5] == "welch" and cells[7].startswith("**") and cells[10].startswith("**")
    fisher_row = next(line for line in lines if line.startswith("| pytorch | 30 | 0.5 |"))
    assert "| 5/5 vs 0/5 | – | fisher |" in fisher_row and "(Fisher)" in fisher_row
    survivors = next(line for line in lines if line.startswith("Survive Holm"))
    assert survivors.startswith("Survive Holm, Welch/Fisher: ") and "Paired/Fisher: " in survivors
    assert "pytorch depth 5 a=0.5 (-0.010" in survivors


def test_untrainable_and_margin_in_the_tuning_table(tmp_path):
    folder = tmp_path / "fair_tune_sgd_pytorch"
    folder.mkdir()
    pd.DataFrame({"slope": [0.0, 0.0], "depth": [5, 30], "tuned_key": "lr", "lr": [0.05, 0.005],
                  "n": 2, "val_acc": [0.97, 0.11], "failures": [0, 2], "at_edge": [False, True],
                  "grid": "0.005,0.05", "untrainable_on_grid": [False, True],
                  "margin": [0.0021, 0.0], "runner_up": [0.1, 0.01]}).to_csv(folder / "tuned.csv",
                                                                           index=False)  # fmt: skip
    text = "\n".join(fair.tuned_section(tmp_path, "sgd"))
    assert "| pytorch | 5 | 0.05 (0.970; +0.002 over 0.1) |" in text
    assert "| pytorch | 30 | 0.005* (untrainable) |" in text
    assert protocol.UNTRAINABLE in text
    assert "1 of 2 are untrainable on the grid (pytorch depth 30 a=0)" in text


def test_per_lr_curves_go_to_the_appendix_not_the_page(tmp_path):
    folder = tmp_path / "fair_tune_sgd_pytorch"
    folder.mkdir()
    pd.DataFrame({"depth": [5], "slope": [0.0], "lr=0.01": [0.952], "lr=0.05": [0.967]}).to_csv(
        folder / "tuning_scores.csv", index=False
    )
    page, appendix = fair.blocks(tmp_path)["sgd"], fair.fair_md(tmp_path)
    assert "| 5 | 0 | 0.952 | 0.967 |" in appendix and "| 5 | 0 | 0.952" not in page
    assert "appendix `results/fair.md`" in page


def test_learned_twins_paired_on_seed_with_holm():
    base = {"init": "kaiming", "prelu_params": "layer", "lr": 0.05, "epochs": 6, "status": "completed"}
    prelu = pd.DataFrame([{**base, "slope": s, "depth": d, "seed": 100 + i, "val_acc": acc, "test_acc": acc,
                           "val_loss": final_loss(acc)}
                          for (s, d, accs) in ((0.2, 5, [0.97, 0.98, 0.99]), (0.2, 30, [0.11, 0.11, 0.95]))
                          for i, acc in enumerate(accs)])  # fmt: skip
    fixed = prelu.drop(columns="prelu_params").copy()
    fixed["test_acc"] = fixed["val_acc"] = [0.96, 0.975, 0.98, 0.95, 0.95, 0.95]
    fixed["val_loss"] = fixed["val_acc"].map(final_loss)
    t = learned.twin_table(prelu, fixed).set_index("depth")
    # depth 5: paired differences 0.01, 0.005, 0.01
    assert t.loc[5, "test"] == "paired" and t.loc[5, "d"] == pytest.approx(0.025 / 3)
    assert t.loc[5, "p"] == pytest.approx(stats.paired_p([0.96, 0.975, 0.98], [0.97, 0.98, 0.99]))
    # depth 30: two PReLU runs failed, so the learned rates over the pairs (1/3 vs 3/3) by Fisher
    assert t.loc[30, "test"] == "fisher" and t.loc[30, "p"] == pytest.approx(stats.fisher_p(3, 3, 1, 3))
    assert list(t["p_holm"]) == pytest.approx(list(stats.holm(t["p"])))
    slopes = pd.DataFrame(columns=[*learned.CELL, "first_value", "last_value"])
    _, sentence = learned.findings(slopes, t.reset_index())
    assert "after Holm over the family of all 2 twin comparisons" in sentence


def committed_curve(results, depth: int, peak: float) -> None:
    """kernel_final_d<depth> (ReLU, 0.2, TAT, seeds 100-104) and kernel_slopes_final_d<depth>
    (0.4-0.9, seeds 100-102), validation accuracy 0.95 at slope `peak`, falling away from it."""

    def row(slope, seed, rule="fixed", status="completed"):
        acc = 0.95 - abs(slope - peak) / 2 + (seed - 100) / 1000
        return {"depth": depth, "slope": slope, "slope_rule": rule, "residual": False, "seed": seed,
                "lr": 0.001, "status": status, "val_acc": acc, "test_acc": acc,
                "val_loss": final_loss(acc)}  # fmt: skip

    final = [row(a, s) for a in (0.0, 0.2) for s in range(100, 105)]
    final += [row(0.9, s, rule="tat") for s in range(100, 105)]  # TAT: not on the fixed-slope curve
    final += [{**row(0.0, 104), "val_acc": 0.0}]  # a seed beyond 102: left out
    slopes = [row(a, s) for a in (0.4, 0.57, 0.68, 0.8, 0.9) for s in (100, 101, 102)]
    slopes[-1] = {**row(0.9, 102, status="diverged"), "val_acc": None}
    for name, rows in ((f"kernel_final_d{depth}", final), (f"kernel_slopes_final_d{depth}", slopes)):
        (results / name).mkdir(parents=True)
        pd.DataFrame(rows).to_csv(results / name / "runs.csv", index=False)


def test_the_best_slope_curve_joins_the_final_runs_and_finds_each_depths_peak(tmp_path):
    assert kernel.slopes_block(tmp_path) == "_The best-slope runs are not committed yet._"
    committed_curve(tmp_path, 100, peak=0.57)
    committed_curve(tmp_path, 200, peak=0.8)
    curve = kernel.slope_runs(tmp_path)
    assert len(curve) == 2 * (2 * 3 + 5 * 3) and set(curve["seed"]) == {100, 101, 102}
    assert (curve[curve["status"] == "diverged"]["score"] == 0.1).all()  # chance, not left out
    best = kernel.best_slopes(curve)
    assert best["best"] == {100: 0.57, 200: 0.8} and best["moves up"] == 1.0
    block = kernel.slopes_block(tmp_path)
    assert "- depth 200: best slope 0.8 (validation; TAT's slope 0.679)" in block
    assert "larger at depth 200 than at 100: yes; in 100% of the resamples" in block
    assert kernel.slopes_block(tmp_path) == block  # the same bytes each time (a fixed bootstrap seed)


def test_the_relu_lr_check_sits_beside_the_family_with_raw_welch_against_the_lower_lr_relu(tmp_path):
    def row(slope, seed, acc, lr, rule="fixed"):
        return {"depth": 100, "slope": slope, "slope_rule": rule, "residual": False, "seed": seed,
                "lr": lr, "status": "completed", "val_acc": acc, "test_acc": acc, "val_loss": final_loss(acc),
                "steps_to_90": None, "kernel_gap_step0": 0.01, "kernel_gap_end": 0.1}  # fmt: skip

    final = [row(0.0, s, 0.5 + s / 1000, 0.001) for s in range(100, 105)]
    final += [row(0.57, s, 0.96 + s / 10000, 0.001, rule="tat") for s in range(100, 105)]
    (tmp_path / "kernel_final_d100").mkdir()
    pd.DataFrame(final).to_csv(tmp_path / "kernel_final_d100" / "runs.csv", index=False)
    assert "Robustness check" not in kernel.final_block(tmp_path)  # not committed: nothing said
    check = [row(0.0, s, 0.7 + s / 1000, 0.0003) for s in range(100, 105)]
    (tmp_path / "kernel_relu_lr_d100").mkdir()
    pd.DataFrame(check).to_csv(tmp_path / "kernel_relu_lr_d100" / "runs.csv", index=False)
    block = kernel.final_block(tmp_path)
    assert "ReLU at depth 100 at lr 0.0003 (seeds 100–104, 6 epochs;" in block
    assert "learned 5/5 [0.48, 1.00], test accuracy 0.802 ± 0.002 (mean ± sd), against 0.602 ± 0.002" in block
    tat = next(line for line in block.splitlines() if line.startswith("- TAT: "))
    low, high = stats.welch_interval([0.7 + s / 1000 for s in range(100, 105)],
                                     [0.96 + s / 10000 for s in range(100, 105)])[1:]  # fmt: skip
    assert tat.startswith(f"- TAT: {stats.fmt_ci(0.96 + 0.0102 - 0.802, low, high)}, p ")
