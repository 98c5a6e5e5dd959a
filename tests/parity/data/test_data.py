"""parity.data on tiny fake layouts built in tmp_path: shapes, ranges, labels, splits, subsets, and
every user-facing error."""

from __future__ import annotations

import pickle
from urllib.error import URLError

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import Subset

import parity.data.numbered as numbered
from parity.core.errors import ParityError
from parity.data import has_labels, make_datasets
from parity.data.imagefolder import LabelledImageFolder, imagefolder_datasets, interleave_classes
from parity.data.numbered import NumberedJPEG, numbered_split
from parity.data.procedural import KINDS, ProceduralImages
from parity.experiment.config import DataConfig

TINY_RANGES = {"train": (1, 6), "val": (7, 8), "test": (9, 11)}


def _save(path, size=(8, 8), colour=(200, 30, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(root, classes=("cat", "dog"), per_class=2, size=(8, 8)):
    """ROOT/train/<class>/*.png|jpg and ROOT/test/<class>/*, mixing both formats."""
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for k in range(per_class):
                _save(root / split / name / f"{k}.{'png' if k % 2 else 'jpg'}", size, (40 * c, 100, 20 * k))
    return root


def _numbered(root, count=12, size=(8, 8)):
    for i in range(1, count + 1):
        _save(root / "cifar-10" / f"{i:06d}.jpg", size, (i * 10, 50, 90))
    return root


def _check_item(item, size=8, labels=None):
    image, label = item
    assert image.dtype == torch.float32 and image.shape == (3, size, size)
    assert 0.0 <= image.min() and image.max() <= 1.0
    assert isinstance(label, int) and (labels is None or label in labels)


@pytest.fixture
def tiny_ranges(monkeypatch):
    monkeypatch.setattr(numbered, "NUMBERED_RANGES", TINY_RANGES)


# ---------------------------------------------------------------- procedural

def test_procedural_shapes_labels_and_determinism():
    a = ProceduralImages(8, size=16, seed=3, split="train")
    b = ProceduralImages(8, size=16, seed=3, split="train")
    assert len(a) == 8
    for i in range(8):
        _check_item(a[i], 16, range(len(KINDS)))
        assert torch.equal(a[i][0], b[i][0])
    assert sorted({a[i][1] for i in range(8)}) == list(range(len(KINDS)))
    assert not torch.equal(a[0][0], ProceduralImages(8, 16, seed=4)[0][0])  # seed matters
    assert not torch.equal(a[0][0], ProceduralImages(8, 16, seed=3, split="test")[0][0])  # split matters
    assert has_labels(a)


def test_procedural_render_is_the_same_scene_at_twice_the_size():
    d = ProceduralImages(8, size=16)
    for i in range(8):
        big = d.render(i, 32)
        assert big.shape == (3, 32, 32)
        pooled = torch.nn.functional.avg_pool2d(big[None], 2)[0]
        assert (pooled - d[i][0]).abs().mean() < 0.01  # box-filtered scene: pooling recovers the small image
    assert torch.equal(d.render(5), d[5][0])


# ---------------------------------------------------------------- image folder

def test_imagefolder_items_and_labels(tmp_path):
    train, test = imagefolder_datasets(_folder(tmp_path), image_size=8)
    assert len(train) == 4 and len(test) == 4 and train.classes == ["cat", "dog"]
    assert [train[i][1] for i in range(4)] == [0, 1, 0, 1]  # interleaved: every prefix holds both classes
    for item in (train[0], train[1], test[3]):
        _check_item(item, 8, {0, 1})
    assert has_labels(train) and has_labels(Subset(test, [0]))


def test_interleave_classes_balances_every_prefix():
    samples = [("a0", 0), ("a1", 0), ("a2", 0), ("b0", 1), ("c0", 2), ("c1", 2)]
    assert interleave_classes(samples) == [("a0", 0), ("b0", 1), ("c0", 2), ("a1", 0), ("c1", 2), ("a2", 0)]
    assert interleave_classes([]) == []


def test_imagefolder_resize_crop(tmp_path):
    _folder(tmp_path, size=(12, 10))
    train, _ = make_datasets(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=8, resize_crop=True))
    _check_item(train[0], 8)


@pytest.mark.parametrize("make, words", [
    (lambda root: None, ["does not exist", "data.root"]),
    (lambda root: _save(root / "test" / "a" / "0.png"), ["no train/ folder"]),
    (lambda root: (root / "train").mkdir(parents=True), ["no class folders"]),
    (lambda root: ((root / "train" / "a").mkdir(parents=True), (root / "test" / "a").mkdir(parents=True)),
     ["empty class folder", "train/a"]),
])
def test_imagefolder_layout_errors(tmp_path, make, words):
    root = tmp_path / "set"
    make(root)
    with pytest.raises(ParityError) as e:
        imagefolder_datasets(root)
    assert all(w in str(e.value) for w in words) and "\n" not in str(e.value)


def test_imagefolder_different_classes(tmp_path):
    _folder(tmp_path)
    _save(tmp_path / "test" / "emu" / "0.png")
    with pytest.raises(ParityError, match="different class folders.*emu"):
        imagefolder_datasets(tmp_path, 8)


def test_imagefolder_corrupt_file_is_named(tmp_path):
    _folder(tmp_path, per_class=20)
    bad = tmp_path / "train" / "dog" / "7.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ParityError, match=r"cannot read image .*7\.png"):
        train = LabelledImageFolder(tmp_path, "train", 8)  # the header check may catch it up front...
        train[train.samples.index((str(bad), 1))]  # ...or loading it does


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, monkeypatch):
    """A 20000x20000 PNG is a few hundred KB on disk and 1.2 GB decoded: refused from its header, one line naming
    the file and the setting; PIL's own bomb error (past its limit) is one line too."""
    import zlib

    _folder(tmp_path, per_class=2)
    bomb = tmp_path / "train" / "dog" / "bomb.png"
    width = height = 20000

    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([1, 0, 0, 0, 0])  # 1-bit greyscale
    rows = zlib.compress(b"\0" * (height * (1 + width // 8)), 9)
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b""))
    assert bomb.stat().st_size < 1_000_000
    with pytest.raises(ParityError, match=r"image .*bomb\.png is a decompression bomb \(Image size \(400000000 "
                                          r"pixels\).*\): remove it$"):
        train = LabelledImageFolder(tmp_path, "train", 8)
        train[train.samples.index((str(bomb), 1))]
    # within PIL's limit, above ours (a documented setting): refused from the header, before decoding
    bomb.unlink()
    big = tmp_path / "train" / "dog" / "big.png"
    _save(big, size=(64, 64))
    monkeypatch.setenv("PARITY_MAX_IMAGE_PIXELS", "1000")
    with pytest.raises(ParityError, match=r"big\.png is 64x64 \(4,096 pixels\), above the limit of 1,000 .*"
                                          r"raise PARITY_MAX_IMAGE_PIXELS"):
        LabelledImageFolder(tmp_path, "train", 8, resize_crop=True)[0]
        train = LabelledImageFolder(tmp_path, "train", 8, resize_crop=True)
        train[train.samples.index((str(big), 1))]
    monkeypatch.setenv("PARITY_MAX_IMAGE_PIXELS", "lots")
    with pytest.raises(ParityError, match="PARITY_MAX_IMAGE_PIXELS='lots' is not a whole number"):
        LabelledImageFolder(tmp_path, "train", 8)


def test_imagefolder_mixed_sizes(tmp_path):
    _folder(tmp_path)
    _save(tmp_path / "train" / "dog" / "9.png", size=(10, 6))  # the last file, always header-checked
    with pytest.raises(ParityError, match=r"mixed sizes.*9\.png is 10x6.*data\.resize_crop=true"):
        imagefolder_datasets(tmp_path, 8)


def test_imagefolder_odd_size_found_at_load_time(tmp_path):
    _folder(tmp_path, per_class=30)
    odd = tmp_path / "train" / "cat" / "13.png"  # not among the header-checked files
    _save(odd, size=(9, 9))
    train = LabelledImageFolder(tmp_path, "train", 8)
    with pytest.raises(ParityError, match=r"13\.png is 9x9, not data\.image_size=8.*data\.resize_crop=true"):
        train[train.samples.index((str(odd), 0))]


def test_imagefolder_wrong_image_size(tmp_path):
    _folder(tmp_path, size=(16, 16))
    with pytest.raises(ParityError, match=r"16x16, not data\.image_size=8.*data\.image_size=16"):
        make_datasets(DataConfig(dataset="imagefolder", root=str(tmp_path), image_size=8))


# ---------------------------------------------------------------- numbered layout

def test_numbered_ranges_and_items(tmp_path, tiny_ranges):
    root = _numbered(tmp_path)
    train, val, test = (NumberedJPEG(root, s, 8) for s in ("train", "val", "test"))
    assert (len(train), len(val), len(test)) == (6, 2, 3)
    assert train.paths[0].name == "000001.jpg" and test.paths[-1].name == "000011.jpg"
    _check_item(test[0], 8, {-1})
    assert not has_labels(train)
    # Through the configuration: numbered-jpeg always uses its own ranges, then the first-N subset.
    tr, te = make_datasets(DataConfig(dataset="numbered-jpeg", root=str(root), split="official", image_size=8,
                                      test_subset=2))
    assert (len(tr), len(te)) == (6, 2)


def test_numbered_real_defaults():
    assert numbered.NUMBERED_RANGES == {"train": (1, 49999), "val": (50000, 54999), "test": (55000, 59999)}


def test_numbered_missing_file_is_named(tmp_path, tiny_ranges):
    _numbered(tmp_path)
    (tmp_path / "cifar-10" / "000004.jpg").unlink()
    with pytest.raises(ParityError, match=r"000004\.jpg is missing"):
        NumberedJPEG(tmp_path, "train", 8)
    with pytest.raises(ParityError, match="no cifar-10/ folder"):
        NumberedJPEG(tmp_path / "elsewhere", "train", 8)


def test_numbered_split_on_any_pair():
    a = ProceduralImages(7, 8, split="train")
    b = ProceduralImages(5, 8, split="test")
    train = numbered_split(a, b, "train", TINY_RANGES)
    test = numbered_split(a, b, "test", TINY_RANGES)
    assert len(train) == 6 and len(test) == 3
    assert torch.equal(train[0][0], a[0][0])
    assert torch.equal(test[0][0], b[1][0])  # number 9 = the second test image (7 train images come first)
    assert has_labels(test)
    with pytest.raises(ParityError, match="needs at least 59999 images.*data.split=official"):
        numbered_split(a, b, "test")


def test_numbered_split_through_config(tmp_path, tiny_ranges):
    _folder(tmp_path, per_class=3)  # 6 train + 6 test images
    tr, te = make_datasets(DataConfig(dataset="imagefolder", root=str(tmp_path), split="numbered", image_size=8))
    assert (len(tr), len(te)) == (6, 3)
    assert [te[i][1] for i in range(3)] == [0, 1, 0]  # numbers 9..11 = test items 2..4 of cat, dog, cat, dog, ...


# ---------------------------------------------------------------- make_datasets, subsets, CIFAR-10

def test_procedural_through_config_and_subsets():
    tr, te = make_datasets(DataConfig(dataset="procedural", image_size=16))
    assert (len(tr), len(te)) == (4096, 512)
    _check_item(tr[0], 16, range(len(KINDS)))
    tr, te = make_datasets(DataConfig(dataset="procedural", image_size=16, train_subset=10, test_subset=3))
    assert (len(tr), len(te)) == (10, 3) and list(tr.indices) == list(range(10))
    assert torch.equal(te[2][0], ProceduralImages(512, 16, split="test")[2][0])  # the first items, in order
    assert has_labels(tr)


def test_folder_sources_need_a_root():
    with pytest.raises(ParityError, match="data.root"):
        make_datasets(DataConfig(dataset="imagefolder"))


def test_cifar10_missing(tmp_path):
    with pytest.raises(ParityError, match=f"CIFAR-10 not found under {tmp_path}: pass --download"):
        make_datasets(DataConfig(dataset="cifar10", root=str(tmp_path)))


def test_cifar10_download_failure(tmp_path, monkeypatch):
    import torchvision

    def offline(self):
        raise URLError("no route to host")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "download", offline)
    with pytest.raises(ParityError, match="could not download CIFAR-10.*no route to host"):
        make_datasets(DataConfig(dataset="cifar10", root=str(tmp_path), download=True))


def test_cifar10_items(tmp_path, monkeypatch):
    """A fake extracted copy in torchvision's pickle format (checksums skipped)."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{k}" for k in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (2, 3072), dtype=np.uint8), "labels": [3, 7]}
        (folder / name).write_bytes(pickle.dumps(batch))
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": [str(c) for c in range(10)]}))
    tr, te = make_datasets(DataConfig(dataset="cifar10", root=str(tmp_path)))
    assert (len(tr), len(te)) == (10, 2) and has_labels(tr)
    _check_item(tr[0], 32, {3})
    tr, _ = make_datasets(DataConfig(dataset="cifar10", root=str(tmp_path), image_size=16, resize_crop=True))
    _check_item(tr[1], 16, {7})
    with pytest.raises(ParityError, match="not data.image_size=16.*data.resize_crop=true"):
        make_datasets(DataConfig(dataset="cifar10", root=str(tmp_path), image_size=16))
