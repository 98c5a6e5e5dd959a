"""The registry: every difference between the notebook and the original, the single source of truth.

A difference names the configuration fields it sets; its notebook and original values are read from
the two baselines, never written twice. Improvements are separate: fixes for the original's defects
(and the seed audit's jitter recommendation), outside the parity set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ParityError, did_you_mean
from .config import ExperimentConfig, config_diff, get_field, notebook_baseline, original_baseline, set_field, validate

NOT_IN_SEED = "not in the seed audit"
# The seed audit's impact levels, most severe first (the cumulative matrix's order).
SEVERITY_ORDER = ("MASSIVE", "CRITICAL", "SEVERE", "MODERATE", "MINOR", NOT_IN_SEED)


def unmet_requirement(requires: dict[str, Any], cfg: ExperimentConfig) -> str | None:
    """Why a registry entry means nothing in ``cfg`` (the first field it requires that ``cfg`` sets otherwise), or
    None when every requirement holds."""
    for path, value in requires.items():
        if get_field(cfg, path) != value:
            return f"requires {path}={value} (is {get_field(cfg, path)})"
    return None


@dataclass(frozen=True)
class Difference:
    id: str
    title: str
    component: str  # data | encoder | decoder | training | evaluation
    fields: tuple[str, ...]
    claimed_severity: str = NOT_IN_SEED  # the seed audit's claimed impact
    requires: dict[str, Any] = field(default_factory=dict)  # field -> value it only means something with
    note: str = ""
    claim: str = ""  # the seed audit's stated impact, in its words
    # Budget fields equal in the sources that a preset may set per side and that go with this difference when
    # it is applied from a preset's pair: train.lr_subepochs with the epochs, so a schedule compressed
    # differently on each side keeps its length (epochs x subepochs) when the epochs are handed over.
    carried: tuple[str, ...] = ()

    @property
    def notebook(self) -> dict[str, Any]:
        cfg = notebook_baseline()
        return {f: get_field(cfg, f) for f in self.fields}

    @property
    def original(self) -> dict[str, Any]:
        cfg = original_baseline()
        return {f: get_field(cfg, f) for f in self.fields}

    def applicable(self, cfg: ExperimentConfig) -> str | None:
        """None when the difference means something in ``cfg``; else why not."""
        return unmet_requirement(self.requires, cfg)

    def apply(self, cfg: ExperimentConfig, side: str = "original",
              baselines: tuple[ExperimentConfig, ExperimentConfig] | None = None) -> ExperimentConfig:
        """Copy of ``cfg`` with this difference's fields set to the ``side`` baseline's values; a
        preset passes its own (scaled-down) pair of baselines as ``(notebook, original)``."""
        if baselines is None:
            values = self.original if side == "original" else self.notebook
        else:
            source = baselines[1] if side == "original" else baselines[0]
            values = {f: get_field(source, f) for f in self.fields + self.carried}
        out = cfg.copy()
        for path, value in values.items():
            set_field(out, path, value)
        return out


@dataclass(frozen=True)
class Improvement:
    id: str
    title: str
    component: str
    sets: dict[str, Any]
    fixes: str  # the defect or recommendation it addresses
    claimed_severity: str = NOT_IN_SEED
    requires: dict[str, Any] = field(default_factory=dict)
    claim: str = ""  # the seed audit's stated impact, in its words

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(self.sets)

    def applicable(self, cfg: ExperimentConfig) -> str | None:
        """None when the improvement means something in ``cfg``; else why not."""
        return unmet_requirement(self.requires, cfg)

    def apply(self, cfg: ExperimentConfig, side: str | None = None, baselines=None) -> ExperimentConfig:
        out = cfg.copy()
        for path, value in self.sets.items():
            set_field(out, path, value)
        return out


DIFFERENCES: tuple[Difference, ...] = (
    # -- in the seed audit
    Difference("decoder", "Decoder architecture: modulation net + MLP hyponet vs multi-level LAINR", "decoder",
               ("model.decoder",), claimed_severity="MASSIVE",
               claim="the hyponet is the decoder: a wrong architecture means fundamentally different model behaviour",
               note="Swaps the whole decoder; every other decoder setting carries over to the new one."),
    Difference("spatial-bias", "Spatial attention bias -10 (t - s_j)^2 between query and LP token", "decoder",
               ("model.spatial_bias",), claimed_severity="CRITICAL",
               claim="spatial bias is key to position-aware feature extraction",
               note="t is the raster-order index of the query's patch cell: a 1-D distance, not the 2-D one "
                    "the seed describes."),
    Difference("modulation-entry", "Modulation concatenated with the coordinate features vs added to the "
               "bandwidth features", "decoder", ("model.modulation",), claimed_severity="CRITICAL",
               claim="modulation used differently (concatenated, not added)",
               requires={"model.decoder": "notebook"},
               note="LAINR always adds; inside the notebook decoder 'add' uses ReLU(ReLU(W g) + W' m)."),
    Difference("pixel-sampling", "512 pixels per image sampled with replacement vs every pixel", "training",
               ("train.pixels",), claimed_severity="SEVERE",
               claim="only 50% of pixels means weaker gradients and slower convergence",
               note="With the LAINR decoder, sampled pixels meet the batch-0 coordinate defect: every image "
                    "is decoded at image 0's coordinates (see fix-batch0-coords)."),
    Difference("patch-size", "Patch size 4 (64 patches) vs 2 (256 patches)", "encoder", ("model.patch_size",),
               claimed_severity="MODERATE",
               claim="4x fewer patches means less spatial resolution in encoding"),
    Difference("num-lp", "LP tokens 32 vs 256", "encoder", ("model.num_lp",), claimed_severity="MODERATE",
               claim="8x fewer LP tokens means less representational capacity"),
    Difference("depth", "Encoder depth 4 vs 6 blocks", "encoder", ("model.depth",), claimed_severity="MINOR",
               claim="slightly shallower but reasonable"),
    Difference("lr", "Learning rate 1e-4 vs 5e-4", "training", ("train.lr",), claimed_severity="MODERATE",
               claim="lower LR and fewer epochs = undertrained"),
    Difference("warmup", "No warm-up vs linear warm-up over 5 epochs", "training", ("train.warmup_epochs",),
               claimed_severity="MODERATE",
               claim="lower LR and fewer epochs = undertrained (warm-up in the same section)",
               note="The original computes base*(epoch+1)/5 with epochs counted from 1: it starts at 0.4x and "
                    "reaches the full rate at epoch 4."),
    Difference("epochs", "20 vs 40 epochs", "training", ("train.epochs",), claimed_severity="MODERATE",
               claim="lower LR and fewer epochs = undertrained", carried=("train.lr_subepochs",)),
    # -- found by reading both sources
    Difference("lr-horizon", "Cosine with T_max=50 stepped for 20 epochs (ends at 68% of the base LR) vs "
               "cosine down to 1e-8 at the last epoch", "training", ("train.lr_horizon", "train.min_lr")),
    Difference("coords", "Coordinates linspace(0, 1) with both ends vs pixel centres (i + 0.5) / s", "training",
               ("train.coords",), note="Also used for every evaluation grid."),
    Difference("pos-code", "No position code vs a fixed 32-wide Fourier code in front of each patch", "encoder",
               ("model.pos_code",)),
    Difference("lp-init", "LP tokens initialised with std 0.02 vs 1", "encoder", ("model.lp_init_std",)),
    Difference("decoder-width", "Decoder hidden width 128 vs 256 (the original ties it to dim)", "decoder",
               ("model.decoder_width",)),
    Difference("fourier", "Random Gaussian Fourier features (scale 10) vs log-spaced bands (sigma 16, 128, 32)",
               "decoder", ("model.fourier",)),
    Difference("attention-heads", "One attention head of width 256 vs 2 heads of 64", "decoder",
               ("model.heads", "model.dim_head")),
    Difference("output-activation", "Sigmoid on the RGB output vs none", "decoder", ("model.output_activation",)),
    Difference("weight-decay", "AdamW weight decay 1e-5 vs torch's default 1e-2", "training",
               ("train.weight_decay",)),
    Difference("grad-clip", "Gradient norm clipped at 1.0 vs no clipping", "training", ("train.clip_norm",)),
    Difference("batch-size", "Batch 32 vs 16 (training and test loaders)", "training",
               ("train.batch_size", "eval.batch_size")),
    Difference("drop-last", "Last incomplete training batch kept vs dropped", "data", ("data.drop_last",)),
    Difference("data-split", "Official train/test split vs the numbered-JPEG index ranges (train 1-49999, "
               "test 55000-59999) with Resize + CenterCrop", "data", ("data.split", "data.resize_crop"),
               note="The original also reads JPEG copies, whose pixels differ slightly from the official set."),
    Difference("image-encoding", "Lossless images (torchvision's arrays) vs JPEG copies (quality 75, 4:2:0)", "data",
               ("data.jpeg_quality",),
               note="Emulated: the images are re-encoded as JPEG when loaded. Where only JPEG copies exist (this "
                    "project's CIFAR-10), they stand in for the lossless set and the original's side is a second "
                    "JPEG generation. Matrices score every variant on the same images as stored."),
    Difference("psnr-aggregation", "Reported PSNR: -10 log10 of the batch MSE averaged over batches vs the "
               "mean of per-image PSNR", "evaluation", ("eval.psnr",),
               note="Changes the number reported, not the model. Both forms are always measured."),
)

IMPROVEMENTS: tuple[Improvement, ...] = (
    Improvement("jitter-train", "Gaussian jitter (std 0.01) on the training coordinates", "training",
                {"train.jitter_std": 0.01}, claimed_severity="CRITICAL",
                claim="training without jitter means the model does not learn continuous field robustness",
                fixes="The seed audit lists jitter as a difference, but the original's call is commented out: "
                      "neither source jitters. This is the seed's recommendation, measured."),
    Improvement("fix-batch0-coords", "Decode every sample at its own coordinates", "decoder",
                {"model.per_sample_coords": True}, requires={"model.decoder": "lainr"},
                fixes="The LAINR decoder takes coordinates from batch element 0 for the whole batch."),
    Improvement("fix-lp-extraction", "Read the LP tokens back from where they were inserted", "encoder",
                {"model.fix_lp_extraction": True}, requires={"model.decoder": "lainr"},
                fixes="For lp_type 'middle' and 'n_group' the original reads other tokens than the LPs it "
                      "inserted; a no-op with 'equidistant' (both baselines)."),
    Improvement("final-residual", "Add the last residual back after the encoder", "encoder",
                {"model.final_residual": True},
                fixes="Both encoders return the last block's MLP output without its residual stream."),
)

# The factorial matrix's factors: each group of differences is toggled as one. Every difference is in
# exactly one group, or changes only what is scored (EVALUATION_SIDE): in a matrix every variant is
# scored on the same images, so those are computed from the stored per-image values, not trained.
GROUPS: dict[str, tuple[str, ...]] = {
    "decoder": ("decoder", "spatial-bias", "modulation-entry", "decoder-width", "fourier", "attention-heads",
                "output-activation"),
    "encoder": ("patch-size", "num-lp", "depth", "pos-code", "lp-init"),
    "optimisation": ("lr", "warmup", "epochs", "lr-horizon", "weight-decay", "grad-clip", "batch-size"),
    "sampling": ("pixel-sampling", "coords", "drop-last", "image-encoding"),
}
EVALUATION_SIDE = ("data-split", "psnr-aggregation")
GROUP_TITLES = {"decoder": "decoder architecture", "encoder": "encoder and tokens",
                "optimisation": "optimisation schedule", "sampling": "sampling protocol and data"}


def parse_groups(text: str | None) -> tuple[str, ...]:
    """'decoder,encoder' -> ('decoder', 'encoder'); None or '' -> every group."""
    if not text:
        return tuple(GROUPS)
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in GROUPS:
            raise ParityError(f"unknown group {name!r}{did_you_mean(name, GROUPS)}: --groups takes a comma list of "
                              f"{', '.join(GROUPS)}")
    if len(set(names)) != len(names) or len(names) < 2:
        raise ParityError(f"--groups {text!r} needs at least two different groups (of {', '.join(GROUPS)})")
    return names


REGISTRY: dict[str, Difference | Improvement] = {d.id: d for d in (*DIFFERENCES, *IMPROVEMENTS)}


def get(diff_id: str) -> Difference | Improvement:
    if diff_id not in REGISTRY:
        raise ParityError(f"unknown difference {diff_id!r}{did_you_mean(diff_id, REGISTRY, closest=True)}: "
                          "`parity differences` lists them")
    return REGISTRY[diff_id]


def apply_toggles(cfg: ExperimentConfig, ids: list[str], side: str = "original",
                  baselines: tuple[ExperimentConfig, ExperimentConfig] | None = None) -> ExperimentConfig:
    """Apply differences (towards ``side``; a preset's ``baselines`` give its scaled values) and improvements
    by id, in order."""
    for diff_id in ids:
        cfg = get(diff_id).apply(cfg, side, baselines)
    return validate(cfg)


def by_severity(diffs=DIFFERENCES) -> list[Difference]:
    """Most severe (per the seed audit) first; registry order within a level."""
    return sorted(diffs, key=lambda d: SEVERITY_ORDER.index(d.claimed_severity))


def unregistered_fields() -> dict[str, tuple[Any, Any]]:
    """Fields that differ between the baselines but no registry entry declares (should be empty)."""
    declared = {f for d in DIFFERENCES for f in d.fields}
    return {p: v for p, v in config_diff(notebook_baseline(), original_baseline()).items() if p not in declared}


# Defects of the original that the faithful port reproduces and the audit reports.
DEFECTS = (
    ("LP extraction", "For lp_type 'middle' and 'n_group' the tokens read back are not the LPs inserted "
     "(insertion is always equidistant).", "fix-lp-extraction"),
    ("Batch-0 coordinates", "The LAINR decoder builds its features and bias from batch element 0's "
     "coordinates: per-sample coordinates are silently ignored.", "fix-batch0-coords"),
    ("No final residual", "The encoder returns the last block's MLP output; the residual stream is dropped "
     "and there is no final norm (the notebook shares this).", "final-residual"),
    ("Unclamped patch index", "Coordinates outside [0, 1) give patch indices outside the grid in the "
     "spatial bias (jittered or endpoint coordinates).", None),
    ("Unused postfc", "tokenizer.postfc is in the state dict but never used: dead parameters that only "
     "AdamW's weight decay touches.", None),
    ("Warm-up offset", "lr = base*(epoch+1)/warmup with epochs counted from 1: warm-up starts at 0.4x "
     "and reaches the base rate one epoch early.", None),
    ("Jitter never applied", "add_gaussian_noise_to_grid exists but its call is commented out.", "jitter-train"),
)


# ---------------------------------------------------------------- variant names

BASE_NAMES = ("notebook", "original")


def config_name(base: str, *steps: tuple[str, str]) -> str:
    """The name ``named_config`` reads back: config_name('notebook', ('+', 'coords')) -> 'notebook+coords'."""
    if base not in BASE_NAMES:
        raise ValueError(f"base must be one of {', '.join(BASE_NAMES)}, got {base!r}")
    return base + "".join(sign + entry_id for sign, entry_id in steps)


def named_config(name: str, baselines: tuple[ExperimentConfig, ExperimentConfig] | None = None) -> ExperimentConfig:
    """The configuration a variant name describes, as the matrices name their variants: 'notebook',
    'original', then steps '+<id>' (a difference at the original's value, or an improvement) and
    '-<id>' (a difference at the notebook's value), chained: 'notebook+coords+lr', 'original-coords',
    'original+jitter-train'. ``baselines``: a preset's (notebook, original) pair; default the sources'."""
    pair = baselines or (notebook_baseline(), original_baseline())
    base, steps = _parse_name(name)
    cfg = pair[BASE_NAMES.index(base)].copy()
    for sign, entry_id in steps:
        entry = REGISTRY[entry_id]
        if isinstance(entry, Improvement) and sign == "-":
            raise ParityError(f"{entry_id!r} in {name!r} is an improvement: add it with '+{entry_id}'")
        cfg = entry.apply(cfg, "original" if sign == "+" else "notebook", pair)
    cfg.name = name
    return validate(cfg)


def _parse_name(name: str) -> tuple[str, list[tuple[str, str]]]:
    """'original-coords+jitter-train' -> ('original', [('-', 'coords'), ('+', 'jitter-train')]). Ids
    contain hyphens, so each step takes the longest registry id that ends at a '+', '-' or the end."""
    base = next((b for b in BASE_NAMES if name.startswith(b)), None)
    if base is None:
        raise ParityError(f"{name!r} is not a configuration name: start with 'notebook' or 'original', then "
                          "'+<id>' or '-<id>' steps (`parity differences` lists the ids)")
    rest, steps = name[len(base):], []
    while rest:
        sign, rest = rest[0], rest[1:]
        if sign not in "+-":
            raise ParityError(f"{name!r} is not a configuration name: after {base!r} come '+<id>' or '-<id>' "
                              "steps, e.g. 'notebook+coords' or 'original-coords'")
        ends = [i for i in REGISTRY if rest == i or (rest.startswith(i) and rest[len(i)] in "+-")]
        if not ends:
            word = rest.split("+")[0]
            raise ParityError(f"unknown difference {word!r} in configuration name {name!r}"
                              f"{did_you_mean(word, REGISTRY)}: `parity differences` lists them")
        step = max(ends, key=len)
        steps.append((sign, step))
        rest = rest[len(step):]
    return base, steps
