"""Ablation matrices: which variants, under which preset, and the runner that persists results run by
run, skips finished runs and resumes interrupted ones.

Layout: RUNS_DIR/<preset>-<kind>/matrix.json and RUNS_DIR/<preset>-<kind>/<variant>/seed-<k>/.
"""

from __future__ import annotations

import datetime as _dt
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path

from .config import ExperimentConfig, baseline, set_field, validate
from .differences import DIFFERENCES, IMPROVEMENTS, by_severity
from .errors import ParityError
from .store import read_json, write_json

KINDS = ("one-at-a-time", "leave-one-out", "cumulative", "improvements")


@dataclass
class Preset:
    """Overrides on top of the sources' baselines: ``common`` for both, then per side. Scaled values
    keep every difference a difference (e.g. 8 vs 16 LP tokens for 32 vs 256)."""

    name: str
    description: str
    common: dict = field(default_factory=dict)
    notebook: dict = field(default_factory=dict)
    original: dict = field(default_factory=dict)

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
        "dozen steps move the weights; checks the plumbing in minutes on 2 CPU cores, measures nothing",
        common={"data.dataset": "procedural", "data.image_size": 16, "data.train_subset": 256,
                "data.test_subset": 32, "model.dim": 48, "model.feature_dim": 16, "model.num_freqs_modulation": 16,
                "model.num_freqs_hyponet": 8, "train.num_samples": 64, "eval.sr_sizes": [32, 64],
                "eval.sr_images": 8},
        notebook={"model.patch_size": 4, "model.depth": 1, "model.num_lp": 4, "model.decoder_width": 24,
                  "train.lr": 1e-3, "train.epochs": 2, "train.t_max": 5, "train.batch_size": 16, "eval.batch_size": 16},
        original={"model.patch_size": 2, "model.depth": 2, "model.num_lp": 16, "model.decoder_width": 48,
                  "model.dim_head": 16, "train.lr": 5e-3, "train.epochs": 4, "train.warmup_epochs": 1, "train.batch_size": 8,
                  "eval.batch_size": 8},
    ),
    "cpu-budget": Preset(
        "cpu-budget", "real CIFAR-10 (image folder) on a subset with a step budget and a narrower model",
        common={"data.dataset": "imagefolder", "data.train_subset": 4096, "data.test_subset": 512,
                "model.dim": 96, "eval.sr_images": 64},
        notebook={"model.decoder_width": 48, "train.epochs": 4, "train.t_max": 10},
        original={"model.decoder_width": 96, "model.dim_head": 32, "train.epochs": 8, "train.warmup_epochs": 1},
    ),
    "paper": Preset("paper", "the sources' full protocols on CIFAR-10 (a GPU job)",
                    common={"data.dataset": "cifar10"}),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        from .config import _did_you_mean

        raise ParityError(f"unknown preset {name!r}{_did_you_mean(name, PRESETS)}: choose one of {', '.join(PRESETS)}")
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

    def record(self) -> dict:
        return {"id": self.id, "label": self.label, "base": self.base, "toggles": self.toggles, "role": self.role,
                "skipped": self.skipped}


def matrix_variants(kind: str, pair: tuple[ExperimentConfig, ExperimentConfig]) -> list[Variant]:
    """The variants of a matrix kind, with configurations built through the registry."""
    if kind not in KINDS:
        from .config import _did_you_mean

        raise ParityError(f"unknown matrix {kind!r}{_did_you_mean(kind, KINDS)}: choose one of {', '.join(KINDS)}")
    nb, orig = pair
    out: list[Variant] = []
    if kind == "one-at-a-time":
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
            v.config.name = v.id
            validate(v.config)
    return out


def _claim(run_dir: Path) -> bool:
    """Claim a run for this process (a lock file created atomically); False if another live process
    holds it. Stale locks from dead processes are taken over."""
    lock = run_dir / ".lock"
    run_dir.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)
                return pid == os.getpid()
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
            except PermissionError:
                return False
    return False


def _release(run_dir: Path) -> None:
    (run_dir / ".lock").unlink(missing_ok=True)


def run_matrix(kind: str, preset_name: str, seeds: int, out: Path, overrides: list[str] | None = None,
               console=None, only: list[str] | None = None) -> Path:
    """Run (or resume) a matrix; returns its folder. Finished runs are skipped; failed runs are
    recorded and the matrix goes on."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from .config import apply_overrides
    from .train import DivergedError, train_run

    p = preset(preset_name)
    nb, orig = p.baselines()
    if overrides:
        nb, orig = apply_overrides(nb, overrides), apply_overrides(orig, overrides)
    variants = matrix_variants(kind, (nb, orig))
    if only:
        variants = [v for v in variants if v.id in only or v.role == "baseline"]
    folder = Path(out) / f"{preset_name}-{kind}"
    folder.mkdir(parents=True, exist_ok=True)
    seed_list = list(range(seeds))
    setting = {k: v for k, v in nb.to_dict()["data"].items()}
    setting.update({"max_steps": nb.train.max_steps, "epochs (notebook, original)": (nb.train.epochs, orig.train.epochs),
                    "dim": nb.model.dim, "preset": p.description, "overrides": overrides or []})
    manifest = read_json(folder / "matrix.json") or {}
    from .train import _environment

    manifest.update({"kind": kind, "preset": preset_name, "seeds": seed_list,
                     "command": "parity ablate " + shlex.join(sys.argv[2:]) if sys.argv[1:2] == ["ablate"]
                     else f"parity ablate --matrix {kind} --preset {preset_name} --seeds {seeds} --out {out}",
                     "created": manifest.get("created") or _dt.datetime.now().isoformat(timespec="seconds"),
                     "environment": _environment(), "setting": setting,
                     "variants": [v.record() for v in variants]})
    write_json(folder / "matrix.json", manifest)

    todo = [(v, s) for v in variants if not v.skipped for s in seed_list]
    datasets_cache: dict = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as bar:
        overall = bar.add_task(f"{preset_name} {kind}", total=len(todo), info="")
        current = bar.add_task("", total=1, info="", visible=False)
        for variant, seed in todo:
            run_dir = folder / variant.id / f"seed-{seed}"
            if (run_dir / "metrics.json").exists():
                bar.advance(overall)
                continue
            if not _claim(run_dir):
                bar.update(overall, info=f"{variant.id} seed {seed}: taken by another process")
                bar.advance(overall)
                continue
            cfg = variant.config.copy()
            cfg.train.seed = seed
            key = repr(cfg.data)
            if key not in datasets_cache:
                from .data import make_datasets

                datasets_cache.clear()  # keep one dataset pair in memory
                datasets_cache[key] = make_datasets(cfg.data)
            bar.update(current, description=f"  {variant.id} seed {seed}", completed=0, total=1, visible=True, info="")

            def show(u, _task=current):
                info = f"loss {u['loss']:.4f}" + (f"  PSNR {u['psnr']:.2f} dB" if "psnr" in u else "")
                bar.update(_task, completed=u["step"], total=u["total"], info=info)

            try:
                train_run(cfg, run_dir, datasets=datasets_cache[key], progress=show)
            except DivergedError as e:
                write_json(run_dir / "status.json", {"state": "failed", "error": str(e), "step": e.step,
                                                     "losses": e.recent})
            except ParityError:
                raise
            except Exception as e:  # record and go on: one broken variant must not sink the matrix
                write_json(run_dir / "status.json", {"state": "failed", "error": f"{type(e).__name__}: {e}"})
            finally:
                _release(run_dir)
            bar.advance(overall)
        bar.update(current, visible=False)
    return folder
