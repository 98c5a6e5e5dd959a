"""Faithful port of the simplified notebook ``ASF/cifar10_experiments.ipynb``, on parity's
CUDA-free Mamba layer."""

from .model import (
    NOTEBOOK_CIFAR_KWARGS,
    Hyponet,
    ImplicitSequentialBias,
    MambaGINR_CIFAR,
    ModulationNetwork,
    create_coordinate_grid,
)
from .protocol import (
    decode_with_jitter,
    load_weights,
    lr_per_epoch,
    make_optimizer,
    make_scheduler,
    sample_pixel_indices,
    sampled_loss,
    super_resolve,
    train_step,
    validate,
    validation_batch,
)

__all__ = ["MambaGINR_CIFAR", "NOTEBOOK_CIFAR_KWARGS", "ModulationNetwork", "Hyponet", "ImplicitSequentialBias",
           "create_coordinate_grid", "make_optimizer", "make_scheduler",
           "lr_per_epoch", "sample_pixel_indices", "sampled_loss", "train_step", "validation_batch", "validate",
           "super_resolve", "decode_with_jitter", "load_weights"]
