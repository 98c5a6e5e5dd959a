"""trans-inr checkpoints: ``{'model': {'name', 'args', 'sd'}, 'optimizer': {...}, 'epoch', 'cfg'}``,
as written by ``trans-inr-master/trainers/base_trainer*.py``'s ``save_checkpoint``."""

from __future__ import annotations

from typing import NamedTuple

import torch

from parity.core.checkpoints import load_state_dict_strict, read_checkpoint
from parity.core.errors import ParityError, first_line
from parity.core.store import atomic_torch_save

from .registry import make


class Checkpoint(NamedTuple):
    model: torch.nn.Module
    epoch: int | None
    cfg: dict | None
    optimizer: dict | None


def from_spec(spec: dict) -> torch.nn.Module:
    """Build a model from a trans-inr spec ``{'name': 'mamba_lainr_inr', 'args': {...}}``; a spec with
    ``'sd'`` also loads those weights strictly."""
    if not isinstance(spec, dict) or "name" not in spec or "args" not in spec:
        raise ParityError("a model spec is a dict with 'name' and 'args' (as in the trans-inr YAMLs): "
                          f"got {type(spec).__name__}")
    try:
        model = make(spec)
    except ParityError:
        raise
    except (ValueError, TypeError) as e:  # unknown name or arguments the class does not take: bad input, one line
        reason = first_line(e)
        raise ParityError(f"cannot build model {spec['name']!r} from its spec ({reason}): the file must come "
                          "from a mamba_lainr_inr trans-inr run") from None
    if "sd" in spec:
        load_state_dict_strict(model, spec["sd"], source=f"spec {spec['name']!r}")
    return model


def load_checkpoint(path) -> Checkpoint:
    """Read a trans-inr checkpoint (weights_only) and return the model with its epoch and config."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("model"), dict) or "sd" not in ckpt["model"]:
        raise ParityError(f"{path!s} is not a trans-inr checkpoint (expected {{'model': {{'name', 'args', 'sd'}}, "
                          "...}}): for a bare state dict build the model and load it with load_state_dict_strict")
    return Checkpoint(from_spec(ckpt["model"]), ckpt.get("epoch"), ckpt.get("cfg"), ckpt.get("optimizer"))


def save_checkpoint(path, model: torch.nn.Module, spec: dict, optimizer=None, optimizer_spec=None,
                    epoch=None, cfg=None) -> None:
    """Write the trans-inr layout, so the original code can resume from our checkpoints too."""
    payload = {"model": {**spec, "sd": model.state_dict()}, "epoch": epoch, "cfg": cfg}
    if optimizer is not None:
        payload["optimizer"] = {**(optimizer_spec or {}), "sd": optimizer.state_dict()}
    atomic_torch_save(path, payload)  # a crash mid-write leaves the previous checkpoint, not half of one
