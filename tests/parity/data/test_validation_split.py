"""data.eval_split=validation: training images after the first train_subset, never the test images."""

import pytest
import torch

from parity.core.errors import ParityError
from parity.data import PROCEDURAL_SIZES, make_datasets
from parity.experiment.config import DataConfig


def test_validation_images_are_training_images_after_the_subset():
    cfg = DataConfig(dataset="procedural", image_size=8, train_subset=100, test_subset=20, eval_split="validation")
    train, validation = make_datasets(cfg)
    full, test = make_datasets(DataConfig(dataset="procedural", image_size=8))
    assert len(train) == 100 and len(validation) == 20
    assert torch.equal(validation[0][0], full[100][0]) and torch.equal(validation[19][0], full[119][0])
    assert not any(torch.equal(validation[i][0], test[i][0]) for i in range(20))


def test_validation_needs_both_subsets_and_enough_images():
    with pytest.raises(ParityError, match="needs data.train_subset and data.test_subset"):
        make_datasets(DataConfig(dataset="procedural", image_size=8, test_subset=20, eval_split="validation"))
    with pytest.raises(ParityError, match="lower data.train_subset"):
        make_datasets(DataConfig(dataset="procedural", image_size=8, train_subset=PROCEDURAL_SIZES[0] - 8,
                                 test_subset=20, eval_split="validation"))
