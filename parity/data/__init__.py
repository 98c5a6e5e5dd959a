"""Datasets: torchvision CIFAR-10, labelled image folders, the original's numbered JPEGs and a
procedural set. Every item is (float32 image (3, H, W) in [0, 1], int label; -1 without labels).

Light at import: each source's module (and torchvision) is imported only when it is asked for.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from ..core.errors import ParityError
from ..experiment.config import DataConfig, field_choices
from .labels import has_labels

if TYPE_CHECKING:
    from torch.utils.data import Dataset

DATASETS = field_choices("data.dataset")  # the type of DataConfig.dataset owns the names
PROCEDURAL_SIZES = (4096, 512)  # (train, test) images of the procedural set (room for a validation split)
PROCEDURAL_NUMBERED_SIZES = (50000, 10000)  # CIFAR-10's counts, so the numbered ranges fit (made lazily: free)
PROCEDURAL_SEED = 0


def _sources(cfg: DataConfig, split: str) -> tuple[Dataset, Dataset]:
    """The source's own (train, test), at the stored size (``source_size`` for a proxy)."""
    size = cfg.source_size or cfg.image_size
    if cfg.dataset == "cifar10":
        from .cifar10 import cifar10_datasets

        return cifar10_datasets(cfg.root, size, cfg.resize_crop, cfg.download)
    if cfg.dataset == "procedural":
        from .procedural import ProceduralImages

        n_train, n_test = PROCEDURAL_NUMBERED_SIZES if split == "numbered" else PROCEDURAL_SIZES
        return (ProceduralImages(n_train, size, PROCEDURAL_SEED, "train"),
                ProceduralImages(n_test, size, PROCEDURAL_SEED, "test"))
    if cfg.root is None:
        raise ParityError(f"data.dataset={cfg.dataset} needs a folder: set data.root (--data-root)")
    from .imagefolder import imagefolder_datasets  # the only source left

    return imagefolder_datasets(cfg.root, size, cfg.resize_crop)


def make_datasets(cfg: DataConfig) -> tuple[Dataset, Dataset]:
    """(train, test) for a data configuration: source, then split, then the first-N subsets, then the
    JPEG round trip and the proxy's downsampling. With ``eval_split`` the test set is that split's test
    images as stored (no re-encoding): a common evaluation set for configurations that differ in split
    or encoding; ``validation`` takes it from the official training images after the first
    ``train_subset`` (disjoint from training, so a pilot never chooses on the test images)."""
    if cfg.dataset not in DATASETS:
        raise ParityError(f"data.dataset={cfg.dataset!r} is not one of {', '.join(DATASETS)}")
    if cfg.split not in ("official", "numbered"):
        raise ParityError(f"data.split={cfg.split!r} is not one of official, numbered")
    train, test = _split_sets(cfg, cfg.split)
    if cfg.eval_split == "validation":
        test = _validation_set(cfg)
    elif cfg.eval_split is not None and cfg.eval_split != cfg.split:
        _, test = _split_sets(cfg, cfg.eval_split)
    proxy = cfg.image_size if (cfg.source_size or cfg.image_size) != cfg.image_size else None
    own_test_encoding = cfg.jpeg_quality if cfg.eval_split is None else None
    if proxy is not None or cfg.jpeg_quality is not None:
        from .transcode import Transcoded

        train = Transcoded(train, proxy, cfg.jpeg_quality)
    if proxy is not None or own_test_encoding is not None:
        from .transcode import Transcoded

        test = Transcoded(test, proxy, own_test_encoding)
    return train, test


class DatasetCache:
    """The (train, test) pair of the last data configuration asked for: consecutive runs of one matrix (or one
    worker's tasks) share it, and only one pair is kept in memory."""

    def __init__(self):
        self._key, self._pair = None, None

    def get(self, cfg: DataConfig) -> tuple[Dataset, Dataset]:
        key = repr(cfg)
        if key != self._key:
            self._key, self._pair = None, None  # let the previous pair go before the next is built
            self._pair, self._key = make_datasets(cfg), key
        return self._pair


def _validation_set(cfg: DataConfig) -> Dataset:
    """The ``test_subset`` official training images that follow the first ``train_subset``, as stored."""
    from torch.utils.data import Subset

    if cfg.train_subset is None or cfg.test_subset is None:
        raise ParityError("data.eval_split=validation needs data.train_subset and data.test_subset: the validation "
                          "images are the test_subset training images after the first train_subset")
    full = dataclasses.replace(cfg, train_subset=None, test_subset=None, dataset=cfg.dataset)
    train, _ = _split_sets(full, "official")
    end = cfg.train_subset + cfg.test_subset
    if len(train) < end:
        raise ParityError(f"data.eval_split=validation needs {end} training images (train_subset + test_subset), "
                          f"the source has {len(train)}: lower data.train_subset or data.test_subset")
    return Subset(train, range(cfg.train_subset, end))


def _split_sets(cfg: DataConfig, split: str) -> tuple[Dataset, Dataset]:
    """(train, test) of ``split`` at the stored size, first-N subsets taken."""
    from torch.utils.data import Subset

    size = cfg.source_size or cfg.image_size
    if cfg.dataset == "numbered-jpeg":  # its own file-number ranges, whatever data.split says
        from .numbered import NumberedJPEG

        if cfg.root is None:
            raise ParityError("data.dataset=numbered-jpeg needs a folder: set data.root (--data-root)")
        # Only the files the first-N subsets take need to exist.
        train = NumberedJPEG(cfg.root, "train", size, cfg.resize_crop, limit=cfg.train_subset)
        test = NumberedJPEG(cfg.root, "test", size, cfg.resize_crop, limit=cfg.test_subset)
    else:
        train, test = _sources(cfg, split)
        if split == "numbered":
            from .numbered import numbered_split

            train, test = numbered_split(train, test, "train"), numbered_split(train, test, "test")
    if cfg.train_subset is not None:
        train = Subset(train, range(min(cfg.train_subset, len(train))))
    if cfg.test_subset is not None:
        test = Subset(test, range(min(cfg.test_subset, len(test))))
    return train, test


__all__ = ["DATASETS", "DatasetCache", "has_labels", "make_datasets"]
