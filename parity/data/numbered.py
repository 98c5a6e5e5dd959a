"""The original codebase's CIFAR-10 layout and split protocol.

The original (``trans-inr-master/datasets/cifar_10.py``) reads ``ROOT/cifar-10/000001.jpg`` ...
and splits by file number, inclusive: train 1..49999, val 50000..54999, test 55000..59999 (file
60000 is never used). The images carry no labels, so the label is -1.

``numbered_split`` applies the same ranges to any (train, test) pair, numbered from 1 over train
then test, so the original's protocol can be run on the other sources too. On CIFAR-10's 50,000 +
10,000 this moves the last training image into val and tests on the last 5,000 official test images.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import ConcatDataset, Dataset, Subset

from ..core.errors import ParityError
from .imagefolder import ImageLoader, check_sizes, image_transform, require_regular_file

# Inclusive 1-based file numbers per split. Read at call time, so tests may patch in tiny ranges.
NUMBERED_RANGES = {"train": (1, 49999), "val": (50000, 54999), "test": (55000, 59999)}
FOLDER = "cifar-10"


def _range(split: str, ranges: dict | None) -> tuple[int, int]:
    ranges = NUMBERED_RANGES if ranges is None else ranges
    if split not in ranges:
        raise ParityError(f"unknown numbered split {split!r}: choose one of {', '.join(ranges)}")
    return ranges[split]


class NumberedJPEG(Dataset):
    """``ROOT/cifar-10/NNNNNN.jpg`` for the numbers of ``split`` -> (float32 (3, S, S) in [0, 1], -1).
    With ``limit`` (``data.train_subset``/``test_subset``) only the first ``limit`` numbers of the
    range are used, so only those files need to exist."""

    labelled = False

    def __init__(self, root, split: str = "train", image_size: int = 32, resize_crop: bool = False,
                 ranges: dict | None = None, limit: int | None = None):
        first, last = _range(split, ranges)
        end = last if limit is None else min(last, first + limit - 1)
        folder = Path(root) / FOLDER
        if not folder.is_dir():
            raise ParityError(f"no {FOLDER}/ folder under {root}: the numbered layout is "
                              f"{folder}/000001.jpg ... 060000.jpg; check data.root (--data-root)")
        self.paths = [folder / f"{i:06d}.jpg" for i in range(first, end + 1)]
        missing = next((p for p in self.paths if not p.is_file()), None)
        if missing is not None:
            if missing.exists():  # a folder, FIFO, device...: named as such, never opened
                require_regular_file(missing)
            subset = "" if end == last else f", the first {end - first + 1} of {first:06d}..{last:06d}"
            raise ParityError(f"numbered image {missing} is missing ({split} needs {first:06d}.jpg ... {end:06d}.jpg"
                              f"{subset}): restore the file, or use data.dataset=imagefolder for a class-folder "
                              "layout")
        check_sizes(self.paths, image_size, resize_crop, str(folder))
        self.load = ImageLoader(image_size, resize_crop)
        self.transform = image_transform(image_size, resize_crop)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(self.paths[i])), -1


def numbered_split(dataset_train: Dataset, dataset_test: Dataset, split: str, ranges: dict | None = None) -> Subset:
    """The original's file-number ranges applied to ``dataset_train`` followed by ``dataset_test``
    (item k of the pair is number k + 1)."""
    first, last = _range(split, ranges)
    pair = ConcatDataset([dataset_train, dataset_test])
    if len(pair) < last:
        raise ParityError(f"data.split=numbered needs at least {last} images (train then test) for its {split} range "
                          f"{first}..{last}, but the source has {len(pair)}: use data.split=official")
    return Subset(pair, range(first - 1, last))
