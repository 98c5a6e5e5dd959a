"""What happens to an image between the source and the model, as a dataset wrapper: a JPEG round
trip (the original trained on JPEG copies of CIFAR-10, the notebook on torchvision's lossless arrays)
and area downsampling (a smaller proxy of the same images, for CPU budgets).

The JPEG round trip runs first, at the stored size, as the original's files were encoded at 32x32;
the proxy's downsampling follows. Results are cached per item: both steps are deterministic.
"""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .labels import has_labels


def jpeg_round_trip(image: torch.Tensor, quality: int) -> torch.Tensor:
    """(3, H, W) float in [0, 1] -> the same image after 8-bit quantisation and a JPEG encode/decode at
    ``quality`` (PIL's encoder, 4:2:0 chroma subsampling as PIL's default)."""
    array = (image.clamp(0, 1).permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="JPEG", quality=int(quality))
    buf.seek(0)
    with Image.open(buf) as im:
        decoded = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(decoded).permute(2, 0, 1).contiguous()


def area_downsample(image: torch.Tensor, size: int) -> torch.Tensor:
    """(3, H, W) -> (3, size, size) by averaging (area interpolation: its own antialiasing)."""
    if image.shape[-1] == size and image.shape[-2] == size:
        return image
    return F.interpolate(image.unsqueeze(0), size=(size, size), mode="area").squeeze(0)


class Transcoded(Dataset):
    """``dataset``'s items after an optional JPEG round trip at ``jpeg_quality`` and an optional area
    downsampling to ``image_size``; labels pass through. Each item is computed once."""

    def __init__(self, dataset: Dataset, image_size: int | None = None, jpeg_quality: int | None = None):
        self.dataset, self.image_size, self.jpeg_quality = dataset, image_size, jpeg_quality
        self._cache: dict[int, tuple[torch.Tensor, int]] = {}

    @property
    def labelled(self) -> bool:
        return has_labels(self.dataset)

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int):
        if i not in self._cache:
            image, label = self.dataset[i]
            if self.jpeg_quality is not None:
                image = jpeg_round_trip(image, self.jpeg_quality)
            if self.image_size is not None:
                image = area_downsample(image, self.image_size)
            self._cache[i] = (image, label)
        return self._cache[i]


__all__ = ["Transcoded", "area_downsample", "jpeg_round_trip"]
