"""Ablation matrices: which variants, under which preset, and the runner that persists results run by
run, skips finished runs and resumes interrupted ones.

Layout: RUNS_DIR/<preset>-<kind>/matrix.json and RUNS_DIR/<preset>-<kind>/<variant>/seed-<k>/.
"""

from __future__ import annotations

import datetime as _dt
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExperimentConfig, baseline, set_field, validate
from .differences import DIFFERENCES, GROUPS, IMPROVEMENTS, REGISTRY, by_severity
from .errors import ParityError
from .errors import did_you_mean
from .store import read_json, write_json

KINDS = ("factorial", "leave-one-out", "cumulative", "one-at-a-time", "improvements")


@dataclass
class Preset:
    """Overrides on top of the sources' baselines: ``common`` for both, then per side. Scaled values
    keep every difference a difference (e.g. 8 vs 16 LP tokens for 32 vs 256)."""

    name: str
    description: str
    common: dict = field(default_factory=dict)
    notebook: dict = field(default_factory=dict)
    original: dict = field(default_factory=dict)

    @property
    def short(self) -> str:
        """The description's first clause, for --help."""
        return self.description.split(";")[0].split(" (")[0].split(", ")[0]

    def baselines(self) -> tuple[ExperimentConfig, ExperimentConfig]:
        pair = []
        for side, extra in (("notebook", self.notebook), ("original", self.original)):
            cfg = baseline(side)
            for path, value in {**self.common, **extra}.items():
                set_field(cfg, path, value)
            pair.append(validate(cfg))
        return pair[0], pair[1]


