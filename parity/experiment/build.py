"""Configuration -> model, from the two ports' parts.

``decoder='lainr'`` builds the original's model (its state-dict keys), ``decoder='notebook'`` the
notebook's; every other setting is a constructor argument of either, so each difference can be
toggled on its own from either baseline.
"""

from __future__ import annotations

import os

import torch

from ..core.errors import ParityError
from .config import ExperimentConfig, ModelConfig, validate


def transinr_spec(m: ModelConfig, image_size: int) -> dict:
    """The trans-inr spec for an original-family model; harness toggles appear only when they differ
    from the source, so the original baseline gives exactly the source's CIFAR spec."""
    n_patches = (image_size // m.patch_size) ** 2
    hyponet = {"feature_dim": m.feature_dim, "input_dim": 2, "output_dim": 3, "sigma_q": m.sigma_q,
               "sigma_ls": list(m.sigma_ls), "n_patches": n_patches}
    extras = {"heads": (m.heads, 2), "dim_head": (m.dim_head or m.dim, 64), "use_spatial_bias": (m.spatial_bias, True),
              "alpha": (m.bias_alpha, 10.0), "per_sample_coords": (m.per_sample_coords, False),
              "fourier": (m.fourier, "logspace"), "output_activation": (m.output_activation, "none")}
    hyponet.update({k: v for k, (v, source) in extras.items() if v != source})
    if m.fourier == "gaussian":
        hyponet.update(num_freqs_q=m.num_freqs_modulation, num_freqs_l=m.num_freqs_hyponet,
                       fourier_scale=m.fourier_scale)
    encoder = {"dim": m.dim, "depth": m.depth, "ff_dim": m.ff_dim or 4 * m.dim}
    if m.final_residual:
        encoder["add_final_residual"] = True
    args = {
        "tokenizer": {"name": "mamba_patch_tokenizer",
                      "args": {"input_size": image_size, "patch_size": m.patch_size, "dim": m.dim,
                               "pos_emb": m.pos_code}},
        "hyponet": {"name": "lainr_mlp_bias", "args": hyponet},
        "mamba_encoder": {"name": "mamba_encoder", "args": encoder},
        "type": m.lp_type, "n_group": m.n_group, "num_lp": m.num_lp,
    }
    for key, value, source in (("lp_init_std", m.lp_init_std, 1.0), ("fix_lp_extraction", m.fix_lp_extraction, False),
                               ("decoder_width", m.decoder_width, m.dim)):
        if value != source:
            args[key] = value
    return {"name": "mamba_lainr_inr", "args": args}


def notebook_kwargs(m: ModelConfig, image_size: int) -> dict:
    """Arguments of ``notebook_port.MambaGINR_CIFAR`` for a notebook-family model."""
    return dict(img_size=image_size, patch_size=m.patch_size, dim=m.dim, num_lp=m.num_lp, mamba_depth=m.depth,
                hidden_dim=m.decoder_width, lp_type=m.lp_type, pos_code=m.pos_code, lp_init_std=m.lp_init_std,
                ff_dim=m.ff_dim, final_residual=m.final_residual, heads=m.heads, dim_head=m.dim_head,
                spatial_bias=m.spatial_bias, bias_alpha=m.bias_alpha, fourier=m.fourier, fourier_dim=m.feature_dim,
                sigma_q=m.sigma_q, sigma_hypo=m.sigma_ls[0], modulation=m.modulation,
                output_activation=m.output_activation)


def build_model(cfg: ExperimentConfig, seed: int | None = None) -> torch.nn.Module:
    """The model ``cfg`` describes, initialised under ``seed`` (default: cfg.train.seed), its Mamba mixers on
    ``cfg.model.scan``."""
    from ..core.ssm import set_scan

    validate(cfg)
    torch.manual_seed(cfg.train.seed if seed is None else seed)
    if cfg.model.decoder == "lainr":
        import original_port

        model = original_port.from_spec(transinr_spec(cfg.model, cfg.data.image_size))
    else:
        import notebook_port

        model = notebook_port.MambaGINR_CIFAR(**notebook_kwargs(cfg.model, cfg.data.image_size))
    return set_scan(model, cfg.model.scan)


def estimated_training_bytes(cfg: ExperimentConfig) -> float:
    """A rough estimate (within a few times) of one training step's memory (weights, gradients and AdamW's
    two moments, plus the activations kept for backward), from the configuration alone: checked before a
    model is built, so an impossible size is refused with a message instead of being killed by the kernel."""
    m, t = cfg.model, cfg.train
    dim, ff = m.dim, m.ff_dim or 4 * m.dim
    per_block = 2 * (6 * dim * dim + 40 * dim) + 2 * dim * ff  # two Mamba mixers (d_inner = 2 dim) and the MLP
    width = m.decoder_width
    params = m.depth * per_block + 8 * width * width + 4 * dim * width + m.num_lp * dim
    tokens = (cfg.data.image_size // m.patch_size) ** 2 + m.num_lp
    queries = cfg.data.image_size ** 2 if t.pixels == "all" else t.num_samples
    activations = t.batch_size * (m.depth * tokens * (20 * dim + 2 * ff) + queries * (16 * width + 2 * m.num_lp))
    return 4.0 * (4 * params + activations)


def check_fits_in_memory(cfg: ExperimentConfig) -> None:
    """ParityError when the estimate exceeds this machine's physical memory."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: nothing to compare with
        return
    need = estimated_training_bytes(cfg)
    if need > total:
        raise ParityError(f"this configuration needs an estimated {need / 2 ** 30:,.0f} GiB to train, more than this "
                          f"machine's {total / 2 ** 30:,.0f} GiB: lower model.dim, model.depth, model.num_lp or "
                          "train.batch_size")

