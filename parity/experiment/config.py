"""The typed experiment configuration: one dataclass tree describes a whole run (data, model,
training, evaluation, budget). YAML in and out, ``--set section.key=value`` overrides, and the two
baselines, ``notebook`` and ``original``, exactly as their sources were run.
"""

from __future__ import annotations

import copy
import dataclasses
import math
from dataclasses import dataclass, field, fields
from typing import Any, Literal, get_args, get_origin, get_type_hints

import yaml

from ..core.errors import ParityError, did_you_mean

# Each option field's choices live in its type (a Literal); validation, the CLI's choices and the docs read them
# with field_choices().
Dataset = Literal["cifar10", "imagefolder", "numbered-jpeg", "procedural"]
Split = Literal["official", "numbered"]  # official train/test | numbered: the original's index ranges
EvalSplit = Literal["official", "numbered", "validation"]
LpType = Literal["equidistant", "middle", "n_group"]
PosCode = Literal["none", "fourier"]  # fourier: a 32-wide code concatenated in front of each patch
Decoder = Literal["notebook", "lainr"]  # notebook: modulation net + MLP hyponet
Fourier = Literal["gaussian", "logspace"]  # random B ~ N(0, 10^2) | LAINR's log-spaced bands
Modulation = Literal["concat", "add"]
OutputActivation = Literal["sigmoid", "none"]
Coords = Literal["endpoints", "centres"]  # linspace with both ends | (i + 0.5) / s
Pixels = Literal["sampled", "all"]  # num_samples per image, with replacement | every pixel
LrHorizon = Literal["tmax", "end", "constant"]
PsnrForm = Literal["batch-mse", "per-image"]

# A field that changes how a run computes, never what it computes: config_diff(results_only=True) leaves it out,
# so a finished run is not refused or redone for it.
NO_RESULT = {"changes_no_result": True}


@dataclass
class DataConfig:
    dataset: Dataset = "cifar10"
    root: str | None = None  # dataset folder; None: ./data for cifar10
    split: Split = "official"
    image_size: int = 32
    resize_crop: bool = False  # Resize + CenterCrop before ToTensor (the original's loader)
    drop_last: bool = False  # drop the last incomplete training batch (the original's loader)
    train_subset: int | None = None  # first N training images (budget); None: all
    test_subset: int | None = None
    download: bool = field(default=False, metadata=NO_RESULT)  # let torchvision download CIFAR-10 when it is missing
    source_size: int | None = None  # images are this size on disk and area-downsampled to image_size (a proxy)
    jpeg_quality: int | None = None  # re-encode every image as JPEG at this quality when loading; None: as stored
    # common evaluation set: this split's test images as stored; validation: test_subset training images after the
    # first train_subset (a pilot's); None: the own split
    eval_split: EvalSplit | None = None


@dataclass
class ModelConfig:
    # Encoder side (both sources: patches + LP tokens -> BiMamba blocks).
    patch_size: int = 4
    dim: int = 256
    depth: int = 4
    ff_dim: int | None = None  # None: 4 * dim (equal in both sources)
    num_lp: int = 32
    lp_init_std: float = 0.02
    lp_type: LpType = "equidistant"
    n_group: int = 1
    pos_code: PosCode = "none"
    # Decoder side.
    decoder: Decoder = "notebook"
    decoder_width: int = 128  # hidden width; the original ties it to dim
    heads: int = 1
    dim_head: int | None = None  # None: dim (one head as wide as the tokens)
    spatial_bias: bool = False  # -alpha (t - s_j)^2 on the attention logits
    bias_alpha: float = 10.0
    fourier: Fourier = "gaussian"
    modulation: Modulation = "concat"  # only the notebook decoder reads it (LAINR always adds)
    output_activation: OutputActivation = "sigmoid"
    # LAINR's own sizes (used by decoder=lainr, and by fourier=logspace in the notebook decoder).
    feature_dim: int = 64
    sigma_q: float = 16.0
    sigma_ls: list[float] = field(default_factory=lambda: [128.0, 32.0])
    # Notebook's own sizes (used by fourier=gaussian).
    num_freqs_modulation: int = 128
    num_freqs_hyponet: int = 64
    fourier_scale: float = 10.0
    # Improvement toggles for the original's defects (off in both baselines).
    fix_lp_extraction: bool = False
    per_sample_coords: bool = False
    final_residual: bool = False
    # How, not what: the selective scan every Mamba mixer runs; the same numbers within float32 rounding, so never a
    # difference between the sources. Its choices are the scans' owner's (parity.core.ssm.scan.SCAN_IMPLS).
    scan: str = field(default="compiled", metadata=NO_RESULT)


