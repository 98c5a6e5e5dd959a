"""The JPEG round trip and the proxy's downsampling, and the common evaluation set."""

import torch

from parity.data import make_datasets
from parity.data.transcode import Transcoded, area_downsample, jpeg_round_trip
from parity.experiment.config import DataConfig


def _image(seed=0, size=32):
    return torch.rand(3, size, size, generator=torch.Generator().manual_seed(seed))


def test_jpeg_round_trip_changes_pixels_less_at_higher_quality():
    image = _image()
    err = {q: (jpeg_round_trip(image, q) - image).abs().mean().item() for q in (25, 75, 95)}
    assert err[95] < err[75] < err[25]
    assert jpeg_round_trip(image, 75).shape == image.shape


def test_area_downsample_averages_blocks():
    image = _image(size=4)
    small = area_downsample(image, 2)
    assert torch.allclose(small[:, 0, 0], image[:, :2, :2].mean(dim=(1, 2)))
    assert area_downsample(image, 4) is image


def test_transcoded_caches_and_keeps_labels():
    base = [(_image(i), i) for i in range(3)]
    data = Transcoded(base, image_size=16, jpeg_quality=75)
    first = data[1]
    assert first[1] == 1 and first[0].shape == (3, 16, 16)
    assert data[1][0] is first[0]  # computed once


def test_common_evaluation_set_ignores_split_and_encoding():
    """Configurations that differ in split and encoding are scored on the same images as stored."""
    common = dict(dataset="procedural", image_size=8, source_size=16, test_subset=4, train_subset=4,
                  eval_split="official")
    _, test_a = make_datasets(DataConfig(**common))
    train_b, test_b = make_datasets(DataConfig(**common, split="numbered", jpeg_quality=50))
    assert all(torch.equal(test_a[i][0], test_b[i][0]) for i in range(4))
    assert test_a[0][0].shape == (3, 8, 8)
    _, own = make_datasets(DataConfig(**{**common, "eval_split": None}, jpeg_quality=50))
    assert not torch.equal(own[0][0], test_a[0][0])  # without eval_split the own split is re-encoded
