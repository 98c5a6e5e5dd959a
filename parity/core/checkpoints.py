"""Safe checkpoint reading shared by both ports: ``weights_only`` loading and readable errors."""

from __future__ import annotations

import os
import pickle
import re
import zipfile

import torch

from .errors import ParityError, first_line

# A parity run's checkpoint.pt: the weights and the optimizer under these keys, beside the training state's own
# fields (parity.runtime.rundir.TrainState writes and reads them). Named once here, where every reader can see them.
RUN_MODEL, RUN_OPTIMIZER = "model", "optimizer"
RUN_STATE_KEYS = ("step", "history", "train_time", "train_images")
RUN_CHECKPOINT_KEYS = (RUN_MODEL, RUN_OPTIMIZER, *RUN_STATE_KEYS)


def is_run_checkpoint(state, complete: bool = False) -> bool:
    """Whether a loaded checkpoint has a parity run's layout: its weights, optimizer and step (what identifies one,
    enough to read its weights), or with ``complete`` every key a resumed run needs."""
    keys = RUN_CHECKPOINT_KEYS if complete else (RUN_MODEL, RUN_OPTIMIZER, "step")
    return isinstance(state, dict) and all(k in state for k in keys)


def read_checkpoint(path) -> object:
    """torch.load with ``weights_only=True`` on CPU; every failure becomes a one-line ParityError."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise ParityError(f"checkpoint {path!r} does not exist: check the path")
    if not zipfile.is_zipfile(path):  # torch.save has written zip archives since torch 1.6
        raise ParityError(f"checkpoint {path!r} is not a readable torch file (not the zip archive torch.save "
                          "writes): it may be truncated or corrupt; re-save or re-download it")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise ParityError(f"checkpoint {path!r} holds objects other than tensors and plain containers, "
                          f"refused by weights_only loading ({_refused_global(e)}): re-save it as a state dict"
                          ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        first = _first_line(e)
        raise ParityError(f"checkpoint {path!r} is not a readable torch file ({first}): "
                          f"it may be truncated or corrupt; re-save or re-download it") from None


def load_state_dict_strict(model: torch.nn.Module, state_dict, source: str = "checkpoint") -> None:
    """load_state_dict(strict=True), with missing, unexpected and mis-shaped keys listed in one line."""
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ParityError(f"{source} does not hold a state dict (a dict of tensors): pass a model checkpoint")
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    misshaped = sorted(k for k in set(own) & set(state_dict) if own[k].shape != state_dict[k].shape)
    if missing or unexpected or misshaped:
        def show(keys):
            return ", ".join(keys[:5]) + (f" (+{len(keys) - 5} more)" if len(keys) > 5 else "")
        parts = [f"{label} {len(keys)}: {show(keys)}" for label, keys in
                 (("missing", missing), ("unexpected", unexpected), ("mis-shaped", misshaped)) if keys]
        raise ParityError(f"{source} does not fit the model ({'; '.join(parts)}): "
                          f"build the model with the configuration the weights were trained with")
    model.load_state_dict(state_dict, strict=True)


def _refused_global(e: Exception) -> str:
    """The class or function torch refused, e.g. 'posix.system', rather than torch's multi-paragraph
    advice (which suggests weights_only=False: exactly what must not be done with an untrusted file)."""
    found = re.search(r"GLOBAL ([\w.]+)", str(e))
    return f"it refers to {found.group(1)}" if found else re.sub(r"\x1b\[[0-9;]*m", "", _first_line(e))


def _first_line(e: Exception, limit: int = 120) -> str:
    text = first_line(e)
    return text if len(text) <= limit else text[: limit - 3] + "..."
