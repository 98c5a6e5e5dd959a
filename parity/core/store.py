"""Files the harness writes: every write is atomic (temporary file in the same folder, fsync, then
rename), so a run killed at any moment leaves the previous file or the new one, never half of one."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
from pathlib import Path

import torch
import yaml

from .errors import ParityError


def _file_mode() -> int:
    """What open() would give a new file under the current umask (mkstemp always makes 0600, which would
    hide results from the rest of a group on a shared file system)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


TEMPORARY_GLOB = ".*.tmp"  # the names writes take before their rename (mkstemp below)


def remove_partial_writes(folder) -> None:
    """Delete the temporary files of writes a kill cut short in ``folder`` (never a finished file)."""
    for stale in Path(folder).glob(TEMPORARY_GLOB):
        stale.unlink(missing_ok=True)


def atomic_write_bytes(path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def figure_png(fig, dpi: int = 100) -> bytes:
    """A matplotlib figure rendered as PNG in memory (the one place a figure is rendered, so writes stay atomic)."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


def atomic_save_figure(fig, path, dpi: int = 100) -> Path:
    """A matplotlib figure as PNG, rendered in memory and then written atomically."""
    atomic_write_bytes(path, figure_png(fig, dpi))
    return Path(path)


def write_json(path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_jsonable) + "\n")


def read_json(path, default=None):
    path = Path(path)
    if not path.exists():
        return default
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ParityError(f"{path} is not valid JSON: delete it to recompute that result") from None
    except OSError as e:
        raise ParityError(f"cannot read {path} ({e.strerror or type(e).__name__}): check the file") from None


def write_yaml(path, obj) -> None:
    atomic_write_text(path, yaml.safe_dump(obj, sort_keys=False))


def atomic_torch_save(path, obj) -> None:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def _jsonable(x):
    if isinstance(x, torch.Tensor):
        return x.tolist()
    if isinstance(x, Path):
        return str(x)
    raise TypeError(f"not JSON-serialisable: {type(x).__name__}")


def safe_folder_name(text: str) -> str:
    """A run folder name from a configuration name: letters, digits and ``._+-`` only, no path separators
    and no leading dots, so a folder built from it always stays inside the folder it is joined to (a
    configuration named after a YAML path, absolute or with ``..``, included)."""
    name = re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip(".-")
    return name or "run"

