"""Distributed data parallel training of one run under ``torchrun``.

``torchrun --nproc_per_node N -m parity.cli train ...`` starts N processes with WORLD_SIZE and RANK in
their environment; ``context()`` then joins the process group (once) and the trainer:

- builds the same model on every rank (same seed; DDP also broadcasts rank 0's weights);
- draws the SAME global batch on every rank (loader order keyed by (seed, epoch)) and the same pixel
  indices and jitter for it (keyed by (seed, step)), then keeps its own contiguous slice of the batch;
- lets DDP average the gradients: every step equals the single-process step on the global batch up to
  float rounding, because the loss is a mean over images and every slice has the same size;
- averages the logged train loss over ranks (all_reduce); only rank 0 evaluates and writes files.

Known difference: the original decoder uses batch element 0's coordinates for the whole batch (a
reproduced defect). With sampled pixels every image has its own coordinates, so in DDP each rank's
slice uses ITS element 0 (global element rank * B / N) where one process uses global element 0 for
all: sampled-pixel runs with the LAINR decoder differ between one process and DDP. Full-grid runs, and
the notebook's decoder, are unaffected.

Without WORLD_SIZE > 1 nothing here is used and the trainer's single-process path is unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from ..core.errors import ParityError


def requested() -> bool:
    """True when launched by torchrun (or any launcher setting WORLD_SIZE) with more than one process."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise ParityError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number") from None


def backend_for(device: torch.device | str = "cpu") -> str:
    """nccl for CUDA tensors, gloo for CPU tensors."""
    return "nccl" if torch.device(device).type == "cuda" else "gloo"


DEVICE_CHOICES = ("auto", "cpu", "cuda")


def training_device() -> torch.device:
    """Where a run trains: ``PARITY_DEVICE`` = auto (default: CUDA when available), cpu or cuda. Under
    torchrun each process takes the GPU of its LOCAL_RANK."""
    choice = os.environ.get("PARITY_DEVICE", "auto")
    if choice not in DEVICE_CHOICES:
        raise ParityError(f"PARITY_DEVICE={choice!r} is not one of {', '.join(DEVICE_CHOICES)}")
    if choice == "cuda" and not torch.cuda.is_available():
        raise ParityError("PARITY_DEVICE=cuda but torch sees no CUDA device: unset it to train on the CPU")
    if choice == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    local = os.environ.get("LOCAL_RANK")
    return torch.device("cuda", int(local) if requested() and local is not None else torch.cuda.current_device())


@dataclass
class DDPContext:
    rank: int
    world_size: int
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise ParityError(f"train.batch_size={batch_size} does not divide by the {self.world_size} "
                              "processes: each rank takes an equal slice of the global batch")

    def shard(self, x: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (dimension 0)."""
        if x.shape[0] % self.world_size:  # a last partial batch (data.drop_last=false)
            raise ParityError(f"a batch of {x.shape[0]} images does not divide by the {self.world_size} processes: "
                              "set data.drop_last=true or a train subset that is a multiple of the batch size")
        per = x.shape[0] // self.world_size
        return x[self.rank * per:(self.rank + 1) * per]

    def mean(self, value: float) -> float:
        """The mean of a float over ranks (the train loss)."""
        import torch.distributed as dist

        t = torch.tensor([value], dtype=torch.float64, device=self.device)  # nccl reduces CUDA tensors only
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return float(t.item()) / self.world_size

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """DDP around a module whose forward is decode(encode(images), coords): the trainer calls the
        two methods, which DDP's forward hooks would not see. static_graph: the original keeps an unused
        tokenizer.postfc (and toggles switch parts off); the set of used parameters is the same every step,
        so DDP learns it on the first step instead of searching the graph every step."""
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(_Reconstruct(model), device_ids=ids, static_graph=True)


class _Reconstruct(torch.nn.Module):
    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, images, coords):
        return self.model.decode(self.model.encode(images), coords)


_CONTEXT: DDPContext | None = None


def context(device: torch.device | str = "cpu") -> DDPContext | None:
    """The process group of this torchrun process (joined on first use, nccl for a CUDA ``device``,
    gloo for the CPU), or None when not distributed."""
    global _CONTEXT
    if not requested():
        return None
    device = torch.device(device)
    if _CONTEXT is None:
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if not dist.is_initialized():
            dist.init_process_group(backend=backend_for(device))
        _CONTEXT = DDPContext(dist.get_rank(), dist.get_world_size(), device)
    return _CONTEXT


def shutdown() -> None:
    global _CONTEXT
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    _CONTEXT = None
