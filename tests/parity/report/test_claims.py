"""The seed audit claim by claim, jitter robustness and the paper-scale cost, on fake matrices whose numbers are
worked out by hand."""

from __future__ import annotations

import json

import pytest

from parity.report import stats, write_report
from parity.report.claims import claim_readings, summary
from parity.report.cost import measured_gpu_steps, paper_cost
from parity.report.effects import compute_effects
from parity.report.jitter import robustness
from parity.report.results import load_results

from .test_report import make_matrix, variant


def jittered(psnr: float, robust: bool) -> dict:
    """A run's PSNR under test jitter: a robust model loses 0.1 dB per level, another 1 dB."""
    step = 0.1 if robust else 1.0
    return {"0.0": psnr, "0.01": psnr - step, "0.05": psnr - 2 * step}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """One-at-a-time over the notebook (seeds 0, 1): num-lp collapses on seed 1 (12.1 dB, under the constant
    colour 12.0 + 0.5), jitter-train trades 0.2 dB of clean PSNR for robustness; leave-one-out over the
    original with spatial-bias worth 2 dB."""
    root = tmp_path_factory.mktemp("claims") / "runs"
    nb = make_matrix(root, "one-at-a-time",
                     [variant("notebook", role="baseline"), variant("notebook+num-lp", ["num-lp"]),
                      variant("notebook+spatial-bias", ["spatial-bias"]),
                      variant("notebook+jitter-train", ["jitter-train"])],
                     {"notebook": [20.0, 21.0], "notebook+num-lp": [20.5, 12.1],
                      "notebook+spatial-bias": [20.1, 21.05], "notebook+jitter-train": [19.8, 20.8]}, {})
    for vid, robust in (("notebook", False), ("notebook+jitter-train", True)):
        for seed in (0, 1):
            path = nb / vid / f"seed-{seed}" / "metrics.json"
            m = json.loads(path.read_text())
            m["jitter"]["same"] = jittered(m["test"]["psnr"], robust)
            path.write_text(json.dumps(m))
    make_matrix(root, "leave-one-out",
                [variant("original", base="original", role="baseline"),
                 variant("original-spatial-bias", ["spatial-bias"], base="original"),
                 variant("original-depth", ["depth"], base="original")],
                {"original": [25.0, 25.4], "original-spatial-bias": [23.0, 23.35], "original-depth": [25.0, 25.38]}, {})
    results = load_results(root)
    return results, compute_effects(results)


def claim(rows, diff_id):
    return next(r for r in rows if r["difference"] == diff_id)


def test_every_seed_rated_claim_has_a_row_and_each_direction_its_reading(study):
    results, effects = study
    rows = claim_readings(effects)
    assert [r["difference"] for r in rows] == ["decoder", "spatial-bias", "modulation-entry", "pixel-sampling",
                                               "patch-size", "num-lp", "depth", "lr", "warmup", "epochs",
                                               "jitter-train"]
    spatial = claim(rows, "spatial-bias")
    assert [r["direction"] for r in spatial["readings"]] == ["removed from the original", "added to the notebook"]
    removed = spatial["readings"][0]
    assert removed["effect_db"] == pytest.approx(2.025)  # (2.0 + 2.05) / 2
    assert removed["ci_low_db"] <= 2.0 and removed["ci_high_db"] >= 2.05
    assert claim(rows, "decoder")["readings"] == [] and claim(rows, "decoder")["summary"] == "not run"


def test_a_collapsed_run_is_named_and_read_without(study):
    _, effects = study
    num_lp = claim(claim_readings(effects), "num-lp")["readings"][0]
    assert num_lp["collapsed_seeds"] == [1] and num_lp["own_variance"]
    assert num_lp["without_collapsed_db"] == pytest.approx(0.5) and num_lp["without_collapsed_seeds"] == 1
    # kept out of the pool: the clean effects' interval is not widened by the 8.9 dB swing
    spatial = effects[(effects["kind"] == "one-at-a-time") & (effects["difference"] == "spatial-bias")].iloc[0]
    assert spatial["sim_high"] - spatial["sim_low"] < 5.0
    assert not spatial["own_variance"]


def test_an_interval_below_the_claimed_band_overstates_the_claim():
    ends = stats.Interval(0.1, -0.4, 0.8, 3, 10, 0.1, 0.5, 0.99)
    assert stats.bounded_below(ends, "large") == stats.OVERSTATED  # every value < 1 dB
    assert stats.bounded_below(ends, "moderate") == stats.NOT_MEASURED  # 0.8 is moderate
    assert stats.bounded_below(ends, "small") == stats.NOT_MEASURED
    assert stats.bounded_below(stats.Interval(0.1, -0.2, 0.25, 3, 10, 0.1, 0.5, 0.99), "moderate") == \
        stats.OVERSTATED


