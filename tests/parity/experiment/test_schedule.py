"""The schedule: sub-epochs keep the paper's learning-rate shape in a proxy with fewer epochs."""

import pytest

from parity.core.errors import ParityError
from parity.experiment.config import notebook_baseline, original_baseline, set_field, validate
from parity.experiment.presets import preset
from parity.experiment.schedule import lr_at_step, lr_for_epoch, lr_table, step_plan


def test_one_subepoch_is_the_sources_schedule():
    cfg = original_baseline()
    plan = step_plan(cfg, 160)  # 10 steps an epoch at batch 16
    for step in range(plan.total_steps):
        assert lr_at_step(cfg.train, plan, step) == lr_for_epoch(cfg.train, step // 10 + 1)


@pytest.mark.parametrize("side", ["notebook", "original"])
def test_a_proxy_with_subepochs_runs_the_papers_schedule_compressed(side):
    """4 epochs x 10 sub-epochs of the proxy set the same rates, in the same order, as the 40 epochs of
    the paper's original (20 for the notebook): warm-up included, 1e-8 only in the last fortieth."""
    paper = (original_baseline if side == "original" else notebook_baseline)().train
    proxy = (original_baseline if side == "original" else notebook_baseline)()
    set_field(proxy, "train.epochs", paper.epochs // 10)
    set_field(proxy, "train.lr_subepochs", 10)
    validate(proxy)
    rows = lr_table(proxy, 1000)
    assert [r["lr"] for r in rows] == [lr_for_epoch(paper, e) for e in range(1, paper.epochs + 1)]
    assert sum(r["steps"] for r in rows) == step_plan(proxy, 1000).total_steps
    assert max(r["steps"] for r in rows) - min(r["steps"] for r in rows) <= 1  # equal parts
    if side == "original":
        assert rows[0]["lr"] == pytest.approx(0.4 * paper.lr) and rows[3]["lr"] == paper.lr  # the warm-up runs
        assert [r["lr"] for r in rows].count(1e-8) == 1


def test_presets_keep_the_papers_warmup_and_final_epoch():
    for name in ("smoke", "cpu-study"):
        nb, orig = preset(name).baselines()
        for cfg, paper in ((orig, original_baseline()), (nb, notebook_baseline())):
            t = cfg.train
            assert t.epochs * t.lr_subepochs == paper.train.epochs  # the paper's schedule length
            assert (t.warmup_epochs, t.t_max) == (paper.train.warmup_epochs, paper.train.t_max)
        rates = [r["lr"] for r in lr_table(orig, 4096)]
        assert rates[0] < rates[3] == orig.train.lr and rates[-1] == 1e-8 and rates.count(1e-8) == 1


def test_warmup_longer_than_the_schedule_is_one_line():
    cfg = original_baseline()
    set_field(cfg, "train.epochs", 4)
    with pytest.raises(ParityError, match="lr_subepochs"):
        validate(cfg)
    set_field(cfg, "train.lr_subepochs", 10)
    validate(cfg)
