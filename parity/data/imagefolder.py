"""Labelled image folders, ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*`` (labels from the
folder names, as torchvision's ImageFolder gives them), and the image loading every file-based
source shares: open as RGB, check the size, name the file when anything is wrong.

Sizes are checked cheaply: at construction a few files spread over the set have their headers read
(PIL does not decode pixels until asked); every other file is checked when it is loaded.

Hostile layouts (decided, each a one-line ParityError rather than a hang or a silent wrong count):

* Symbolic links are followed (a class folder, or a folder or image inside one, may be a link), but a
  linked folder that contains the folder it is reached from (a loop, such as ``cat/all -> ..``) is
  refused, naming the link; so is one file reached twice (``cat/more -> ../dog``, or two links to one
  image), so every image is counted once, under its own class.
* Only regular files (after following links) are ever opened: a FIFO, socket, device or broken link
  with an image extension is refused by name when the folder is scanned, and again by the loader.
* A folder that cannot be listed (no permission) is reported as unreadable, never as empty.
* 16-bit greyscale images (PNG/TIFF mode ``I;16``) are read exactly, value / 65535, as three equal
  channels. PIL itself reads 16-bit colour PNGs as 8-bit RGB (the high byte of each sample), within
  1/255 of value / 65535. Other modes without an 8-bit or 16-bit range (``I``: 32-bit integers, as
  PIL gives 16-bit PGMs; ``F``: floats) are refused, naming the file and the mode.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision import datasets, transforms
from torchvision.transforms import functional as TF

from ..core.errors import ParityError, first_line

SIZE_SAMPLES = 8  # files per set whose headers are read up front
IMG_EXTENSIONS = datasets.folder.IMG_EXTENSIONS
EIGHT_BIT_MODES = frozenset({"1", "L", "LA", "La", "P", "PA", "RGB", "RGBA", "RGBa", "RGBX", "CMYK", "YCbCr"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})  # unsigned 16-bit greyscale


class _ToTensor:
    """``ToTensor`` for PIL images; a tensor (a 16-bit image the loader already scaled to [0, 1]) passes."""

    def __call__(self, pic):
        return pic if isinstance(pic, torch.Tensor) else TF.to_tensor(pic)

    def __repr__(self) -> str:
        return "ToTensor()"


def image_transform(image_size: int, resize_crop: bool) -> transforms.Compose:
    """The original's loader (Resize + CenterCrop + ToTensor) or the notebook's (ToTensor only)."""
    steps = [transforms.Resize(image_size), transforms.CenterCrop(image_size)] if resize_crop else []
    return transforms.Compose([*steps, _ToTensor()])


def _file_kind(mode: int) -> str:
    for test, kind in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return kind
    return "not a regular file"


def _not_regular_error(path, kind: str) -> ParityError:
    return ParityError(f"{path} is {kind}, not an image file: remove it (only regular files, or links to them, "
                       "are read)")


def _stat_error(path, e: OSError) -> ParityError:
    if isinstance(e, FileNotFoundError) and os.path.islink(path):
        return _not_regular_error(path, f"a broken symbolic link (to {os.readlink(path)})")
    return _corrupt_error(path, e)


def require_regular_file(path) -> os.stat_result:
    """Refuse anything but a regular file (links followed) before it is opened: opening a FIFO blocks."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise _stat_error(path, e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular_error(path, _file_kind(st.st_mode))
    return st


def size_error(path, size: tuple[int, int], image_size: int) -> ParityError:
    w, h = size
    # another image size is a sensible fix only for images large enough to train on (SSIM's window is 7 wide)
    other = f", or data.image_size={w} if every image is {w}x{h}" if w == h and w >= 8 else ""
    return ParityError(f"image {path} is {w}x{h}, not data.image_size={image_size}: set data.resize_crop=true to "
                       f"resize and centre-crop images to {image_size}x{image_size}{other}")


def _corrupt_error(path, e: Exception) -> ParityError:
    if isinstance(e, PermissionError):
        return ParityError(f"cannot read image {path} (permission denied): make it readable (chmod a+r) or delete it")
    reason = first_line(e)
    return ParityError(f"cannot read image {path} ({reason}): replace or delete the corrupt file")


def _mode_error(path, mode: str) -> ParityError:
    what = {"I": "32-bit integer pixels", "F": "floating-point pixels"}.get(mode, "pixels that are not 8- or 16-bit")
    return ParityError(f"image {path} has PIL mode {mode} ({what}, no known range to scale to [0, 1]): save it as an "
                       "8-bit or 16-bit PNG")


# The most pixels one image may have; PIL's own decompression-bomb check comes later (2 x 89 M pixels) and ends
# in a traceback. A setting: PARITY_MAX_IMAGE_PIXELS (README, "Data").
MAX_IMAGE_PIXELS = 4096 * 4096


