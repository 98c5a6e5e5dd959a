"""The original's CIFAR-10 experiment, as written in
``trans-inr-master/cfgs/imgrec_cifar10_mamba_lainr_fourier_bias.yaml`` (paths and loader workers
aside), and the trainer's defaults it relies on."""

from __future__ import annotations

import copy

CIFAR10_MODEL_SPEC = {
    "name": "mamba_lainr_inr",
    "args": {
        "tokenizer": {"name": "mamba_patch_tokenizer",
                      "args": {"input_size": 32, "patch_size": 2, "dim": 256, "pos_emb": "fourier"}},
        "hyponet": {"name": "lainr_mlp_bias",
                    "args": {"feature_dim": 64, "input_dim": 2, "output_dim": 3, "sigma_q": 16,
                             "sigma_ls": [128, 32], "n_patches": 256}},
        "mamba_encoder": {"name": "mamba_encoder", "args": {"dim": 256, "depth": 6, "ff_dim": 1024}},
        "type": "equidistant",
        "n_group": 1,
        "num_lp": 256,
    },
}

CIFAR10_CONFIG = {
    "trainer": "imgrec_trainer_lainr",
    "train_dataset": {"name": "imgrec_dataset",
                      "args": {"imageset": {"name": "cifar_10", "args": {"split": "train"}}, "resize": 32},
                      "loader": {"batch_size": 16}},
    "test_dataset": {"name": "imgrec_dataset",
                     "args": {"imageset": {"name": "cifar_10", "args": {"split": "test"}}, "resize": 32},
                     "loader": {"batch_size": 16}},
    "model": CIFAR10_MODEL_SPEC,
    "optimizer": {"name": "adamw", "args": {"lr": 5.0e-4}},
    "max_epoch": 40,
    "eval_epoch": 1,
    "vis_epoch": 5,
}

WARMUP_EPOCHS = 5  # the trainer's default when the config has no warmup_epochs
JITTER_STD = 0.01  # the trainer's jitter helper (its call is commented out)


def cifar10_model_spec() -> dict:
    return copy.deepcopy(CIFAR10_MODEL_SPEC)