@dataclass
class TrainConfig:
    coords: Coords = "endpoints"
    pixels: Pixels = "sampled"
    num_samples: int = 512
    jitter_std: float = 0.0  # Gaussian jitter added to the training grid
    batch_size: int = 32
    epochs: int = 20
    lr: float = 1e-4
    weight_decay: float = 1e-5
    clip_norm: float | None = 1.0
    warmup_epochs: int = 0  # the original's linear warm-up: lr * (epoch + 1) / warmup while epoch < warmup
    # tmax: cosine with period t_max (notebook) | end: cosine to min_lr at the last epoch (imgrec_trainer_lainr) |
    # constant: lr held from the warm-up until 95% of the epochs, then cosine to min_lr at the last epoch
    # (imgrec_trainer_lainr_constant)
    lr_horizon: LrHorizon = "tmax"
    t_max: int = 50
    min_lr: float = 0.0
    # Budget (both sides alike): the schedule counts sub-epochs of 1/k of an epoch and sets the learning rate once
    # per sub-epoch, as the sources do once per epoch; warmup_epochs, t_max and the cosine's end (epochs x k) are
    # counted in sub-epochs. A proxy with a tenth of the paper's epochs keeps the paper's schedule with k=10.
    lr_subepochs: int = 1
    # Budget (not part of either protocol): stop early, evaluate often.
    max_steps: int | None = None
    eval_every: int | None = None  # steps between evaluations; None: once per epoch
    seed: int = 0


@dataclass
class EvalConfig:
    psnr: PsnrForm = "batch-mse"  # batch-mse: -10 log10(batch MSE) averaged over batches | per-image
    batch_size: int = 32
    jitter_stds: list[float] = field(default_factory=lambda: [0.0, 0.005, 0.01, 0.02, 0.05])  # the notebook's levels
    sr_sizes: list[int] = field(default_factory=lambda: [64, 128, 256])
    # images scored in the jitter and super-resolution protocols: the notebook's num_samples=100 loop checks its
    # count before each batch of 32, so it scores 128
    sr_images: int = 128
    probe: bool = True  # linear probe of labels on pooled LP tokens, where labels exist


@dataclass
class ExperimentConfig:
    name: str = "notebook"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def copy(self) -> ExperimentConfig:
        return copy.deepcopy(self)


SECTIONS = ("data", "model", "train", "eval")


def notebook_baseline() -> ExperimentConfig:
    """``ASF/cifar10_experiments.ipynb`` as it was run: the class instantiated with dim 256, patch 4,
    32 LPs, depth 4, hidden 128; 512 sampled pixels, AdamW(1e-4, wd 1e-5), clip 1.0, batch 32,
    CosineAnnealingLR(T_max=50) for 20 epochs, torchvision CIFAR-10 with its official test split."""
    return ExperimentConfig(name="notebook")


def original_baseline() -> ExperimentConfig:
    """``trans-inr-master`` with ``cfgs/imgrec_cifar10_mamba_lainr_fourier_bias.yaml`` and
    ``trainers/imgrec_trainer_lainr.py`` as they were run, on its JPEG copies of CIFAR-10 (quality 75,
    PIL's default, 4:2:0: the quantisation tables of the copies), emulated by a JPEG round trip."""
    return ExperimentConfig(
        name="original",
        data=DataConfig(split="numbered", resize_crop=True, drop_last=True, jpeg_quality=75),
        model=ModelConfig(patch_size=2, depth=6, num_lp=256, lp_init_std=1.0, pos_code="fourier", decoder="lainr",
                          decoder_width=256, heads=2, dim_head=64, spatial_bias=True, fourier="logspace",
                          modulation="add", output_activation="none"),
        train=TrainConfig(coords="centres", pixels="all", batch_size=16, epochs=40, lr=5e-4, weight_decay=1e-2,
                          clip_norm=None, warmup_epochs=5, lr_horizon="end", min_lr=1e-8),
        eval=EvalConfig(psnr="per-image", batch_size=16),
    )


