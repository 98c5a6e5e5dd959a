"""The factorial's readings in the report, on a fake 2x2 factorial built in tmp_path with the smoke preset's
real configurations (so training FLOPs can be counted) and numbers chosen by hand: collapse rates with exact
intervals, the readings with all runs / without collapsed runs / by cell medians, a label that changes with
how collapse is counted (said on the first screen), matched steps and FLOPs from history.jsonl, the proxy's
regime, the smallest detectable effects, one labelled training curve per variant, and report.json."""

from __future__ import annotations

import json
import math
import statistics
from pathlib import Path

import pytest

from parity.report import stats, write_report
from parity.report.collapse import collapse_limit, collapse_rates, without_collapsed
from parity.report.compute import gflop_per_step, value_at
from parity.report.plots import curves_figure
from parity.report.readings import ALL_RUNS, WITHOUT_COLLAPSED, read_factorial
from parity.report.results import load_results

GROUPS = ("decoder", "optimisation")
SEEDS = (0, 1, 2)
CONSTANT = 12.3  # the constant-colour predictor: runs below 12.8 have collapsed
REFERENCES = {"constant_colour_db": CONSTANT, "per_image_mean_colour_db": 14.0, "bicubic_x2_db": 21.0, "images": 4}
# PSNR per seed at each cell's end. optimisation alone collapses at every seed; with the decoder at one.
CELLS = {(): [15.0, 15.2, 15.1], ("decoder",): [17.0, 17.3, 16.9], ("optimisation",): [12.31, 12.32, 12.33],
         ("decoder", "optimisation"): [12.35, 19.0, 19.2]}
STEPS = {False: 20, True: 40}  # the optimisation group trains twice as long
SLOPE = 0.05  # dB per step before the end


def cell_id(cell) -> str:
    return "with-" + ("+".join(cell) or "none")


def configs():
    from parity.experiment.presets import preset
    from parity.runtime.matrix import matrix_variants

    return {tuple(v.groups): v for v in matrix_variants("factorial", preset("smoke").baselines(), GROUPS)}


def history(psnr: float, steps: int) -> list[dict]:
    return [{"step": s, "epoch": 1, "lr": 1e-3, "train_loss": 0.05, "test_psnr": psnr - SLOPE * (steps - s),
             "train_time_s": float(s)} for s in range(10, steps + 1, 10)]


def metrics(psnr: float, steps: int, seed: int) -> dict:
    per_image = [psnr - 1.0, psnr + 1.0]
    mse = [10 ** (-p / 10) for p in per_image]
    return {"test": {"psnr": psnr, "psnr_headline": psnr, "psnr_form": "per-image", "ssim": 0.5,
                     "per_image": {"psnr": per_image, "mse": mse, "ssim": [0.5, 0.5]}},
            "steps": steps, "params": 1000, "train_images_per_s": 10.0, "seed": seed}


