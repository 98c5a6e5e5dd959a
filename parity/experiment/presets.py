"""Presets: budgets as configuration. Each is a set of overrides on top of the sources' two baselines
(``common`` for both, then per side) with a description of what it sets; scaled values keep every
registered difference a difference (e.g. 4 vs 32 LP tokens for 32 vs 256). How the CPU budgets were
chosen (the pilots behind them) is in docs/presets.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..core.errors import ParityError, did_you_mean
from .config import ExperimentConfig, baseline, set_field, validate


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
        "smoke", "16x16 procedural images (2048 for training, 32 to test); scaled-down models: width 96, depth 1 vs "
        "2, LP tokens 4 vs 16, decoder width 48 vs 96 (the original ties it to the width), LAINR's own feature "
        "sizes; 1280 vs 1024 steps: the notebook 10 epochs at batch 16, the original 4 at batch 8 (the sources' "
        "batch ratio; their epochs ratio, 20 vs 40, is given up because at a quarter of the original's steps the "
        "notebook stays on the mean-colour plateau); the paper's learning-rate schedules compressed to their "
        "20 and 40 schedule epochs (train.lr_subepochs 2 vs 10: the original's warm-up over its first 10% and "
        "1e-8 only in its last 40th, the notebook's T_max 50 over 20); learning rates 1e-3 vs 1.5e-3 (x10 and x3 "
        "the sources'), chosen by one rule on validation images (reports/smoke-lr-pilot.md); evaluated every 128 "
        "steps. A demo of the toolkit in about 17 minutes on 2 CPU cores, not a measurement of the sources. Why "
        "these values: docs/presets.md",
        common={"data.dataset": "procedural", "data.image_size": 16, "data.train_subset": 2048,
                "data.test_subset": 32, "model.dim": 96, "model.feature_dim": 64, "model.num_freqs_modulation": 128,
                "model.num_freqs_hyponet": 64, "train.num_samples": 64, "train.eval_every": 128,
                "eval.sr_sizes": [32, 64], "eval.sr_images": 8},
        notebook={"model.patch_size": 4, "model.depth": 1, "model.num_lp": 4, "model.decoder_width": 48,
                  "train.lr": 1e-3, "train.epochs": 10, "train.lr_subepochs": 2, "train.batch_size": 16,
                  "eval.batch_size": 16},
        original={"model.patch_size": 2, "model.depth": 2, "model.num_lp": 16, "model.decoder_width": 96,
                  "model.dim_head": 16, "train.lr": 1.5e-3, "train.epochs": 4, "train.lr_subepochs": 10,
                  "train.batch_size": 8, "eval.batch_size": 8},
    ),
    "cpu-budget": Preset(
        "cpu-budget", "real CIFAR-10 (image folder, classes interleaved) on 128 training and 256 test images; "
        "width 64 and LP tokens 8 vs 64 (a quarter of the sources', ratios kept), batches 16 vs 8 (halved, ratio "
        "kept), every other size as in the sources; 4 vs 8 epochs of the subset (ratio kept) with warm-up 2 of 8 "
        "and T_max 10 of 4 (the sources' shapes); both learning rates x5 (ratio kept); a light final evaluation "
        "(SR at 64 only, jitter 0 and 0.01, no probe). Why these values: docs/presets.md",
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
        "(the sources' ratios: 512 vs 2048 steps, about 1/60 and 1/61 of the paper's); the paper's learning-rate "
        "schedules compressed, set 10 times an epoch (train.lr_subepochs=10: the original's warm-up over its first "
        "10% and 1e-8 only in its last 40th, the notebook's T_max 50 over 20 schedule epochs); learning rates "
        "3e-3 vs 1.5e-3 (x30 and x3 the sources'), each chosen by one rule on validation images carved from the "
        "training images (reports/cpu-study-lr-pilot.md). Why these values: docs/presets.md",
        common={"data.dataset": "imagefolder", "data.image_size": 16, "data.source_size": 32,
                "data.train_subset": 4096, "data.test_subset": 256, "data.eval_split": "official", "model.dim": 64,
                "train.num_samples": 128, "train.eval_every": 64, "train.lr_subepochs": 10, "eval.sr_images": 64,
                "eval.sr_sizes": [32], "eval.jitter_stds": [0.0, 0.01], "eval.probe": False},
        notebook={"model.num_lp": 4, "model.depth": 2, "model.decoder_width": 32, "train.batch_size": 16,
                  "eval.batch_size": 16, "train.epochs": 2, "train.lr": 3e-3},
        original={"model.num_lp": 32, "model.depth": 3, "model.decoder_width": 64, "model.dim_head": 16,
                  "train.batch_size": 8, "eval.batch_size": 8, "train.epochs": 4, "train.lr": 1.5e-3},
    ),
    "paper": Preset("paper", "the sources' full protocols on CIFAR-10 (a GPU job)",
                    common={"data.dataset": "cifar10"}),
}


def preset(name: str) -> Preset:
    if name not in PRESETS:
        raise ParityError(f"unknown preset {name!r}{did_you_mean(name, PRESETS)}: choose one of {', '.join(PRESETS)}")
    return PRESETS[name]


__all__ = ["PRESETS", "Preset", "preset"]