BASELINES = {"notebook": notebook_baseline, "original": original_baseline}


def baseline(name: str) -> ExperimentConfig:
    if name not in BASELINES:
        raise ParityError(f"unknown baseline {name!r}{did_you_mean(name, BASELINES)}: choose one of "
                          f"{', '.join(BASELINES)}")
    return BASELINES[name]()


# ---------------------------------------------------------------- field access and overrides

def field_paths(cfg: ExperimentConfig | None = None) -> list[str]:
    """Every leaf field as 'section.key' (name excluded)."""
    cfg = cfg or ExperimentConfig()
    return [f"{s}.{f.name}" for s in SECTIONS for f in fields(getattr(cfg, s))]


def get_field(cfg: ExperimentConfig, path: str) -> Any:
    section, key = _split(path)
    return getattr(getattr(cfg, section), key)


def set_field(cfg: ExperimentConfig, path: str, value: Any) -> None:
    """Set one field, coercing and checking the value against the field's declared type."""
    section, key = _split(path)
    obj = getattr(cfg, section)
    setattr(obj, key, _coerce(path, value, get_type_hints(type(obj))[key]))


def config_diff(a: ExperimentConfig, b: ExperimentConfig, results_only: bool = False) -> dict[str, tuple[Any, Any]]:
    """{'section.key': (a's value, b's value)} for every field that differs; ``results_only``: only the fields that
    change a run's results (not those marked NO_RESULT)."""
    return {p: (get_field(a, p), get_field(b, p)) for p in field_paths(a)
            if get_field(a, p) != get_field(b, p) and not (results_only and changes_no_result(p))}


def _split(path: str) -> tuple[str, str]:
    parts = path.split(".")
    valid = field_paths()
    if len(parts) != 2 or parts[0] not in SECTIONS or path not in valid:
        raise ParityError(f"unknown configuration key {path!r}{did_you_mean(path, valid)}: "
                          "`parity differences --fields` lists them")
    return parts[0], parts[1]


def _coerce(path: str, value: Any, hint) -> Any:
    """Turn YAML/CLI values into the field's type; one-line errors otherwise."""
    if isinstance(value, str) and hint is not str:
        try:
            parsed = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:  # not a YAML scalar: keep the raw string and let the type check speak
            parsed = value
        value = parsed if not isinstance(parsed, str) or hint is str else value
        if isinstance(value, str) and any(a in (int, float) for a in (hint, *get_args(hint))):
            try:  # YAML 1.1 reads '5e-4' as a string
                value = float(value)
            except ValueError:
                pass
    args = get_args(hint)
    optional = type(None) in args
    if value is None:
        if optional or hint is type(None):
            return None
        raise ParityError(f"{path} cannot be empty: give a value of type {_type_name(hint)}")
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if get_origin(base) is list:
        (item,) = get_args(base)
        if not isinstance(value, (list, tuple)):
            value = [value]
        return [_coerce(path, v, item) for v in value]
    if base is bool:
        if isinstance(value, bool):
            return value
        raise ParityError(f"{path} must be true or false, got {value!r}")
    if base is int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise ParityError(f"{path} must be an integer, got {value!r}")
        return int(value)
    if base is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParityError(f"{path} must be a number, got {value!r}")
        return float(value)
    if base is str:
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ParityError(f"{path} must be a string, got {value!r}")
        return str(value)
    return value


def _type_name(hint) -> str:
    return getattr(hint, "__name__", str(hint))


# ---------------------------------------------------------------- validation