def max_image_pixels() -> int:
    value = os.environ.get("PARITY_MAX_IMAGE_PIXELS", "")
    try:
        return int(value) if value else MAX_IMAGE_PIXELS
    except ValueError:
        raise ParityError(f"PARITY_MAX_IMAGE_PIXELS={value!r} is not a whole number of pixels: unset it or give "
                          f"one, e.g. {MAX_IMAGE_PIXELS}") from None


def _unreadable(path, e: Exception) -> ParityError:
    if isinstance(e, Image.DecompressionBombError):  # PIL refused it from its header, past its own limit
        return ParityError(f"image {path} is a decompression bomb ({first_line(e)}): remove it")
    return _corrupt_error(path, e)


def check_pixels(path, size: tuple[int, int]) -> None:
    """Refuse, before decoding, an image larger than max_image_pixels() (a decompression bomb, or a mistake)."""
    limit = max_image_pixels()
    if size[0] * size[1] > limit:
        raise ParityError(f"image {path} is {size[0]}x{size[1]} ({size[0] * size[1]:,} pixels), above the limit of "
                          f"{limit:,} (a decompression bomb, or an image this toolkit never needs): remove it, or "
                          "raise PARITY_MAX_IMAGE_PIXELS")


class ImageLoader:
    """Opens one file as an RGB PIL image, or a 16-bit greyscale one as a float32 (3, H, W) tensor of
    value / 65535; with ``resize_crop`` off the image must already be ``image_size`` square. A class
    rather than a closure so DataLoader workers can pickle it."""

    def __init__(self, image_size: int, resize_crop: bool):
        self.image_size, self.resize_crop = image_size, resize_crop

    def __call__(self, path) -> Image.Image | torch.Tensor:
        require_regular_file(path)
        try:
            with Image.open(path) as im:
                check_pixels(path, im.size)
                if not self.resize_crop and im.size != (self.image_size, self.image_size):
                    raise size_error(path, im.size, self.image_size)
                if im.mode in SIXTEEN_BIT_MODES:  # convert("RGB") would clip every value above 255 to white
                    grey = torch.from_numpy(np.asarray(im).astype(np.float32) / 65535.0)
                    return grey.expand(3, *grey.shape).contiguous()
                if im.mode not in EIGHT_BIT_MODES:
                    raise _mode_error(path, im.mode)
                return im.convert("RGB")  # convert() decodes, so truncated files fail here, inside the try
        except ParityError:
            raise
        except Exception as e:  # OSError, UnidentifiedImageError, a bomb, any decoder failure: one line
            raise _unreadable(path, e) from None


