"""Matrix plans: the factorial's cells, and the batch-0 defect kept out of mixes the original never trains."""

import pytest

from parity.config import config_diff
from parity.differences import GROUPS
from parity.matrix import BATCH0_FIX, cell_id, factorial_cells, matrix_variants
from parity.presets import preset


def test_factorial_has_every_subset_and_its_corners_are_the_baselines_on_trained_fields():
    nb, orig = preset("smoke").baselines()
    variants = matrix_variants("factorial", (nb, orig))
    assert len(variants) == 2 ** len(GROUPS)
    assert variants[0].id == "with-none" and variants[0].role == "baseline"
    assert config_diff(variants[0].config, nb).keys() <= {"name"}
    full = variants[-1]
    assert full.groups == list(GROUPS)
    # the full cell differs from the original only in what is scored (evaluation-side differences), and in
    # the notebook's scaled T_max, which the original's schedule (lr_horizon 'end') never reads
    assert full.config.train.lr_horizon == "end"
    assert set(config_diff(full.config, orig)) <= {"data.split", "data.resize_crop", "eval.psnr", "train.t_max"}


def test_factorial_groups_choose_the_factors():
    pair = preset("smoke").baselines()
    ids = [v.id for v in matrix_variants("factorial", pair, ("decoder", "optimisation"))]
    assert ids == ["with-none", "with-decoder", "with-optimisation", "with-decoder+optimisation"]
    assert factorial_cells(("a", "b")) == [(), ("a",), ("b",), ("a", "b")]
    assert cell_id(()) == "with-none"


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
