import torch

from parity.core.coords import endpoint_grid, jitter, pixel_centre_grid


def test_pixel_centres_and_endpoints():
    g = pixel_centre_grid((2, 4))
    assert g.shape == (2, 4, 2)
    assert g[0, 0].tolist() == [0.25, 0.125] and g[1, 3].tolist() == [0.75, 0.875]
    e = endpoint_grid(3, 2)
    assert e.tolist() == [[0, 0], [0, 1], [0.5, 0], [0.5, 1], [1, 0], [1, 1]]


def test_jitter_is_unclamped_gaussian():
    g = pixel_centre_grid((64, 64))
    j = jitter(g, 0.05, generator=torch.Generator().manual_seed(0))
    assert abs((j - g).std().item() - 0.05) < 0.003
    assert j.min() < 0 or j.max() > 1  # not clamped
