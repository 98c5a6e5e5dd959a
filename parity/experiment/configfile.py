"""Configuration files: our YAML layout (``base`` + sections) or an original trans-inr YAML, told apart by
their keys. Its own module so that the typed configuration (config.py) and the trans-inr reader
(transinr.py, which builds on it) do not import each other."""

from __future__ import annotations

from pathlib import Path

import yaml

from ..core.errors import ParityError
from .config import ExperimentConfig, from_dict
from .transinr import from_transinr_config, is_transinr_config


def load_yaml(path) -> ExperimentConfig:
    """Our configuration YAML, or an original trans-inr YAML (recognised by its keys)."""
    path = Path(path)
    if path.is_dir():
        raise ParityError(f"{path} is a folder, not a configuration file: pass the YAML file itself")
    if not path.is_file():
        raise ParityError(f"configuration file {str(path)!r} does not exist: check the path")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise ParityError(f"{path} is not a text file (not UTF-8): pass a YAML configuration") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ParityError(f"{path} is not valid YAML{where}: fix the syntax") from None
    if is_transinr_config(data):
        return from_transinr_config(data, source=str(path))
    return from_dict(data, source=str(path))


__all__ = ["load_yaml"]