def check_sizes(paths: list, image_size: int, resize_crop: bool, where: str) -> None:
    """Read the headers of a few files spread over ``paths``: fail early on unreadable files, on
    mixed sizes and on a size that is not ``image_size`` (the last two only without resize_crop)."""
    if not paths:
        return
    step = max(1, len(paths) // SIZE_SAMPLES)
    seen: dict[tuple[int, int], object] = {}
    for path in list(paths[::step])[:SIZE_SAMPLES] + [paths[-1]]:
        require_regular_file(path)
        try:
            with Image.open(path) as im:
                check_pixels(path, im.size)
                seen.setdefault(im.size, path)
        except ParityError:
            raise
        except Exception as e:  # OSError, UnidentifiedImageError, a bomb, any decoder failure: one line
            raise _unreadable(path, e) from None
    if resize_crop:
        return
    if len(seen) > 1:
        (size_a, path_a), (size_b, path_b) = list(seen.items())[:2]
        raise ParityError(f"images under {where} have mixed sizes ({path_a} is {size_a[0]}x{size_a[1]}, {path_b} is "
                          f"{size_b[0]}x{size_b[1]}): set data.resize_crop=true to resize and centre-crop them to "
                          f"{image_size}x{image_size}")
    ((size, path),) = seen.items()
    if size != (image_size, image_size):
        raise size_error(path, size, image_size)


def _list(directory, what: str) -> list[os.DirEntry]:
    """The entries of ``directory``; unreadable -> the reason and the fix, never "empty"."""
    try:
        with os.scandir(directory) as it:
            return list(it)
    except PermissionError:
        raise ParityError(f"cannot read {what} {directory} (permission denied): make it readable "
                          f"(chmod -R a+rX {directory}) or remove it") from None
    except OSError as e:
        raise ParityError(f"cannot read {what} {directory} ({e.strerror or type(e).__name__}): make it a readable "
                          "folder or remove it") from None


def _is_dir(entry: os.DirEntry) -> bool:
    """Whether ``entry`` is a folder, links followed; a broken or looping link is not one."""
    try:
        return entry.is_dir()
    except OSError:  # a link looping on itself (ELOOP), an unreadable target: not a folder; files see to it
        return False


def _is_within(path: str, folder: str) -> bool:
    return path == folder or path.startswith(folder.rstrip(os.sep) + os.sep)


def scan_class_folder(class_dir: str, label: int, seen: dict) -> list[tuple[str, int]]:
    """(path, label) for every image file under ``class_dir``, links followed, in torchvision's order.
    ``seen`` maps each file's (device, inode) and each folder's real path to the path it was first
    found at, across the whole split: a second path to either is refused, so a loop, a link into
    another class and a diamond of links are all stopped at once."""
    found: list[tuple[str, int]] = []

    def visit(directory: str, chain: tuple[str, ...], what: str) -> None:
        first = seen.setdefault(chain[-1], directory)
        if first != directory:
            raise ParityError(f"{directory} and {first} are the same folder (through a symbolic link): each image "
                              "may appear once, under one class; remove the link")
        for entry in _list(directory, what):
            if _is_dir(entry):
                if entry.is_symlink():
                    target = os.path.realpath(entry.path)
                    inside = next((c for c in chain if _is_within(c, target)), None)
                    if inside is not None:  # the link leads back to a folder it is inside: a loop
                        raise ParityError(f"symbolic link loop: {entry.path} points to {target}, which is or "
                                          f"contains {inside}, so it would be read again and again: remove the link")
                else:
                    target = os.path.join(chain[-1], entry.name)
                visit(entry.path, (*chain, target), "folder")
            elif datasets.folder.has_file_allowed_extension(entry.name, IMG_EXTENSIONS):
                try:
                    st = entry.stat()  # links followed
                except OSError as e:
                    raise _stat_error(entry.path, e) from None
                if not stat.S_ISREG(st.st_mode):
                    raise _not_regular_error(entry.path, _file_kind(st.st_mode))
                first = seen.setdefault((st.st_dev, st.st_ino), entry.path)
                if first != entry.path:
                    raise ParityError(f"{entry.path} and {first} are the same file (through a symbolic or hard "
                                      "link): each image may appear once, under one class; remove one of them")
                found.append((entry.path, label))

    visit(class_dir, (os.path.realpath(class_dir),), "class folder")
    # torchvision's order: folder by folder (sorted paths), files sorted within each.
    return sorted(found, key=lambda item: (os.path.dirname(item[0]), os.path.basename(item[0])))


class LabelledImageFolder(datasets.ImageFolder):
    """``ROOT/<split>/<class>/*.jpg|png|...`` -> (float32 (3, S, S) in [0, 1], class index), classes
    interleaved (see ``interleave_classes``). The folders are scanned here, not by torchvision, so
    that loops, duplicates, unreadable folders and non-regular files are refused by name (see the
    module's docstring)."""

    labelled = True

    def __init__(self, root, split: str, image_size: int = 32, resize_crop: bool = False):
        root = Path(root)
        folder = root / split
        layout = f"expected {root}/train/<class>/*.jpg and {root}/test/<class>/*.jpg"
        if not root.is_dir():
            raise ParityError(f"image folder {root} does not exist: check data.root (--data-root); {layout}")
        if not folder.is_dir():
            raise ParityError(f"no {split}/ folder under {root}: {layout}")
        if not any(_is_dir(entry) for entry in _list(folder, "folder")):
            raise ParityError(f"{folder} has no class folders: {layout}")
        super().__init__(str(folder), transform=image_transform(image_size, resize_crop),
                         loader=ImageLoader(image_size, resize_crop))
        check_sizes([p for p, _ in self.samples], image_size, resize_crop, str(folder))
        self.samples = self.imgs = interleave_classes(self.samples)
        self.targets = [label for _, label in self.samples]

    def find_classes(self, directory) -> tuple[list[str], dict[str, int]]:
        classes = sorted(entry.name for entry in _list(directory, "folder") if _is_dir(entry))
        return classes, {name: i for i, name in enumerate(classes)}

    @staticmethod
    def make_dataset(directory, class_to_idx, extensions=None, is_valid_file=None, allow_empty=False
                     ) -> list[tuple[str, int]]:
        seen: dict = {}  # files' (device, inode) and folders' real paths -> where first found
        samples = []
        for name in sorted(class_to_idx):
            class_dir = os.path.join(directory, name)
            found = scan_class_folder(class_dir, class_to_idx[name], seen)
            if not found and not allow_empty:
                raise ParityError(f"empty class folder {class_dir} (no image files with extensions "
                                  f"{', '.join(IMG_EXTENSIONS)}): add images or remove the folder")
            samples += found
        return samples


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
