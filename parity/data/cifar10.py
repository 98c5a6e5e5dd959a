"""torchvision's CIFAR-10 with the notebook's transform (ToTensor only), or the original's
Resize + CenterCrop + ToTensor when ``resize_crop`` is on. Items are (float32 (3, S, S) in [0, 1],
class index)."""

from __future__ import annotations

from pathlib import Path

from torchvision import datasets

from ..core.errors import ParityError, first_line
from .imagefolder import image_transform

DEFAULT_ROOT = "./data"
NATIVE_SIZE = 32


def cifar10_datasets(root=None, image_size: int = NATIVE_SIZE, resize_crop: bool = False, download: bool = False
                     ) -> tuple[datasets.CIFAR10, datasets.CIFAR10]:
    """(train, test): the official 50,000 / 10,000 split."""
    root = str(Path(DEFAULT_ROOT if root is None else root))
    if not resize_crop and image_size != NATIVE_SIZE:
        raise ParityError(f"CIFAR-10 images are {NATIVE_SIZE}x{NATIVE_SIZE}, not data.image_size={image_size}: set "
                          f"data.image_size={NATIVE_SIZE}, or data.resize_crop=true to resize them")
    transform = image_transform(image_size, resize_crop)
    try:
        train = datasets.CIFAR10(root, train=True, transform=transform, download=download)
        test = datasets.CIFAR10(root, train=False, transform=transform, download=False)
    except Exception as e:  # torchvision raises RuntimeError when missing; downloads fail in many ways
        if not download and isinstance(e, RuntimeError):
            raise ParityError(f"CIFAR-10 not found under {root}: pass --download on a machine with internet, or point "
                              "--data-root at an extracted copy and use --dataset imagefolder") from None
        reason = first_line(e)
        raise ParityError(f"could not {'download' if download else 'load'} CIFAR-10 into {root} ({reason}): check the "
                          "internet connection, or point --data-root at an extracted copy and use --dataset "
                          "imagefolder") from None
    train.labelled = test.labelled = True
    return train, test
