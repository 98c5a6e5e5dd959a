"""Labelled image folders, ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (labels from the
folder names, as torchvision's ImageFolder gives them), and the image loading every file-based
source shares: open as RGB, check the size, name the file when anything is wrong.

Sizes are checked cheaply: at construction a few files spread over the set have their headers read
(PIL does not decode pixels until asked); every other file is checked when it is loaded.
"""

from __future__ import annotations

import os
from pathlib import Path

from PIL import Image, UnidentifiedImageError
from torchvision import datasets, transforms

from ..errors import ParityError

SIZE_SAMPLES = 8  # files per set whose headers are read up front


def image_transform(image_size: int, resize_crop: bool) -> transforms.Compose:
    """The original's loader (Resize + CenterCrop + ToTensor) or the notebook's (ToTensor only)."""
    steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)] if resize_crop else []
    return transforms.Compose([*steps, transforms.ToTensor()])


def _size_error(path, size: tuple[int, int], image_size: int) -> ParityError:
    w, h = size
    other = f", or data.image_size={w} if every image is {w}x{h}" if w == h else ""
    return ParityError(f"image {path} is {w}x{h}, not data.image_size={image_size}: set data.resize_crop=true to "
                       f"resize and centre-crop images to {image_size}x{image_size}{other}")


def _corrupt_error(path, e: Exception) -> ParityError:
    reason = str(e).splitlines()[0] if str(e) else type(e).__name__
    return ParityError(f"cannot read image {path} ({reason}): replace or delete the corrupt file")


class ImageLoader:
    """Opens one file as an RGB PIL image; with ``resize_crop`` off the image must already be
    ``image_size`` square. A class rather than a closure so DataLoader workers can pickle it."""

    def __init__(self, image_size: int, resize_crop: bool):
        self.image_size, self.resize_crop = image_size, resize_crop

    def __call__(self, path) -> Image.Image:
        try:
            with Image.open(path) as im:
                if not self.resize_crop and im.size != (self.image_size, self.image_size):
                    raise _size_error(path, im.size, self.image_size)
                return im.convert("RGB")  # convert() decodes, so truncated files fail here, inside the try
        except ParityError:
            raise
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            raise _corrupt_error(path, e) from None


def check_sizes(paths: list, image_size: int, resize_crop: bool, where: str) -> None:
    """Read the headers of a few files spread over ``paths``: fail early on unreadable files, on
    mixed sizes and on a size that is not ``image_size`` (the last two only without resize_crop)."""
    if not paths:
        return
    step = max(1, len(paths) // SIZE_SAMPLES)
    seen: dict[tuple[int, int], object] = {}
    for path in list(paths[::step])[:SIZE_SAMPLES] + [paths[-1]]:
        try:
            with Image.open(path) as im:
                seen.setdefault(im.size, path)
        except (OSError, UnidentifiedImageError, ValueError, SyntaxError) as e:
            raise _corrupt_error(path, e) from None
    if resize_crop:
        return
    if len(seen) > 1:
        (size_a, path_a), (size_b, path_b) = list(seen.items())[:2]
        raise ParityError(f"images under {where} have mixed sizes ({path_a} is {size_a[0]}x{size_a[1]}, {path_b} is "
                          f"{size_b[0]}x{size_b[1]}): set data.resize_crop=true to resize and centre-crop them to "
                          f"{image_size}x{image_size}")
    ((size, path),) = seen.items()
    if size != (image_size, image_size):
        raise _size_error(path, size, image_size)


class LabelledImageFolder(datasets.ImageFolder):
    """``ROOT/<split>/<class>/*.jpg|png|...`` -> (float32 (3, S, S) in [0, 1], class index), classes
    interleaved (see ``interleave_classes``)."""

    labelled = True

    def __init__(self, root, split: str, image_size: int = 32, resize_crop: bool = False):
        root = Path(root)
        folder = root / split
        layout = f"expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg"
        if not root.is_dir():
            raise ParityError(f"image folder {root} does not exist: check data.root (--data-root); {layout}")
        if not folder.is_dir():
            raise ParityError(f"no {split}/ folder under {root}: {layout}")
        if not any(entry.is_dir() for entry in os.scandir(folder)):
            raise ParityError(f"{folder} has no class folders: {layout}")
        try:
            super().__init__(str(folder), transform=image_transform(image_size, resize_crop),
                             loader=ImageLoader(image_size, resize_crop))
        except FileNotFoundError:
            # torchvision refuses class folders without images; name them ourselves.
            empty = sorted(e.name for e in os.scandir(folder) if e.is_dir() and not self._has_images(e.path))
            where = folder / empty[0] if empty else folder
            raise ParityError(f"empty class folder {where} (no image files with extensions "
                              f"{', '.join(datasets.folder.IMG_EXTENSIONS)}): add images or remove the folder"
                              ) from None
        check_sizes([p for p, _ in self.samples], image_size, resize_crop, str(folder))
        self.samples = self.imgs = interleave_classes(self.samples)
        self.targets = [label for _, label in self.samples]

    @staticmethod
    def _has_images(directory: str) -> bool:
        for _, _, files in os.walk(directory, followlinks=True):
            if any(datasets.folder.has_file_allowed_extension(f, datasets.folder.IMG_EXTENSIONS) for f in files):
                return True
        return False


def interleave_classes(samples: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """Class by class in turn (the first image of every class, then the second, ...), so that the
    first N items, which is what ``train_subset``/``test_subset`` take, hold every class about equally,
    as a prefix of CIFAR-10's own shuffled order does. ImageFolder's sorted order would make them one
    class."""
    by_class: dict[int, list] = {}
    for sample in samples:
        by_class.setdefault(sample[1], []).append(sample)
    columns = [by_class[c] for c in sorted(by_class)]
    return [column[i] for i in range(max(map(len, columns), default=0)) for column in columns if i < len(column)]


def imagefolder_datasets(root, image_size: int = 32, resize_crop: bool = False
                         ) -> tuple[LabelledImageFolder, LabelledImageFolder]:
    """(train, test) from ``ROOT/train`` and ``ROOT/test``; both must hold the same classes, so that
    a label means the same class in both."""
    train = LabelledImageFolder(root, "train", image_size, resize_crop)
    test = LabelledImageFolder(root, "test", image_size, resize_crop)
    if train.classes != test.classes:
        only = sorted(set(train.classes) ^ set(test.classes))
        raise ParityError(f"train/ and test/ under {root} hold different class folders (for example {only[0]!r} is "
                          "in only one): give both the same class folders")
    return train, test
