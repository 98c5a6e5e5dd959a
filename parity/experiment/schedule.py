"""A configuration's step schedule: optimiser steps per epoch, how many in all, when to evaluate, and
the learning rate of each epoch (both sources set it once per epoch). The trainer follows it; reports
and the audit read it without importing the trainer."""

from __future__ import annotations

import math
from dataclasses import dataclass

from ..core.errors import ParityError
from .config import ExperimentConfig, TrainConfig


def batches_per_epoch(images: int, batch_size: int, drop_last: bool) -> int:
    """Optimiser steps in one epoch: full batches only with drop_last, else the last partial one too."""
    return images // batch_size if drop_last else math.ceil(images / batch_size)


def schedule_epochs(t: TrainConfig) -> int:
    """The schedule's length in its own epochs: the epochs, or their sub-epochs (train.lr_subepochs)."""
    return t.epochs * t.lr_subepochs


def lr_for_epoch(t: TrainConfig, epoch: int) -> float:
    """The learning rate of schedule epoch ``epoch`` (counted from 1; an epoch, or a sub-epoch with
    train.lr_subepochs > 1). 'end' is the original's schedule (warm-up,
    then cosine to min_lr at the last epoch); 'constant' is its ``imgrec_trainer_lainr_constant``
    variant (warm-up, lr held until 95% of the epochs, then cosine to min_lr at the last epoch);
    'tmax' is CosineAnnealingLR(T_max) stepped per epoch (the notebook), after the same warm-up when
    warmup_epochs > 0."""
    from original_port import lr_at_epoch
    from original_port.protocol import lr_at_epoch_constant

    if t.lr_horizon == "end":
        return lr_at_epoch(epoch, t.lr, schedule_epochs(t), t.warmup_epochs, min_lr=t.min_lr)
    if t.lr_horizon == "constant":
        return lr_at_epoch_constant(epoch, t.lr, schedule_epochs(t), t.warmup_epochs, min_lr=t.min_lr)
    if epoch < t.warmup_epochs:
        return t.lr * (epoch + 1) / t.warmup_epochs
    index = epoch - max(t.warmup_epochs, 1)
    return t.min_lr + (t.lr - t.min_lr) * (1 + math.cos(math.pi * index / t.t_max)) / 2


@dataclass(frozen=True)
class StepPlan:
    """How long a run trains on a training set of a given size."""

    steps_per_epoch: int
    total_steps: int  # epochs x steps per epoch, or train.max_steps when that is fewer
    eval_every: int  # steps between evaluations (and checkpoints)

    def epoch_of(self, step: int) -> int:
        """The epoch (from 1) that optimiser step ``step`` (from 0) belongs to."""
        return step // self.steps_per_epoch + 1

    def schedule_epoch_of(self, step: int, subepochs: int = 1) -> int:
        """The schedule epoch (from 1) of optimiser step ``step``: its epoch split into ``subepochs`` equal
        parts (the last ones a step longer where they do not divide the epoch)."""
        epoch, within = divmod(step, self.steps_per_epoch)
        return epoch * subepochs + within * subepochs // self.steps_per_epoch + 1


def step_plan(cfg: ExperimentConfig, train_images: int) -> StepPlan:
    """The plan for ``train_images`` training images; a one-line ParityError when they make no step."""
    t = cfg.train
    per_epoch = batches_per_epoch(train_images, t.batch_size, cfg.data.drop_last)
    if per_epoch == 0:
        raise ParityError(f"{train_images} training images make no full batch of {t.batch_size}: "
                          "lower train.batch_size or set data.drop_last=false")
    total = t.epochs * per_epoch if t.max_steps is None else min(t.max_steps, t.epochs * per_epoch)
    return StepPlan(per_epoch, total, t.eval_every or per_epoch)


def lr_at_step(t: TrainConfig, plan: StepPlan, step: int) -> float:
    """The learning rate optimiser step ``step`` (from 0) runs at."""
    return lr_for_epoch(t, plan.schedule_epoch_of(step, t.lr_subepochs))


def lr_table(cfg: ExperimentConfig, train_images: int) -> list[dict]:
    """One row per schedule epoch the run reaches: {'epoch', 'first_step', 'steps', 'lr'} (steps from 0),
    what `parity schedule` prints."""
    plan = step_plan(cfg, train_images)
    rows: list[dict] = []
    for step in range(plan.total_steps):
        epoch = plan.schedule_epoch_of(step, cfg.train.lr_subepochs)
        if rows and rows[-1]["epoch"] == epoch:
            rows[-1]["steps"] += 1
        else:
            rows.append({"epoch": epoch, "first_step": step, "steps": 1, "lr": lr_for_epoch(cfg.train, epoch)})
    return rows


# The sources' data sizes: torchvision's official CIFAR-10 split (notebook) and the original's
# numbered-JPEG index ranges (train 1-49999, test 55000-59999).
SOURCE_TRAIN_IMAGES = {"official": 50_000, "numbered": 49_999}
SOURCE_TEST_IMAGES = {"official": 10_000, "numbered": 5_000}


def run_steps(cfg: dict) -> int | None:
    """Optimiser steps of a run of configuration ``cfg`` (a config dict): epochs x batches per epoch of its
    training images (the subset, else the source's split), capped by max_steps."""
    data, train = cfg.get("data") or {}, cfg.get("train") or {}
    images = data.get("train_subset") or SOURCE_TRAIN_IMAGES.get(data.get("split"))
    if not images or not train.get("batch_size") or not train.get("epochs"):
        return None
    steps = batches_per_epoch(int(images), int(train["batch_size"]), bool(data.get("drop_last"))) * int(train["epochs"])
    return min(steps, int(train["max_steps"])) if train.get("max_steps") else steps


