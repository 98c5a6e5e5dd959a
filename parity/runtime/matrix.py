"""Ablation matrices: which variants, under which preset, and the runner that persists results run by
run, skips finished runs and resumes interrupted ones.

Layout: RUNS_DIR/<preset>-<kind>/matrix.json and RUNS_DIR/<preset>-<kind>/<variant>/seed-<k>/.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from ..core.errors import ParityError, did_you_mean
from ..core.store import read_json, write_json
from ..evaluation.evaluate import reference_levels
from ..experiment.config import ExperimentConfig, apply_overrides, validate
from ..experiment.differences import DIFFERENCES, GROUPS, IMPROVEMENTS, NOT_IN_SEED, REGISTRY, by_severity, config_name
from ..experiment.kinds import KINDS, RUN_ORDER, cumulative_step_id, factorial_cell_id
from ..experiment.presets import preset
from .rundir import RunDir


@dataclass
class Variant:
    id: str
    label: str
    base: str
    toggles: list[str]
    config: ExperimentConfig | None
    role: str = "variant"
    skipped: str | None = None
    groups: list[str] | None = None  # factorial cells: the groups at the original's values
    fixed: str | None = None  # a source defect this variant runs without (see fix_defects_outside_protocol)

    def record(self) -> dict:
        out = {"id": self.id, "label": self.label, "base": self.base, "toggles": self.toggles, "role": self.role,
               "skipped": self.skipped}
        if self.groups is not None:
            out["groups"] = self.groups
        if self.fixed:
            out["fixed"] = self.fixed
        return out


def factorial_cells(groups: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every subset of ``groups`` (in their order), the empty one first, by size."""
    return [c for r in range(len(groups) + 1) for c in combinations(groups, r)]


BATCH0_FIX = ("sampled pixels with the LAINR decoder: every sample decoded at its own coordinates "
              "(fix-batch0-coords), since the original never trains on sampled pixels")


def fix_defects_outside_protocol(cfg: ExperimentConfig) -> str | None:
    """Where a variant puts the LAINR decoder on per-image sampled pixels, the batch-element-0 defect would
    train 15 of 16 images against another image's coordinates, a cost the original never pays (it trains
    on the full grid) and that would be charged to whichever difference made the mix. Such variants decode
    each sample at its own coordinates; returns the note, None when nothing was changed."""
    if cfg.model.decoder == "lainr" and cfg.train.pixels == "sampled" and not cfg.model.per_sample_coords:
        cfg.model.per_sample_coords = True
        return BATCH0_FIX
    return None


def matrix_variants(kind: str, pair: tuple[ExperimentConfig, ExperimentConfig], groups: tuple[str, ...] | None = None,
                    faithful_defects: bool = False) -> list[Variant]:
    """The variants of a matrix kind, with configurations built through the registry. ``groups``: the
    factorial's factors (default every group); ``faithful_defects``: keep the batch-0 defect where the
    LAINR decoder meets sampled pixels (default: fixed there, and recorded)."""
    if kind not in KINDS:
        raise ParityError(f"unknown matrix {kind!r}{did_you_mean(kind, KINDS)}: choose one of {', '.join(KINDS)}")
    nb, orig = pair
    out: list[Variant] = []
    if kind == "factorial":
        groups = tuple(groups or GROUPS)
        for cell in factorial_cells(groups):
            cfg = nb
            for g in cell:
                for diff_id in GROUPS[g]:
                    cfg = REGISTRY[diff_id].apply(cfg, "original", pair)
            role = "baseline" if not cell else "variant"
            out.append(Variant(factorial_cell_id(cell), " + ".join(cell) or "notebook", "notebook",
                               [d for g in cell for d in GROUPS[g]], cfg, role=role, groups=list(cell)))
    elif kind == "one-at-a-time":
        out.append(Variant(KINDS[kind].baseline, "notebook", "notebook", [], nb, role="baseline"))
        for d in DIFFERENCES:
            cfg = d.apply(nb, "original", pair)
            out.append(Variant(config_name("notebook", ("+", d.id)), f"+ {d.id}", "notebook", [d.id], cfg,
                               skipped=d.applicable(cfg)))
        # the seed audit rates jitter in training as a difference, though neither source jitters: measured
        # onto the notebook here as the original's side is measured in the improvements matrix
        for imp in (i for i in IMPROVEMENTS if i.claimed_severity != NOT_IN_SEED):
            cfg = imp.apply(nb)
            out.append(Variant(config_name("notebook", ("+", imp.id)), f"+ {imp.id}", "notebook", [imp.id], cfg,
                               skipped=imp.applicable(cfg)))
    elif kind == "leave-one-out":
        out.append(Variant(KINDS[kind].baseline, "original", "original", [], orig, role="baseline"))
        for d in DIFFERENCES:
            cfg = d.apply(orig, "notebook", pair)
            out.append(Variant(config_name("original", ("-", d.id)), f"- {d.id}", "original", [d.id], cfg,
                               skipped=d.applicable(cfg)))
    elif kind == "cumulative":
        cfg, toggles = nb, []
        out.append(Variant(KINDS[kind].baseline, "notebook", "notebook", [], nb, role="baseline"))
        for k, d in enumerate(by_severity(), start=1):
            cfg, toggles = d.apply(cfg, "original", pair), toggles + [d.id]
            why = d.applicable(cfg)
            out.append(Variant(cumulative_step_id(k, d.id), f"+ {d.id}", "notebook", list(toggles), cfg,
                               skipped=f"no effect here: {why}" if why else None))
    else:  # improvements
        out.append(Variant(KINDS[kind].baseline, "original", "original", [], orig, role="baseline"))
        for imp in IMPROVEMENTS:
            cfg = imp.apply(orig)
            out.append(Variant(config_name("original", ("+", imp.id)), f"+ {imp.id}", "original", [imp.id], cfg,
                               skipped=imp.applicable(cfg)))
    for v in out:
        if v.config is not None:
            v.config = v.config.copy()
            if v.config.data.eval_split is None:  # every variant scored on the same images, whatever its split
                v.config.data.eval_split = nb.data.split
            if not faithful_defects:
                v.fixed = fix_defects_outside_protocol(v.config)
            v.config.name = v.id
            validate(v.config)
    return out


