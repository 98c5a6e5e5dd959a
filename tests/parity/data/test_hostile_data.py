"""Hostile image folders and numbered layouts: symlink loops and duplicates, 16-bit PNGs, FIFOs,
unreadable folders, and numbered subsets that need only their own files. Every refusal is one line."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest
from PIL import Image

import parity.data.numbered as numbered
from parity.core.errors import ParityError
from parity.data import make_datasets
from parity.data.imagefolder import ImageLoader, LabelledImageFolder, check_sizes, imagefolder_datasets
from parity.data.numbered import NumberedJPEG
from parity.experiment.config import DataConfig

TINY_RANGES = {"train": (1, 6), "val": (7, 8), "test": (9, 11)}
needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="POSIX symlinks")
needs_fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


def _save(path, size=(8, 8), colour=(200, 30, 60)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


def _folder(root, classes=("cat", "dog"), per_class=2):
    for split in ("train", "test"):
        for c, name in enumerate(classes):
            for k in range(per_class):
                _save(root / split / name / f"{k}.png", colour=(40 * c, 100, 20 * k))
    return root


def _numbered(root, numbers):
    for i in numbers:
        _save(root / "cifar-10" / f"{i:06d}.jpg", colour=(i * 10, 50, 90))
    return root


def _one_line_error(call, *words):
    with pytest.raises(ParityError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message and all(w in message for w in words), message
    return message


def _finishes(call, seconds=10.0):
    """Run ``call`` in a daemon thread; fail (instead of hanging the suite) if it blocks."""
    result = {}

    def target():
        try:
            result["value"] = call()
        except BaseException as e:  # noqa: BLE001 - handed back to the test
            result["error"] = e

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still blocked after {seconds}s (opened a FIFO?)"
    return result


# ---------------------------------------------------------------- 1. symbolic links

@needs_symlinks
@pytest.mark.parametrize("target", ["..", ".", "../..", "../../.."])
def test_symlink_loop_is_refused_naming_the_link(tmp_path, target):
    _folder(tmp_path, per_class=10)
    link = tmp_path / "train" / "cat" / "loop"
    os.symlink(target, link)
    _one_line_error(lambda: imagefolder_datasets(tmp_path, 8), "symbolic link loop", str(link), "remove the link")


@needs_symlinks
def test_symlink_loop_through_two_links_is_refused(tmp_path):
    _folder(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    os.symlink(tmp_path / "train" / "cat", elsewhere / "back")  # cat/out -> elsewhere, elsewhere/back -> cat
    os.symlink(elsewhere, tmp_path / "train" / "cat" / "out")
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "symbolic link loop",
                    str(tmp_path / "train" / "cat" / "out" / "back"))


@needs_symlinks
def test_symlink_into_another_class_is_refused(tmp_path):
    _folder(tmp_path)
    os.symlink("../dog", tmp_path / "train" / "cat" / "more")  # no loop, but dogs would be labelled cat too
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "same folder", "train/dog", "train/cat/more",
                    "remove the link")


@needs_symlinks
def test_two_links_to_one_image_or_folder_are_refused(tmp_path):
    _folder(tmp_path)
    os.symlink("0.png", tmp_path / "train" / "cat" / "copy.png")
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "same file", "cat/copy.png", "cat/0.png")
    os.unlink(tmp_path / "train" / "cat" / "copy.png")
    # A diamond of folder links (a chain of them would be walked 2^depth times), even without images in it.
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("left", "right"):
        os.symlink(shared, tmp_path / "train" / "dog" / name)
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "same folder", "dog/left", "dog/right")


@needs_symlinks
def test_symlinks_that_are_not_loops_are_followed(tmp_path):
    """Class folders and images elsewhere, linked in: each file once, with its own class."""
    store = tmp_path / "store"
    for c, name in enumerate(("cat", "dog")):
        for k in range(3):
            _save(store / name / f"{k}.png", colour=(200 * c, 0, 0))
    root = tmp_path / "set"
    for split in ("train", "test"):
        (root / split).mkdir(parents=True)
        os.symlink(store / "cat", root / split / "cat")  # a linked class folder
        (root / split / "dog").mkdir()
        for k in range(3):  # linked image files
            os.symlink(store / "dog" / f"{k}.png", root / split / "dog" / f"{k}.png")
    train, _ = imagefolder_datasets(root, 8)
    assert len(train) == 6 and train.classes == ["cat", "dog"]
    for i in range(6):
        image, label = train[i]
        assert abs(float(image[0].mean()) - (200 * label) / 255) < 1e-6  # red: 0 for cat, 200 for dog


# ---------------------------------------------------------------- 2. 16-bit PNGs

def _png16(path, value, size=(8, 8)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size[::-1], value, np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")


@pytest.mark.parametrize("value", [0, 1, 32768, 65535])
def test_16bit_grey_png_is_scaled_exactly(tmp_path, value):
    _folder(tmp_path)
    _png16(tmp_path / "train" / "cat" / "9.png", value)
    train = LabelledImageFolder(tmp_path, "train", 8)
    image, label = train[train.samples.index((str(tmp_path / "train" / "cat" / "9.png"), 0))]
    assert image.shape == (3, 8, 8) and image.dtype.is_floating_point and label == 0
    assert np.allclose(image.numpy(), np.float32(value) / np.float32(65535), atol=0, rtol=0)  # 32768 -> 0.50001


def test_16bit_grey_png_through_resize_crop(tmp_path):
    _png16(tmp_path / "a.png", 32768, size=(12, 10))
    from parity.data.imagefolder import image_transform

    image = image_transform(8, True)(ImageLoader(8, True)(tmp_path / "a.png"))
    assert image.shape == (3, 8, 8) and abs(float(image.mean()) - 0.5) < 1e-3


def test_16bit_colour_png_is_not_saturated(tmp_path):
    path = tmp_path / "rgb16.png"
    # A 16-bit RGB PNG written by hand (PIL cannot write one): every sample 32768.
    import struct
    import zlib

    w = h = 8
    raw = b"".join(b"\x00" + struct.pack(">H", 32768) * 3 * w for _ in range(h))

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
    from parity.data.imagefolder import image_transform

    image = image_transform(8, False)(ImageLoader(8, False)(path))
    assert image.shape == (3, 8, 8) and abs(float(image.mean()) - 0.5) <= 1 / 255


def test_images_without_a_known_range_are_refused(tmp_path):
    path = tmp_path / "float.tif"
    Image.fromarray(np.full((8, 8), 0.25, np.float32)).save(path)
    _one_line_error(lambda: ImageLoader(8, False)(path), str(path), "mode F", "8-bit or 16-bit PNG")


# ---------------------------------------------------------------- 3. FIFOs and other non-files

@needs_fifo
def test_fifo_in_a_class_folder_is_refused_without_hanging(tmp_path):
    _folder(tmp_path)
    fifo = tmp_path / "train" / "dog" / "x.jpg"
    os.mkfifo(fifo)
    result = _finishes(lambda: LabelledImageFolder(tmp_path, "train", 8))
    error = result.get("error")
    assert isinstance(error, ParityError), result
    assert str(fifo) in str(error) and "FIFO" in str(error) and "\n" not in str(error)


@needs_fifo
def test_loader_and_size_check_never_open_a_fifo(tmp_path):
    fifo = tmp_path / "x.jpg"
    os.mkfifo(fifo)
    for call in (lambda: ImageLoader(8, False)(fifo), lambda: check_sizes([fifo], 8, False, str(tmp_path))):
        result = _finishes(call)
        assert isinstance(result.get("error"), ParityError) and "FIFO" in str(result["error"]), result


@needs_fifo
def test_numbered_fifo_is_named_without_hanging(tmp_path, monkeypatch):
    monkeypatch.setattr(numbered, "NUMBERED_RANGES", TINY_RANGES)
    _numbered(tmp_path, [1, 2, 4, 5, 6])
    os.mkfifo(tmp_path / "cifar-10" / "000003.jpg")
    result = _finishes(lambda: NumberedJPEG(tmp_path, "train", 8))
    assert isinstance(result.get("error"), ParityError) and "000003.jpg is a FIFO" in str(result["error"]), result


@needs_symlinks
def test_broken_symlink_image_is_named(tmp_path):
    _folder(tmp_path)
    link = tmp_path / "train" / "cat" / "gone.png"
    os.symlink(tmp_path / "nowhere.png", link)
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), str(link), "broken symbolic link")


# ---------------------------------------------------------------- 4. unreadable folders

def test_unreadable_class_folder_is_not_called_empty(tmp_path, monkeypatch):
    _folder(tmp_path)
    locked = str(tmp_path / "train" / "dog")
    real_scandir = os.scandir

    def scandir(path="."):
        if os.fspath(path) == locked:
            raise PermissionError(13, "Permission denied", locked)
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    message = _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "cannot read class folder", locked,
                              "permission denied", "chmod")
    assert "empty" not in message


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions")
def test_unreadable_class_folder_for_real(tmp_path):
    _folder(tmp_path)
    locked = tmp_path / "train" / "dog"
    locked.chmod(0)
    try:
        _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "cannot read class folder",
                        "permission denied")
    finally:
        locked.chmod(0o755)


def test_empty_class_folder_still_says_empty(tmp_path):
    _folder(tmp_path)
    (tmp_path / "train" / "emu").mkdir()
    _one_line_error(lambda: LabelledImageFolder(tmp_path, "train", 8), "empty class folder", "emu")


# ---------------------------------------------------------------- 5. numbered subsets

def test_numbered_subsets_need_only_their_files(tmp_path, monkeypatch):
    monkeypatch.setattr(numbered, "NUMBERED_RANGES", TINY_RANGES)
    _numbered(tmp_path, [1, 2, 3, 9, 10])  # train 1..6 and test 9..11 are incomplete
    cfg = dict(dataset="numbered-jpeg", root=str(tmp_path), image_size=8)
    train, test = make_datasets(DataConfig(**cfg, train_subset=3, test_subset=2))
    assert (len(train), len(test)) == (3, 2)
    assert train[2][1] == -1 and test[1][0].shape == (3, 8, 8)
    # A file within the needed range is still named, with the range it is needed for.
    _one_line_error(lambda: make_datasets(DataConfig(**cfg, train_subset=4, test_subset=2)),
                    "000004.jpg is missing", "000001.jpg ... 000004.jpg", "the first 4 of 000001..000006")
    # Without a subset, the whole range is needed, as before.
    _one_line_error(lambda: make_datasets(DataConfig(**cfg)), "000004.jpg is missing", "000001.jpg ... 000006.jpg")


def test_numbered_limit_beyond_the_range(tmp_path, monkeypatch):
    monkeypatch.setattr(numbered, "NUMBERED_RANGES", TINY_RANGES)
    _numbered(tmp_path, range(1, 12))
    assert len(NumberedJPEG(tmp_path, "test", 8, limit=100)) == 3
    assert [p.name for p in NumberedJPEG(tmp_path, "test", 8, limit=2).paths] == ["000009.jpg", "000010.jpg"]


def test_unreadable_image_is_not_called_corrupt(tmp_path, monkeypatch):
    import PIL.Image

    _save(tmp_path / "a.png")
    real_open = PIL.Image.open

    def deny(fp, *args, **kwargs):
        if os.fspath(fp) == str(tmp_path / "a.png"):
            raise PermissionError(13, "Permission denied", os.fspath(fp))
        return real_open(fp, *args, **kwargs)

    monkeypatch.setattr(PIL.Image, "open", deny)
    message = _one_line_error(lambda: ImageLoader(8, False)(tmp_path / "a.png"), "a.png", "permission denied", "chmod")
    assert "corrupt" not in message


def test_size_hint_never_suggests_a_size_too_small_to_train():
    from parity.data.imagefolder import size_error

    assert "data.image_size=1 " not in str(size_error("x.png", (1, 1), 32)) + " "
    assert "data.image_size=64" in str(size_error("x.png", (64, 64), 32))