def field_choices(path: str) -> tuple | None:
    """The choices of an option field, read from its Literal type (None first where the field may be null), or
    None for a field that is not an option."""
    section, key = _split(path)
    hint = get_type_hints(get_type_hints(ExperimentConfig)[section])[key]
    args = get_args(hint)
    optional = type(None) in args
    base = next((a for a in args if a is not type(None)), hint) if optional else hint
    if get_origin(base) is not Literal:
        return None
    return ((None,) if optional else ()) + get_args(base)


def changes_no_result(path: str) -> bool:
    """Whether a field changes how a run computes but not its results (marked NO_RESULT)."""
    section, key = _split(path)
    return bool(next(f for f in fields(get_type_hints(ExperimentConfig)[section]) if f.name == key)
                .metadata.get("changes_no_result"))


AT_LEAST_ONE = ("data.image_size", "model.patch_size", "model.dim", "model.depth", "model.num_lp", "model.n_group",
                "model.decoder_width", "model.heads", "model.feature_dim", "model.num_freqs_modulation",
                "model.num_freqs_hyponet", "train.num_samples", "train.batch_size", "train.epochs", "train.t_max",
                "train.lr_subepochs",
                "eval.batch_size", "eval.sr_images")
NON_NEGATIVE = ("model.lp_init_std", "train.jitter_std", "train.weight_decay", "train.warmup_epochs", "train.min_lr",
                "model.bias_alpha", "model.fourier_scale")


# Optional sizes: None means "derived" (ff_dim: 4 * dim; dim_head: dim), a number must be a real size.
OPTIONAL_AT_LEAST_ONE = ("model.ff_dim", "model.dim_head", "data.source_size", "train.max_steps", "train.eval_every",
                         "data.train_subset", "data.test_subset")
NON_EMPTY_LISTS = ("model.sigma_ls", "eval.sr_sizes")
POSITIVE = ("model.sigma_q", "model.sigma_ls", "eval.sr_sizes")  # log-spaced bands and output sizes
# Above this, one value alone would need more memory than any machine the toolkit runs on.
HUGE = 10 ** 7


def _check_every_field(cfg: ExperimentConfig) -> None:
    """One rule over the typed configuration, whatever the field: numbers are finite, sizes are at least 1 and
    not absurdly large, lists that something is read from are not empty and hold finite numbers."""
    for path in field_paths(cfg):
        value = get_field(cfg, path)
        values = value if isinstance(value, list) else [value]
        for item in values:
            if isinstance(item, float) and not math.isfinite(item):
                raise ParityError(f"{path}={item} is not a finite number: give a real value (--set {path}=X)")
            if isinstance(item, (int, float)) and not isinstance(item, bool) and abs(item) > HUGE and \
                    path not in ("train.seed",):
                raise ParityError(f"{path}={item} is implausibly large (over {HUGE:.0e}): give a realistic value")
        if path in NON_EMPTY_LISTS and not value:
            raise ParityError(f"{path} is empty: give at least one value, e.g. --set {path}=[...]")
        if path in OPTIONAL_AT_LEAST_ONE and value is not None and value < 1:
            meaning = "derived" if path.startswith("model.") else "no limit"
            raise ParityError(f"{path} must be at least 1 or null ({meaning}), got {value}: --set {path}=null or a "
                              "positive value")
        if path in POSITIVE and any(v <= 0 for v in values):
            raise ParityError(f"{path} must be positive, got {value}: --set {path}=X with X > 0")


CHOICES = {path: options for path in field_paths() if (options := field_choices(path)) is not None}


