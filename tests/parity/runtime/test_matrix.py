"""Matrix plans: the factorial's cells, and the batch-0 defect kept out of mixes the original never trains."""

import pytest

from parity.experiment.config import config_diff
from parity.experiment.differences import GROUPS
from parity.experiment.kinds import factorial_cell_id
from parity.experiment.presets import preset
from parity.runtime.matrix import BATCH0_FIX, factorial_cells, matrix_variants


def test_factorial_has_every_subset_and_its_corners_are_the_baselines_on_trained_fields():
    nb, orig = preset("smoke").baselines()
    variants = matrix_variants("factorial", (nb, orig))
    assert len(variants) == 2 ** len(GROUPS)
    assert variants[0].id == "with-none" and variants[0].role == "baseline"
    assert config_diff(variants[0].config, nb).keys() <= {"name", "data.eval_split"}
    assert {v.config.data.eval_split for v in variants} == {nb.data.split}  # one evaluation set for all
    full = variants[-1]
    assert full.groups == list(GROUPS)
    # the full cell differs from the original only in what is scored (evaluation-side differences), and in
    # the notebook's scaled T_max, which the original's schedule (lr_horizon 'end') never reads
    assert full.config.train.lr_horizon == "end"
    assert set(config_diff(full.config, orig)) <= {"data.split", "data.resize_crop", "eval.psnr", "train.t_max",
                                                    "data.eval_split"}


def test_factorial_groups_choose_the_factors():
    pair = preset("smoke").baselines()
    ids = [v.id for v in matrix_variants("factorial", pair, ("decoder", "optimisation"))]
    assert ids == ["with-none", "with-decoder", "with-optimisation", "with-decoder+optimisation"]
    assert factorial_cells(("a", "b")) == [(), ("a",), ("b",), ("a", "b")]
    assert factorial_cell_id(()) == "with-none"


def test_one_at_a_time_measures_the_seed_rated_jitter_on_the_notebook_and_nothing_else_changes():
    nb, orig = preset("smoke").baselines()
    variants = {v.id: v for v in matrix_variants("one-at-a-time", (nb, orig))}
    jitter = variants["notebook+jitter-train"]
    assert jitter.toggles == ["jitter-train"] and jitter.skipped is None
    assert config_diff(jitter.config, variants["notebook"].config) == {"train.jitter_std": (0.01, 0.0)}
    assert "notebook+fix-batch0-coords" not in variants  # fixes of the original's defects are the improvements'


@pytest.mark.parametrize("faithful", [False, True])
def test_lainr_on_sampled_pixels_decodes_per_sample_unless_faithful(faithful):
    pair = preset("smoke").baselines()
    variants = {v.id: v for v in matrix_variants("factorial", pair, ("decoder", "sampling"), faithful)}
    mixed = variants["with-decoder"]  # LAINR decoder, the notebook's sampled pixels
    assert mixed.config.model.per_sample_coords is (not faithful)
    assert (mixed.fixed == BATCH0_FIX) is (not faithful)
    assert "fixed" in mixed.record() or faithful
    # full grid: the original's own protocol keeps the defect (it never shows there)
    assert variants["with-decoder+sampling"].config.model.per_sample_coords is False


TINY = ["data.train_subset=16", "data.test_subset=8", "eval.sr_sizes=[32]", "eval.sr_images=4", "train.max_steps=2",
        "eval.probe=false"]


def test_a_checkpoint_of_another_architecture_fails_only_its_run(tmp_path):
    import json
    import shutil

    from parity.runtime.executors import run_matrix

    only = ["notebook+depth", "notebook+lr"]
    folder = run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)
    victim = folder / "notebook+depth" / "seed-0"
    shutil.copy(folder / "notebook" / "seed-0" / "checkpoint.pt", victim / "checkpoint.pt")  # another depth
    (victim / "metrics.json").unlink()
    (folder / "notebook+lr" / "seed-0" / "metrics.json").unlink()  # must still be finished again afterwards
    run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)
    status = json.loads((victim / "status.json").read_text())
    assert status["state"] == "failed" and "does not fit the model" in status["error"]
    assert (folder / "notebook+lr" / "seed-0" / "metrics.json").exists()  # the matrix went on


def test_a_run_killed_after_its_commit_point_is_marked_done_by_the_next_matrix(tmp_path):
    """metrics.json written, status.json still 'running' (a kill between the two writes): the next
    `parity ablate` completes the commit without training the run again."""
    import json

    from parity.runtime.executors import run_matrix

    only = ["notebook+lr"]
    folder = run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)
    run = folder / "notebook+lr" / "seed-0"
    stamp = (run / "metrics.json").stat().st_mtime_ns
    (run / "status.json").write_text(json.dumps({"state": "running", "step": 2, "total_steps": 2}))
    run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)
    assert json.loads((run / "status.json").read_text())["state"] == "done"
    assert (run / "metrics.json").stat().st_mtime_ns == stamp  # not trained or evaluated again


def test_another_set_into_a_finished_out_is_refused_and_changes_nothing(tmp_path):
    """A finished run is skipped without training, so a new --set would only have been written into matrix.json
    and the report; it is refused with the fields named, before anything in the folder changes."""
    from parity.core.errors import ParityError
    from parity.runtime.executors import run_matrix

    only = ["notebook+lr"]
    folder = run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY, only=only)
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    with pytest.raises(ParityError, match=r"holds 2 run\(s\) of another configuration \(train\.lr: .* -> 0\.01"):
        run_matrix("one-at-a-time", "smoke", 1, tmp_path, TINY + ["train.lr=0.01"], only=only)
    after = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file() and p.name != ".lock"}
    assert after == before
