"""The learning-rate pilot: runs on the validation split, the one rule for both sides, its report."""

import json
import math

import pandas as pd

from parity.cli import main
from parity.report.pilot import chosen_rates, pilot_table
from parity.runtime.pilot import plan_pilot


def _runs(rows):
    return pd.DataFrame([{"side": s, "multiplier": m, "lr": m * 1e-4, "seed": k, "state": "done" if p else "failed",
                          "psnr": p if p else math.nan} for s, m, k, p in rows])


def test_rule_takes_the_best_mean_among_multipliers_with_every_seed_off_the_plateau():
    refs = {"per_image_mean_colour_db": 14.5}
    runs = _runs([("notebook", 3, 0, 15.0), ("notebook", 3, 1, 15.2),
                  ("notebook", 10, 0, 17.0), ("notebook", 10, 1, 14.0),  # best mean but one seed on the plateau
                  ("notebook", 30, 0, 15.5), ("notebook", 30, 1, 15.5),
                  ("original", 3, 0, 18.0), ("original", 3, 1, 18.0),
                  ("original", 10, 0, 18.0), ("original", 10, 1, 18.0),  # a tie: the smaller multiplier
                  ("original", 30, 0, 20.0), ("original", 30, 1, None)])  # a failed seed disqualifies
    chosen = chosen_rates(pilot_table(runs, refs))
    assert chosen["notebook"]["multiplier"] == 30 and chosen["original"]["multiplier"] == 3


def test_no_multiplier_passing_chooses_none():
    runs = _runs([("notebook", 3, 0, 13.0), ("original", 3, 0, 12.9)])
    assert chosen_rates(pilot_table(runs, {"per_image_mean_colour_db": 14.5})) == {"notebook": None, "original": None}


def test_pilot_scores_on_validation_images(tmp_path):
    plan = plan_pilot("smoke", [1, 10], 2, tmp_path)
    assert len(plan.jobs) == 2 * 2 * 2
    assert {j.cfg.data.eval_split for j in plan.jobs} == {"validation"}
    original = [j.cfg.train.lr for j in plan.jobs if j.variant == "original-x10"]
    assert original == [5e-3, 5e-3]  # 10x the source's 5e-4, whatever the preset sets
    assert plan.manifest["references"]["images"] == plan.jobs[0].cfg.data.test_subset


def test_pilot_command_trains_and_reports(tmp_path, capsys):
    out = tmp_path / "runs"
    code = main(["pilot", "--preset", "smoke", "--multipliers", "10", "--seeds", "1", "--out", str(out),
                 "--set", "train.max_steps=4", "--report", str(tmp_path / "pilot.md")])
    assert code == 0
    text = (tmp_path / "pilot.md").read_text()
    assert "**Rule**" in text and "notebook" in text and "![validation curves]" in text
    data = json.loads((tmp_path / "pilot.json").read_text())
    assert {r["state"] for r in data["runs"]} == {"done"} and set(data["chosen"]) == {"notebook", "original"}
    assert main(["pilot", "--multipliers", "a,b"]) == 2


def test_schedule_command_prints_the_rate_of_each_schedule_epoch(capsys):
    assert main(["schedule", "--preset", "smoke", "--baseline", "original", "--train-images", "256"]) == 0
    out = capsys.readouterr().out
    assert "40 of them" in out and "0.400" in out and "1e-08" in out
