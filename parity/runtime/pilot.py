"""Learning-rate pilots: each baseline of a preset trained at a grid of multiples of its source's learning
rate and scored on a validation split carved from the training images (``data.eval_split=validation``),
never on the test images. The runs live in ordinary run folders (resumable, shared by two commands through
the run locks); ``parity.report.pilot`` reads them and applies the rule that picks one rate a side.

Layout: OUT/<preset>-lr-pilot/pilot.json and OUT/<preset>-lr-pilot/<side>-x<multiplier>/seed-<k>/.
"""

from __future__ import annotations

import shlex
import sys
import time
from pathlib import Path

from ..core.errors import ParityError
from ..core.store import write_json
from ..evaluation.evaluate import reference_levels
from ..experiment.config import apply_overrides, baseline, validate
from ..experiment.presets import preset
from .matrix import Job, MatrixPlan

PILOT_FILE = "pilot.json"
SIDES = ("notebook", "original")


def pilot_folder(out, preset_name: str) -> Path:
    return Path(out) / f"{preset_name}-lr-pilot"


def variant_id(side: str, multiplier: float) -> str:
    return f"{side}-x{multiplier:g}"


def plan_pilot(preset_name: str, multipliers: list[float], seeds: int, out, overrides: list[str] | None = None
               ) -> MatrixPlan:
    """The pilot's runs (side x multiplier x seed) with their configurations, and pilot.json written."""
    if not multipliers or any(not m > 0 for m in multipliers):
        raise ParityError(f"--multipliers must be positive numbers, got {multipliers}: e.g. --multipliers 3,10,30")
    nb, orig = preset(preset_name).baselines()
    folder = pilot_folder(out, preset_name)
    variants, jobs = [], []
    for side, cfg in zip(SIDES, (nb, orig)):
        source_lr = baseline(side).train.lr
        for m in multipliers:
            c = cfg.copy()
            c.train.lr = source_lr * m
            c.data.eval_split = "validation"
            c = apply_overrides(c, overrides or [])
            c.name = variant_id(side, m)
            validate(c)
            variants.append({"id": c.name, "side": side, "multiplier": m, "source_lr": source_lr, "lr": c.train.lr})
            for s in range(seeds):
                run = c.copy()
                run.train.seed = s
                jobs.append(Job(c.name, s, run, folder / c.name / f"seed-{s}"))
    folder.mkdir(parents=True, exist_ok=True)
    command = ("parity pilot " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["pilot"] else
               f"parity pilot --preset {preset_name} --multipliers {','.join(f'{m:g}' for m in multipliers)} "
               f"--seeds {seeds} --out {out}")
    manifest = {"preset": preset_name, "multipliers": multipliers, "seeds": list(range(seeds)), "command": command,
                "overrides": overrides or [], "variants": variants,
                "baselines": {"notebook": nb.to_dict(), "original": orig.to_dict()},
                "references": _validation_references(jobs[0].cfg)}
    write_json(folder / PILOT_FILE, manifest)
    return MatrixPlan(folder, manifest, jobs, f"{preset_name} lr pilot")


def _validation_references(cfg) -> dict | None:
    """Trivial predictors on a pilot run's validation images (None when the data cannot be loaded: the runs say why)."""
    from ..data import make_datasets

    try:
        train, validation = make_datasets(cfg.data)
    except ParityError:
        return None
    return reference_levels(train, validation)


def run_pilot(preset_name: str, multipliers: list[float], seeds: int, out, overrides: list[str] | None = None,
              console=None) -> Path:
    """Plan and train the pilot (finished runs skipped, interrupted ones resumed); returns its folder."""
    from .executors import LocalExecutor

    started = time.time()
    plan = plan_pilot(preset_name, multipliers, seeds, out, overrides)
    LocalExecutor().run(plan.jobs, plan.title, started, console=console)
    return plan.folder


__all__ = ["PILOT_FILE", "pilot_folder", "plan_pilot", "run_pilot", "variant_id"]
