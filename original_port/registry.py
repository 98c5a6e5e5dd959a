"""trans-inr's model registry: models are built from ``{'name': ..., 'args': {...}}`` specs.

Mirrors ``trans-inr-master/models/models.py``.
"""

from __future__ import annotations

import copy

MODELS: dict[str, type] = {}


def register(name: str):
    def decorator(cls):
        MODELS[name] = cls
        return cls
    return decorator


def make(spec: dict, args: dict | None = None, load_sd: bool = False):
    """Build ``spec['name']`` with ``spec['args']`` (updated by ``args``); load ``spec['sd']`` strictly
    when ``load_sd``."""
    name = spec.get("name") if isinstance(spec, dict) else None
    if name not in MODELS:
        known = ", ".join(sorted(MODELS))
        raise ValueError(f"unknown model name {name!r} in spec: expected one of {known}")
    model_args = copy.deepcopy(spec.get("args", {}))
    if args:
        model_args.update(args)
    model = MODELS[name](**model_args)
    if load_sd:
        model.load_state_dict(spec["sd"], strict=True)
    return model
