"""`parity ablate --dry-run`: the plan and its totals, from one measured step per configuration; nothing written."""

from __future__ import annotations

from parity.cli import main
from parity.experiment.presets import preset
from parity.experiment.schedule import step_plan
from parity.runtime.estimate import StepCost, dry_run, measure_step
from parity.runtime.executors import run_matrix
from parity.runtime.matrix import plan_matrix

from .test_matrix import TINY


def test_dry_run_totals_from_given_steps_and_counts_finished_runs(tmp_path):
    only = ["notebook+lr"]
    run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)  # seed 0 of both variants finished
    plan = plan_matrix("one-at-a-time", "smoke", 3, tmp_path, TINY, only, write=False)
    measured = []

    def fake(cfg):
        measured.append(cfg.name)
        return StepCost(seconds=0.5, peak_mib=100.0)

    rows = dry_run([plan], measure=fake)
    assert [(r["variant"], r["done"], r["to_do"]) for r in rows] == [("notebook", 1, 2), ("notebook+lr", 1, 2)]
    assert all(r["steps_per_run"] == 2 and r["seconds_to_do"] == 2 * 2 * 0.5 for r in rows)  # max_steps=2
    assert len(measured) == 2  # one step per configuration, not per seed


def test_dry_run_writes_nothing_and_prints_the_total(tmp_path, capsys):
    out = tmp_path / "plan"
    args = ["ablate", "--matrix", "one-at-a-time", "--preset", "smoke", "--seeds", "2", "--out", str(out),
            "--only", "notebook+lr", "--dry-run", *[a for item in TINY for a in ("--set", item)]]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "total: 4 run(s) to do (0 done)" in text and "hours of training" in text
    assert not out.exists()


def test_one_step_measured_in_a_fresh_process():
    nb, _ = preset("smoke").baselines()
    cost = measure_step(nb, device="cpu")
    assert cost.seconds > 0 and cost.peak_mib > 0


def test_a_run_left_half_way_counts_only_its_remaining_steps(tmp_path):
    from parity.runtime.estimate import estimate_runs
    from parity.runtime.rundir import RunDir

    nb, _ = preset("smoke").baselines()
    run = RunDir(tmp_path / "run")
    run.start(nb)
    total = step_plan(nb, nb.data.train_subset).total_steps
    run.write_status("running", step=10, total_steps=total)
    row = estimate_runs("train", nb.name, nb, [run.path], measure=lambda cfg: StepCost(seconds=1.0, peak_mib=1.0))
    assert (row["done"], row["to_do"], row["steps_per_run"], row["seconds_to_do"]) == (0, 1, total, total - 10.0)


def test_train_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(["train", "--preset", "smoke", "--baseline", "original", "--out", str(out), "--dry-run",
                 *[a for item in TINY for a in ("--set", item)]]) == 0
    text = capsys.readouterr().out
    assert "parity train --dry-run" in text and "total: 1 run(s) to do (0 done)" in text
    assert not out.exists()