def test_the_directions_together():
    def r(word):
        return {"claim_verdict": word, "seeds": 3}

    assert summary([r(stats.CONFIRMED), r(stats.CONFIRMED)]) == "holds"
    assert summary([r(stats.CONFIRMED), r(stats.NOT_MEASURED)]) == "holds in one direction"
    assert summary([r(stats.OVERSTATED), r(stats.CONTRADICTED)]) == "refuted in every direction"
    assert summary([r(stats.CONFIRMED), r(stats.OVERSTATED)]) == "mixed: the directions disagree"
    assert summary([r(stats.NOT_MEASURED), r(stats.NOT_MEASURED)]) == "not measured"
    assert summary([{"claim_verdict": stats.NO_RUNS, "seeds": 0}]) == "not run"


def test_jitter_robustness_by_hand(study):
    results, effects = study
    (pair,) = robustness(results.runs, effects)
    assert (pair["with"], pair["without"], pair["seeds"]) == ("notebook+jitter-train", "notebook", [0, 1])
    by_std = {r["std"]: r for r in pair["stds"]}
    assert by_std[0.0]["change"]["mean_db"] == pytest.approx(-0.2)  # what jitter costs a clean reconstruction
    assert by_std[0.05]["drop_with"]["mean_db"] == pytest.approx(-0.2)
    assert by_std[0.05]["drop_without"]["mean_db"] == pytest.approx(-2.0)
    assert by_std[0.05]["drop_change"]["mean_db"] == pytest.approx(1.8)
    assert by_std[0.05]["drop_change"]["confidence"] == pytest.approx(1 - 0.05 / 2)  # Bonferroni over 2 stds
    assert "drop_change" not in by_std[0.0]
    assert pair["collapsed_seeds"] == [] and pair["stds_without_collapsed"] is None


def test_paper_cost_prices_baselines_at_their_step_and_mixes_as_a_range(study, tmp_path):
    results, _ = study
    gpu = tmp_path / "gpu.md"
    gpu.write_text("Device: NVIDIA H200; torch\n\n| port | batch | scan | median s |\n|---|---|---|---|\n"
                   "| original | 16 | parallel (PyTorch on CUDA) | 0.1000 (0.09-0.11) |\n"
                   "| original | 16 | chunked | 1.0 |\n| notebook | 32 | parallel (PyTorch on CUDA) | 0.0800 (x) |\n")
    measured = measured_gpu_steps(gpu)
    assert measured["steps"] == {"original": (0.1, 16), "notebook": (0.08, 32)} and measured["device"] == "NVIDIA H200"
    cost = paper_cost(list(results.matrices.itertuples()), measured)
    loo = next(m for m in cost["per_matrix"] if m["matrix"] == "smoke-leave-one-out")
    # the original drops its last batch: 40 epochs of floor(49999 / 16) = 3124 steps; the notebook keeps it, 1563
    assert cost["baselines_gpu_hours_per_seed"] == pytest.approx((20 * 1563 * 0.08 + 40 * 3124 * 0.1) / 3600)
    assert loo["runs"] == 6 and loo["gpu_hours_low"] < loo["gpu_hours_high"]
    assert loo["gpu_hours_low"] >= 2 * 40 * 3124 * 0.1 / 3600  # the baseline's two runs at least
    assert paper_cost([], {}) is None
    assert measured_gpu_steps(tmp_path / "absent.md") == {}


def test_the_report_puts_the_claims_on_its_first_screen_and_in_its_json(study, tmp_path):
    results, _ = study
    out = write_report(results.root, tmp_path / "study.md")
    text = out.read_text()
    answer = text.split("## Jitter in training")[0]
    assert "**The seed audit, claim by claim.**" in answer and "seed 1 collapsed, without it +0.50 (1 seed)" in answer
    assert "## Jitter in training, as the seed audit means it" in text and "jitter-robustness.png" in text
    assert "## What the `paper` preset would cost" in text
    summary_json = json.loads(out.with_suffix(".json").read_text())
    assert {c["difference"] for c in summary_json["claims"]} >= {"spatial-bias", "jitter-train"}
    assert summary_json["jitter_robustness"][0]["with"] == "notebook+jitter-train"
    assert (tmp_path / "study_files" / "jitter-robustness.png").is_file()


def test_a_finished_run_without_its_history_is_named(study, tmp_path):
    import shutil

    results, _ = study
    root = tmp_path / "runs"
    shutil.copytree(results.root, root)
    (root / "smoke-one-at-a-time" / "notebook+num-lp" / "seed-0" / "history.jsonl").unlink()
    text = write_report(root, tmp_path / "r.md").read_text()
    assert "**Finished runs with parts missing.**" in text
    row = next(line for line in text.splitlines() if "notebook+num-lp" in line and "history.jsonl" in line)
    assert "| 0 " in row