PRESETS = {
    "smoke": Preset(
        "smoke", "scaled-down models on 16x16 procedural images, both learning rates x10 (ratio kept) so a few "
        "dozen steps move the weights, evaluated every 4 steps; checks the plumbing in minutes on 2 CPU cores, "
        "measures nothing",
        common={"data.dataset": "procedural", "data.image_size": 16, "data.train_subset": 256,
                "data.test_subset": 32, "model.dim": 48, "model.feature_dim": 16, "model.num_freqs_modulation": 16,
                "model.num_freqs_hyponet": 8, "train.num_samples": 64, "train.eval_every": 4,
                "eval.sr_sizes": [32, 64], "eval.sr_images": 8},
        notebook={"model.patch_size": 4, "model.depth": 1, "model.num_lp": 4, "model.decoder_width": 24,
                  "train.lr": 1e-3, "train.epochs": 2, "train.t_max": 5, "train.batch_size": 16, "eval.batch_size": 16},
        original={"model.patch_size": 2, "model.depth": 2, "model.num_lp": 16, "model.decoder_width": 48,
                  "model.dim_head": 16, "train.lr": 5e-3, "train.epochs": 4, "train.warmup_epochs": 1, "train.batch_size": 8,
                  "eval.batch_size": 8},
    ),
    "cpu-budget": Preset(
        "cpu-budget", "real CIFAR-10 (image folder, classes interleaved) on 128 training and 256 test images; "
        "width 64 and LP tokens 8 vs 64 (a quarter of the sources', ratios kept), batches 16 vs 8 (halved, ratio "
        "kept), every other size as in the sources; 4 vs 8 epochs of the subset (ratio kept) with warm-up 2 of 8 "
        "and T_max 10 of 4 (the sources' shapes); both learning rates x5 (ratio kept); a light final evaluation "
        "(SR at 64 only, jitter 0 and 0.01, no probe). How it was chosen: the three matrices are about 135 runs, "
        "which 2 one-thread workers on 2 cores must finish in about 2 hours, so a run of the original side gets "
        "about 2 minutes. In trial runs at width 64 with the sources' LP counts and batches, 16 and 64 steps left "
        "both baselines on the mean-colour plateau (12.4 dB) whatever the learning rate; fewer LP tokens (1.7x "
        "faster per image) and halved batches (twice the steps) let the original reach about 14.5 dB in 128 steps. "
        "The notebook side's 32 steps (its protocol has half the epochs and twice the batch) still end on the "
        "plateau, so the one-at-a-time matrix only shows what speeds up the very first steps; the leave-one-out "
        "matrix, from the original's 128 steps, is the informative one",
        common={"data.dataset": "imagefolder", "data.train_subset": 128, "data.test_subset": 256,
                "model.dim": 64, "train.eval_every": 64, "eval.sr_images": 8, "eval.sr_sizes": [64],
                "eval.jitter_stds": [0.0, 0.01], "eval.probe": False},
        notebook={"model.num_lp": 8, "model.decoder_width": 32, "train.batch_size": 16, "eval.batch_size": 16,
                  "train.epochs": 4, "train.t_max": 10, "train.lr": 5e-4},
        original={"model.num_lp": 64, "model.decoder_width": 64, "model.dim_head": 16, "train.batch_size": 8,
                  "eval.batch_size": 8, "train.epochs": 8, "train.warmup_epochs": 2, "train.lr": 2.5e-3},
    ),
    "cpu-study": Preset(
        "cpu-study", "real CIFAR-10 as a 16x16 proxy (area-downsampled), 4096 training images, every variant scored on "
        "the same 256 official test images; width 64, depth 2 vs 3, LP tokens 4 vs 32, decoder width 32 vs 64 (the "
        "sources' ratios), patch sizes and every other setting as in the sources; 2 vs 4 epochs at batch 16 vs 8 "
        "(the sources' ratios: 512 vs 2048 steps), warm-up 1 of 4 epochs, T_max 5 for 2 epochs (20 of 50); "
        "both learning rates x10 (ratio kept). Chosen by a pilot: at this size the original leaves the "
        "per-image-mean-colour level (15.4 dB) after about 150 steps and passes 18.3 dB by 450; 32x32 would cost "
        "about 4x per step, more than a 3-seed factorial fits in 100 minutes on 2 cores",
        common={"data.dataset": "imagefolder", "data.image_size": 16, "data.source_size": 32,
                "data.train_subset": 4096, "data.test_subset": 256, "data.eval_split": "official", "model.dim": 64,
                "train.num_samples": 128, "train.eval_every": 64, "eval.sr_images": 64, "eval.sr_sizes": [32],
                "eval.jitter_stds": [0.0, 0.01], "eval.probe": False},
        notebook={"model.num_lp": 4, "model.depth": 2, "model.decoder_width": 32, "train.batch_size": 16,
                  "eval.batch_size": 16, "train.epochs": 2, "train.t_max": 5, "train.lr": 1e-3},
        original={"model.num_lp": 32, "model.depth": 3, "model.decoder_width": 64, "model.dim_head": 16,
                  "train.batch_size": 8, "eval.batch_size": 8, "train.epochs": 4, "train.warmup_epochs": 1,
                  "train.lr": 5e-3},
    ),
    "paper": Preset("paper", "the sources' full protocols on CIFAR-10 (a GPU job)",
                    common={"data.dataset": "cifar10"}),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ParityError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


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


def cell_id(groups) -> str:
    """A factorial cell's variant id: 'with-none', 'with-decoder+encoder'."""
    return "with-" + ("+".join(groups) if groups else "none")


def factorial_cells(groups: tuple[str, ...]) -> list[tuple[str, ...]]:
    """Every subset of ``groups`` (in their order), the empty one first, by size."""
    from itertools import combinations

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
            out.append(Variant(cell_id(cell), " + ".join(cell) or "notebook", "notebook",
                               [d for g in cell for d in GROUPS[g]], cfg, role=role, groups=list(cell)))
    elif kind == "one-at-a-time":
        out.append(Variant("notebook", "notebook", "notebook", [], nb, role="baseline"))
        for d in DIFFERENCES:
            cfg = d.apply(nb, "original", pair)
            out.append(Variant(f"notebook+{d.id}", f"+ {d.id}", "notebook", [d.id], cfg, skipped=d.applicable(cfg)))
    elif kind == "leave-one-out":
        out.append(Variant("original", "original", "original", [], orig, role="baseline"))
        for d in DIFFERENCES:
            cfg = d.apply(orig, "notebook", pair)
            out.append(Variant(f"original-{d.id}", f"- {d.id}", "original", [d.id], cfg, skipped=d.applicable(cfg)))
    elif kind == "cumulative":
        cfg, toggles = nb, []
        out.append(Variant("step-00-notebook", "notebook", "notebook", [], nb, role="baseline"))
        for k, d in enumerate(by_severity(), start=1):
            cfg, toggles = d.apply(cfg, "original", pair), toggles + [d.id]
            why = d.applicable(cfg)
            out.append(Variant(f"step-{k:02d}-{d.id}", f"+ {d.id}", "notebook", list(toggles), cfg,
                               skipped=f"no effect here: {why}" if why else None))
    else:  # improvements
        out.append(Variant("original", "original", "original", [], orig, role="baseline"))
        for imp in IMPROVEMENTS:
            cfg = imp.apply(orig)
            out.append(Variant(f"original+{imp.id}", f"+ {imp.id}", "original", [imp.id], cfg,
                               skipped=imp.applicable(cfg)))
    for v in out:
        if v.config is not None:
            v.config = v.config.copy()
            if not faithful_defects:
                v.fixed = fix_defects_outside_protocol(v.config)
            v.config.name = v.id
            validate(v.config)
    return out


def run_matrix(kind: str, preset_name: str, seeds: int, out: Path, overrides: list[str] | None = None,
               console=None, only: list[str] | None = None, executor=None, groups: tuple[str, ...] | None = None,
               faithful_defects: bool = False) -> Path:
    """Run (or resume) a matrix; returns its folder. Finished runs are skipped; failed runs are
    recorded and the matrix goes on. ``executor``: where the pending runs train (parity.executors;
    default LocalExecutor, one after another in this process). ``groups``: the factorial's factors."""
    from .config import apply_overrides
    from .executors import Job, LocalExecutor

    started = time.time()
    p = preset(preset_name)
    nb, orig = p.baselines()
    if overrides:
        nb, orig = apply_overrides(nb, overrides), apply_overrides(orig, overrides)
    variants = matrix_variants(kind, (nb, orig), groups, faithful_defects)
    if only:
        # a typo would otherwise run the baseline alone; ids of the other kinds are fine (--matrix all)
        every = {v.id for k in KINDS for v in matrix_variants(k, (nb, orig), groups)}
        unknown = [o for o in only if o not in every]
        if unknown:
            raise ParityError(f"--only {unknown[0]!r} is not a variant of any matrix"
                              f"{did_you_mean(unknown[0], sorted(every), closest=True)}: variant ids are "
                              "notebook+ID (one-at-a-time), original-ID (leave-one-out), step-NN-ID (cumulative), "
                              "original+ID (improvements), with-GROUP+GROUP (factorial)")
        variants = [v for v in variants if v.id in only or v.role == "baseline"]
    folder = Path(out) / f"{preset_name}-{kind}"
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
    if "references" not in manifest:
        manifest["references"] = _references(nb)
    write_json(folder / "matrix.json", manifest)

    jobs = []
    for v in variants:
        if v.skipped:
            continue
        for s in seed_list:
            cfg = v.config.copy()
            cfg.train.seed = s
            jobs.append(Job(v.id, s, cfg, folder / v.id / f"seed-{s}"))
    (executor or LocalExecutor()).run(jobs, f"{preset_name} {kind}", started, console=console)
    return folder


def _references(cfg: ExperimentConfig) -> dict | None:
    """Trivial predictors on the matrix's evaluation images (every variant is scored on them when the
    preset sets data.eval_split); None when the data cannot be loaded (the runs will say why)."""
    from .data import make_datasets
    from .evaluate import reference_levels

    try:
        train, test = make_datasets(cfg.data)
    except ParityError:
        return None
    return reference_levels(train, test)