def make_factorial(root: Path, cells: dict = CELLS) -> Path:
    from parity.experiment.config import to_yaml
    from parity.experiment.presets import preset

    folder = root / "smoke-factorial"
    folder.mkdir(parents=True)
    variants = configs()
    nb, og = preset("smoke").baselines()
    spec = {"kind": "factorial", "preset": "smoke", "seeds": list(SEEDS), "command": "parity ablate --matrix factorial",
            "created": "2025-01-01T00:00:00", "environment": {}, "groups": list(GROUPS), "references": REFERENCES,
            "baselines": {"notebook": nb.to_dict(), "original": og.to_dict()}, "preset_description": "fake",
            "variants": [{"id": cell_id(c), "label": " + ".join(c) or "notebook", "base": "notebook", "toggles": [],
                          "role": "baseline" if not c else "variant", "skipped": None, "groups": list(c)}
                         for c in cells]}
    (folder / "matrix.json").write_text(json.dumps(spec))
    for cell, values in cells.items():
        steps = STEPS["optimisation" in cell]
        for seed, psnr in zip(SEEDS, values):
            run = folder / cell_id(cell) / f"seed-{seed}"
            run.mkdir(parents=True)
            cfg = variants[cell].config.copy()
            cfg.train.seed = seed
            (run / "config.yaml").write_text(to_yaml(cfg))
            (run / "history.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history(psnr, steps)))
            (run / "metrics.json").write_text(json.dumps(metrics(psnr, steps, seed)))
            (run / "status.json").write_text(json.dumps({"state": "done", "step": steps, "total_steps": steps}))
    return folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return make_factorial(tmp_path_factory.mktemp("readings") / "runs")


@pytest.fixture(scope="module")
def results(folder):
    return load_results(folder)


@pytest.fixture(scope="module")
def readings(results):
    matrix = next(results.matrices.itertuples())
    return read_factorial(matrix, results.runs, results.histories, collapse_limit(REFERENCES))


@pytest.fixture(scope="module")
def report(folder, tmp_path_factory) -> Path:
    return write_report(folder, tmp_path_factory.mktemp("out") / "r.md")


@pytest.fixture(scope="module")
def summary(report) -> dict:
    return json.loads(report.with_suffix(".json").read_text())


F = frozenset
FULL = F(GROUPS)


# ------------------------------------------------------------------------------------------ collapse


def test_collapse_rates_with_exact_intervals(results):
    matrix = next(results.matrices.itertuples())
    rates = collapse_rates(results.runs, matrix.variants, collapse_limit(REFERENCES)).set_index("variant")
    assert rates.loc["with-optimisation", ["finished", "collapsed"]].tolist() == [3, 3]
    assert rates.loc["with-decoder+optimisation", "collapsed_seeds"] == [0]
    one = stats.rate_interval(1, 3)
    assert rates.loc["with-decoder+optimisation", ["rate", "low", "high"]].tolist() == \
        pytest.approx([1 / 3, one.low, one.high])
    assert rates.loc["with-none", "high"] == pytest.approx(1 - 0.025 ** (1 / 3))  # 0 of 3: [0, 0.71]
    assert collapse_rates(results.runs, matrix.variants, None).empty  # no references: collapse is not told


def test_without_collapsed_keeps_cells_that_always_collapse():
    cells = {F(c): dict(zip(SEEDS, v)) for c, v in CELLS.items()}
    kept, every = without_collapsed(cells, CONSTANT + 0.5)
    assert every == [F({"optimisation"})] and kept[F({"optimisation"})] == cells[F({"optimisation"})]
    assert kept[FULL] == {1: 19.0, 2: 19.2} and kept[F()] == cells[F()]


def test_three_readings_by_hand(readings):
    everything, without = readings.readings[ALL_RUNS], readings.readings[WITHOUT_COLLAPSED]
    assert readings.dropped == 1 and readings.every_seed_collapsed == [F({"optimisation"})]
    assert everything.cell_means[FULL] == pytest.approx((12.35 + 19.0 + 19.2) / 3)
    assert without.cell_means[FULL] == pytest.approx(19.1)
    # group leave-one-out of optimisation: v(all) - v(decoder), two cells, each its own variance
    d = [17.0, 17.3, 16.9]
    loo = without.contrast({FULL: 1.0, F({"decoder"}): -1.0})
    assert loo.mean == pytest.approx(19.1 - statistics.mean(d))
    assert loo.se ** 2 == pytest.approx(statistics.variance([19.0, 19.2]) / 2 + statistics.variance(d) / 3)
    # cell medians: the same contrasts on each cell's median seed
    medians = {F(c): statistics.median(v) for c, v in CELLS.items()}
    assert readings.median("leave-one-out", "optimisation") == pytest.approx(medians[FULL] - medians[F({"decoder"})])
    assert readings.median("share", "decoder") == pytest.approx(
        stats.factorial_contrasts(medians, GROUPS)[("shapley", "decoder")])


def test_a_label_that_depends_on_collapse_is_found(readings):
    changed = {(c["quantity"], c["group"]) for c in readings.collapse_dependent()}
    assert ("leave-one-out", "optimisation") in changed  # -0.22 (not measured) with all runs, +2.03 without
    flip = next(c for c in readings.collapse_dependent() if c["group"] == "optimisation"
                and c["quantity"] == "leave-one-out")
    assert not flip["all_runs"].excludes_zero and flip["without"].low > 0


def test_the_first_screen_says_collapse_changes_the_answer(report):
    text = report.read_text()
    first = text[:text.index("**Regime.**")]
    assert "**How collapse is counted changes the answer**" in first
    assert "`optimisation`'s leave-one-out" in first and "without the collapsed runs" in first
    answer = text[:text.index("## Evaluation-side")]
    assert "**The shares three ways.**" in answer and "cell medians" in answer
    assert "keeps its runs there" in answer  # how a cell where every seed collapsed is treated


def test_no_collapse_says_so(tmp_path):
    clean = {c: [v + 4.0 if v < 13 else v for v in values] for c, values in CELLS.items()}
    text = write_report(make_factorial(tmp_path / "runs", clean), tmp_path / "r.md").read_text()
    assert "**Collapse does not enter the answer**" in text[:text.index("**Regime.**")]
    assert "No run collapsed, so **all runs** and **without collapsed runs** are the same reading" in text


# ------------------------------------------------------------------------------------------ matched budgets


def test_value_at_reads_the_last_evaluation_before_the_budget():
    curve = [(10, 1.0), (20, 2.0), (30, 3.0)]
    assert value_at(curve, 25) == (20, 2.0) and value_at(curve, 30) == (30, 3.0) and value_at(curve, 5) is None
    assert value_at(curve, 40, scale=2.0) == (20, 2.0)


def test_matched_steps_by_hand(readings):
    budget = readings.budgets["steps"]
    assert budget.budget == 20 and budget.analysis is not None
    # at step 20 the 40-step cells stand 20 steps x 0.05 dB below their end; the others are at their end
    at = budget.analysis.cell_means
    assert at[FULL] == pytest.approx(statistics.mean(CELLS[("decoder", "optimisation")]) - 1.0)
    assert at[F()] == pytest.approx(statistics.mean(CELLS[()]))


def test_matched_flops_from_the_configs(readings, folder):
    gflop = readings.gflop_per_step
    assert set(gflop) == {cell_id(c) for c in CELLS} and all(g > 0 for g in gflop.values())
    assert gflop["with-none"] == pytest.approx(gflop_per_step(folder / "with-none" / "seed-1"))  # any seed
    budget = readings.budgets["flops"]
    ends = {v: STEPS["optimisation" in v] * g for v, g in gflop.items()}
    assert budget.budget == pytest.approx(min(ends.values()))
    cheapest = min(ends, key=ends.get)
    cell = next(c for c in CELLS if cell_id(c) == cheapest)
    assert budget.analysis.cell_means[F(cell)] == pytest.approx(statistics.mean(CELLS[cell]))  # read at its end


def test_a_broken_config_loses_the_flops_reading_not_the_report(tmp_path):
    folder = make_factorial(tmp_path / "runs")
    for seed in SEEDS:
        (folder / "with-decoder" / f"seed-{seed}" / "config.yaml").write_text("model: [unclosed\n")
    out = write_report(folder, tmp_path / "r.md")
    assert "FLOPs per step could not be counted for with-decoder" in out.read_text()
    summary = json.loads(out.with_suffix(".json").read_text())
    matched = summary["factorials"][0]["compute_matched"]
    assert matched["flops"]["reading"] is None and matched["steps"]["reading"] is not None


def test_report_has_matched_budgets_beside_the_end(report):
    text = report.read_text()
    answer = text[:text.index("## Evaluation-side")]
    assert "**At matched budgets.**" in answer and "at step 20" in answer and "training GFLOP" in answer
    assert "end of each run's budget" in answer


def test_one_labelled_line_per_variant(results):
    matrix = next(results.matrices.itertuples())
    fig = curves_figure(results.histories, matrix.variants, "t")
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels == [v["label"] for v in matrix.variants]
    lines = fig.axes[0].get_lines()
    assert len(lines) == len(CELLS)
    # each line is the mean over seeds
    full = next(line for line in lines if line.get_label() == "decoder + optimisation")
    assert full.get_ydata()[-1] == pytest.approx(statistics.mean(CELLS[("decoder", "optimisation")]))
    per_flop = curves_figure(results.histories, matrix.variants, "t", scale={"with-none": 2.0})
    assert [line.get_label() for line in per_flop.axes[0].get_lines()] == ["notebook"]
    assert per_flop.axes[0].get_lines()[0].get_xdata()[-1] == 40.0


# ------------------------------------------------------------------------------------------ regime, power, JSON


def test_the_proxy_regime_is_stated(report, summary):
    sides = {r["side"]: r for r in summary["proxy_regime"]["sides"]}
    assert sides["original"]["paper_lp_per_patch"] == 1.0 and sides["notebook"]["paper_lp_per_patch"] == 0.5
    assert sides["original"]["paper_steps"] == 124_960 and sides["notebook"]["paper_steps"] == 31_260
    from parity.experiment.presets import preset

    assert sides["notebook"]["dim"] == preset("smoke").baselines()[0].model.dim
    assert sides["notebook"]["paper_dim"] == 256
    og = statistics.mean(CELLS[("decoder", "optimisation")])
    assert summary["proxy_regime"]["original_minus_bicubic_db"] == pytest.approx(og - 21.0)
    text = report.read_text()
    assert "**This is a proxy**" in text[:text.index("## Evaluation-side")] and "256 / 256 = 1.00" in text


def test_detectable_effects_are_printed(report, summary):
    text = report.read_text()
    assert "**Smallest effect detected with 80% power**" in text and "5 seeds" in text and "8 seeds" in text
    found = summary["factorials"][0]["mde_db"]
    assert "noncentral t" in found["method"]
    decoder = found["share"]["decoder"]
    assert float(decoder["3"]) > float(decoder["5"]) > float(decoder["8"]) > 0
    assert summary["mde_db"][0]["matrix"] == "smoke-factorial"


def test_report_json_holds_runs_collapse_and_readings(summary):
    for stable in ("seeds", "gap_db", "baselines", "references", "attribution", "effects"):
        assert stable in summary
    runs = {(r["variant"], r["seed"]): r for r in summary["runs"]}
    assert len(runs) == 12 and runs[("with-decoder+optimisation", 0)]["collapsed"] is True
    assert runs[("with-decoder+optimisation", 1)] == {"matrix": "smoke-factorial", "seed": 1, "psnr_db": 19.0,
                                                      "variant": "with-decoder+optimisation", "collapsed": False}
    rates = {r["variant"]: r for r in summary["collapse"]}
    assert rates["with-optimisation"]["rate"] == 1.0 and rates["with-optimisation"]["ci_low"] == pytest.approx(
        0.025 ** (1 / 3))
    entry = summary["factorials"][0]
    cells = {tuple(c["cell"]): c for c in entry["cells"]}
    assert cells[("decoder", "optimisation")]["collapsed_seeds"] == [0]
    assert cells[("decoder", "optimisation")]["collapse_ci"] == pytest.approx(
        [stats.rate_interval(1, 3).low, stats.rate_interval(1, 3).high])
    readings = entry["readings"]
    assert set(readings) == {"all_runs", "without_collapsed", "cell_medians"}
    without = {a["group"]: a for a in readings["without_collapsed"]["attribution"]}
    assert sum(a["share_db"] for a in without.values()) == pytest.approx(19.1 - 15.1)
    assert {a["group"] for a in readings["cell_medians"]["attribution"]} == set(GROUPS)
    assert entry["collapse_dependent"] and entry["every_seed_collapsed_cells"] == [["optimisation"]]
    assert entry["compute_matched"]["steps"]["budget"] == 20
    shares = {a["group"]: a for a in summary["attribution"]}  # the stable key: the all-runs Welch reading
    assert sum(a["share_db"] for a in shares.values()) == pytest.approx(summary["gap_db"])
    assert all(a["ci_low_db"] <= a["share_db"] <= a["ci_high_db"] for a in shares.values())


def test_single_toggle_matrices_read_simultaneous_intervals(tmp_path):
    """A leave-one-out matrix: the report shows each effect's Holm and simultaneous intervals, the verdict reads
    the simultaneous one, and the sensitivity line gives the detectable effect at 3, 5 and 8 seeds."""
    folder = tmp_path / "runs" / "smoke-leave-one-out"
    folder.mkdir(parents=True)
    diffs = ("patch-size", "depth", "num-lp", "decoder")
    psnr = {"original": [20.0, 20.3, 20.1], "original-patch-size": [18.6, 18.8, 18.9],
            "original-depth": [19.9, 20.2, 20.1], "original-num-lp": [19.0, 19.4, 19.0],
            "original-decoder": [17.0, 17.1, 17.3]}
    variants = [{"id": "original", "label": "original", "base": "original", "toggles": [], "role": "baseline",
                 "skipped": None}] + [{"id": f"original-{d}", "label": d, "base": "original", "toggles": [d],
                                       "role": "variant", "skipped": None} for d in diffs]
    (folder / "matrix.json").write_text(json.dumps({"kind": "leave-one-out", "preset": "smoke", "seeds": list(SEEDS),
                                                    "variants": variants, "references": REFERENCES}))
    for vid, values in psnr.items():
        for seed, value in zip(SEEDS, values):
            run = folder / vid / f"seed-{seed}"
            run.mkdir(parents=True)
            (run / "metrics.json").write_text(json.dumps(metrics(value, 20, seed)))
            (run / "status.json").write_text(json.dumps({"state": "done"}))
    out = write_report(folder, tmp_path / "r.md")
    text = out.read_text()
    assert "simultaneous interval" in text and "**Sensitivity.**" in text
    effects = {e["difference"]: e for e in json.loads(out.with_suffix(".json").read_text())["effects"]}
    decoder = effects["decoder"]
    assert decoder["sim_low_db"] <= decoder["ci_low_db"] and decoder["ci_high_db"] <= decoder["sim_high_db"]
    assert decoder["sim_confidence"] == pytest.approx(1 - 0.05 / 4)
    detect = json.loads(out.with_suffix(".json").read_text())["mde_db"][0]
    assert detect["family_size"] == 4 and set(detect["detectable_db"]) == {"3", "5", "8"}
    assert not math.isnan(detect["detectable_db"]["3"])
