"""Faithful port of the original MAMBA-GINR + LAINR (``trans-inr-master``), state-dict compatible
with its checkpoints. Runs on parity's CUDA-free Mamba layer."""

from .checkpoint import Checkpoint, from_spec, load_checkpoint, save_checkpoint
from .decoder import LAINRDecoder, SharedTokenCrossAttention, spatial_bias
from .encoder import MambaEncoder
from .model import MambaLainrInr, interleave_permutation, lp_read_positions
from .protocol import (
    add_gaussian_noise_to_grid,
    evaluate_step,
    lr_at_epoch,
    make_optimizer,
    reconstruction_step,
    train_step,
)
from .registry import MODELS, make, register
from .tokenizer import MambaPatchTokenizer

__all__ = ["from_spec", "load_checkpoint", "save_checkpoint", "Checkpoint", "lr_at_epoch", "make_optimizer",
           "reconstruction_step", "train_step", "evaluate_step", "add_gaussian_noise_to_grid", "MambaLainrInr",
           "MambaPatchTokenizer", "MambaEncoder", "LAINRDecoder", "SharedTokenCrossAttention", "spatial_bias",
           "interleave_permutation", "lp_read_positions", "make", "register", "MODELS"]