def validate(cfg: ExperimentConfig) -> ExperimentConfig:
    """Check values and combinations; raise a one-line ParityError naming the problem and the fix."""
    _check_every_field(cfg)
    for path, options in CHOICES.items():
        value = get_field(cfg, path)
        if value not in options:
            names = [str(o).lower() if o is None else str(o) for o in options]  # None reads as YAML's null
            raise ParityError(f"{path}={value!r} is not one of {', '.join(names)}{did_you_mean(value, names)}")
    for path in AT_LEAST_ONE:
        if get_field(cfg, path) < 1:
            raise ParityError(f"{path} must be at least 1, got {get_field(cfg, path)}: set it to 1 or more "
                              f"(--set {path}=N)")
    for path in NON_NEGATIVE:
        if get_field(cfg, path) < 0:
            raise ParityError(f"{path} must not be negative, got {get_field(cfg, path)}: set it to 0 or more "
                              f"(--set {path}=X)")
    m, t, d = cfg.model, cfg.train, cfg.data
    if not t.lr > 0:
        raise ParityError(f"train.lr must be positive, got {t.lr}: set a learning rate above 0, e.g. "
                          "--set train.lr=1e-4")
    if t.clip_norm is not None and not t.clip_norm > 0:
        raise ParityError(f"train.clip_norm must be positive or null (no clipping), got {t.clip_norm}")
    if d.jpeg_quality is not None and not 1 <= d.jpeg_quality <= 100:
        raise ParityError(f"data.jpeg_quality must be between 1 and 100 (or null: as stored), got {d.jpeg_quality}")
    if d.source_size is not None and d.source_size < d.image_size:
        raise ParityError(f"data.source_size={d.source_size} is below data.image_size={d.image_size}: the proxy only "
                          "downsamples; set data.source_size to the size of the stored images, or null")
    if d.image_size % m.patch_size:
        raise ParityError(f"model.patch_size={m.patch_size} does not divide data.image_size={d.image_size}: "
                          "choose a patch size that divides the image size")
    if m.pos_code == "fourier" and m.dim <= 32:
        raise ParityError(f"model.dim={m.dim} leaves no room for the 32-wide Fourier position code: use dim > 32")
    if m.lp_type == "n_group" and m.num_lp % m.n_group:
        raise ParityError(f"model.n_group={m.n_group} must divide model.num_lp={m.num_lp}: choose a divisor")
    if t.lr_horizon == "end" and t.warmup_epochs >= t.epochs * t.lr_subepochs:
        raise ParityError(f"train.warmup_epochs={t.warmup_epochs} must be below the schedule's "
                          f"{t.epochs * t.lr_subepochs} epochs (train.epochs x train.lr_subepochs): lower the warm-up "
                          "or raise the epochs")
    if any(s < 0 for s in cfg.eval.jitter_stds):
        raise ParityError("eval.jitter_stds must not contain negative values: e.g. --set eval.jitter_stds=[0,0.01]")
    from ..core.ssm.scan import SCAN_IMPLS  # the scans' owner (imports torch, so only once a config is checked)

    if m.scan not in SCAN_IMPLS:
        raise ParityError(f"model.scan={m.scan!r} is not one of {', '.join(SCAN_IMPLS)}"
                          f"{did_you_mean(m.scan, SCAN_IMPLS)}")
    return cfg


# ---------------------------------------------------------------- YAML

def to_yaml(cfg: ExperimentConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)


def from_dict(data: dict, base: ExperimentConfig | None = None, source: str = "configuration") -> ExperimentConfig:
    """Our YAML layout: optional ``base: notebook|original``, then sections of overrides."""
    if not isinstance(data, dict):
        raise ParityError(f"{source} must be a mapping of sections (data, model, train, eval)")
    data = dict(data)
    cfg = base.copy() if base is not None else baseline(str(data.pop("base", "notebook")))
    data.pop("base", None)
    if "name" in data:
        cfg.name = str(data.pop("name"))
    for section, values in data.items():
        if section not in SECTIONS:
            raise ParityError(f"unknown section {section!r} in {source}{did_you_mean(section, SECTIONS)}: "
                              f"sections are {', '.join(SECTIONS)}")
        if not isinstance(values, dict):
            raise ParityError(f"section {section!r} in {source} must be a mapping of key: value")
        for key, value in values.items():
            set_field(cfg, f"{section}.{key}", value)
    return validate(cfg)


def apply_overrides(cfg: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """``section.key=value`` strings (values parsed as YAML scalars or lists)."""
    for item in overrides:
        if "=" not in item:
            raise ParityError(f"--set {item!r} is not key=value: write for example --set train.lr=5e-4")
        key, value = item.split("=", 1)
        set_field(cfg, key.strip(), value.strip())
    return validate(cfg)