@dataclass
class Job:
    """One (variant, seed) run of a matrix; ``cfg`` already carries the seed."""

    variant: str
    seed: int
    cfg: ExperimentConfig
    run_dir: Path

    @property
    def label(self) -> str:
        return f"{self.variant} seed {self.seed}"


@dataclass
class MatrixPlan:
    """A planned matrix: its folder (matrix.json written), the manifest, and the runs to train."""

    folder: Path
    manifest: dict
    jobs: list[Job]
    title: str


def plan_matrix(kind: str, preset_name: str, seeds: int, out: Path, overrides: list[str] | None = None,
                only: list[str] | None = None, groups: tuple[str, ...] | None = None,
                faithful_defects: bool = False, write: bool = True) -> MatrixPlan:
    """The variants of a matrix at a preset, as runs (variant x seed) in their folders, and its manifest
    (matrix.json, written). ``groups``: the factorial's factors; ``only``: these variants and the baseline.
    Training is an executor's job (parity.runtime.executors.run_matrix)."""
    p = preset(preset_name)
    nb, orig = p.baselines()
    if overrides:
        nb, orig = apply_overrides(nb, overrides), apply_overrides(orig, overrides)
    variants = matrix_variants(kind, (nb, orig), groups, faithful_defects)
    if only:
        # a typo would otherwise run the baseline alone; ids of the other kinds are fine (--matrix all)
        every = {v.id for k in RUN_ORDER for v in matrix_variants(k, (nb, orig), groups)}
        unknown = [o for o in only if o not in every]
        if unknown:
            raise ParityError(f"--only {unknown[0]!r} is not a variant of any matrix"
                              f"{did_you_mean(unknown[0], sorted(every), closest=True)}: variant ids are "
                              "notebook+ID (one-at-a-time), original-ID (leave-one-out), step-NN-ID (cumulative), "
                              "original+ID (improvements), with-GROUP+GROUP (factorial)")
        variants = [v for v in variants if v.id in only or v.role == "baseline"]
    folder = Path(out) / f"{preset_name}-{kind}"
    if write:  # a dry run plans without touching the folder
        folder.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(seeds))
    manifest = read_json(folder / "matrix.json") or {}
    from .train import environment

    manifest.update({"kind": kind, "preset": preset_name, "preset_description": p.description, "seeds": seed_list,
                     "command": "parity ablate " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["ablate"]
                     else f"parity ablate --matrix {kind} --preset {preset_name} --seeds {seeds} --out {out}",
                     "created": manifest.get("created") or _dt.datetime.now().isoformat(timespec="seconds"),
                     "environment": environment(), "overrides": overrides or [],
                     "baselines": {"notebook": nb.to_dict(), "original": orig.to_dict()},
                     "faithful_defects": faithful_defects,
                     "variants": [v.record() for v in variants]})
    if kind == "factorial":
        manifest["groups"] = list(groups or GROUPS)
    jobs = []
    for v in variants:
        if v.skipped:
            continue
        for s in seed_list:
            cfg = v.config.copy()
            cfg.train.seed = s
            jobs.append(Job(v.id, s, cfg, folder / v.id / f"seed-{s}"))
    refuse_other_configurations(folder, jobs)  # before matrix.json would describe settings the runs never had
    if write:
        if "references" not in manifest:
            manifest["references"] = _references(nb)
        write_json(folder / "matrix.json", manifest)
    return MatrixPlan(folder, manifest, jobs, f"{preset_name} {kind}")


def refuse_other_configurations(folder: Path, jobs: list[Job]) -> None:
    """One line naming the fields when any run folder, finished or not, holds another configuration than its
    job's: a finished run would otherwise be skipped while matrix.json and the report claimed the new values."""
    found: dict[str, tuple] = {}
    runs = 0
    for job in jobs:
        diff = RunDir(job.run_dir).config_differences(job.cfg)
        runs += bool(diff)
        for key, (was, now) in diff.items():
            found.setdefault(key, (was, now))
    if found:
        shown = ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(found.items())[:3])
        more = f" (+{len(found) - 3} more fields)" if len(found) > 3 else ""
        raise ParityError(f"{folder} holds {runs} run(s) of another configuration ({shown}{more}): pass another "
                          "--out, or the settings those runs were trained with")


def _references(cfg: ExperimentConfig) -> dict | None:
    """Trivial predictors on the matrix's evaluation images (every variant is scored on them when the
    preset sets data.eval_split); None when the data cannot be loaded (the runs will say why)."""
    from ..data import make_datasets

    try:
        train, test = make_datasets(cfg.data)
    except ParityError:
        return None
    return reference_levels(train, test)
