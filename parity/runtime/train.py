"""One trainer for both protocols: any configuration, with that configuration's protocol (full grid
or sampled pixels, jitter, optimiser, clipping, per-epoch schedule, batch size) and CPU budgets.

A run lives in one folder: config.yaml, history.jsonl (one line per evaluation), checkpoint.pt (the
latest, enough to resume exactly), metrics.json (final evaluation), status.json, samples.png.
Randomness is keyed by (seed, epoch) for data order and (seed, step) for pixel sampling and jitter,
so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import math
import os
import platform
import threading
import time

import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import DataLoader

from .. import __version__
from ..spec.build import build_model
from ..spec.config import ExperimentConfig, TrainConfig, validate
from ..core.coords import make_grid
from ..core.errors import ParityError
from .rundir import RunDir


class DivergedError(RuntimeError):
    def __init__(self, step: int, loss: float, recent: list[float]):
        super().__init__(f"loss became {loss} at step {step} (last losses: {', '.join(f'{x:.4g}' for x in recent)})")
        self.step, self.loss, self.recent = step, loss, recent


def batches_per_epoch(images: int, batch_size: int, drop_last: bool) -> int:
    """Optimiser steps in one epoch: full batches only with drop_last, else the last partial one too."""
    return images // batch_size if drop_last else math.ceil(images / batch_size)


def lr_for_epoch(t: TrainConfig, epoch: int) -> float:
    """The learning rate of ``epoch`` (counted from 1). 'end' is the original's schedule (warm-up,
    then cosine to min_lr at the last epoch); 'constant' is its ``imgrec_trainer_lainr_constant``
    variant (warm-up, lr held until 95% of the epochs, then cosine to min_lr at the last epoch);
    'tmax' is CosineAnnealingLR(T_max) stepped per epoch (the notebook), after the same warm-up when
    warmup_epochs > 0."""
    from original_port import lr_at_epoch
    from original_port.protocol import lr_at_epoch_constant

    if t.lr_horizon == "end":
        return lr_at_epoch(epoch, t.lr, t.epochs, t.warmup_epochs, min_lr=t.min_lr)
    if t.lr_horizon == "constant":
        return lr_at_epoch_constant(epoch, t.lr, t.epochs, t.warmup_epochs, min_lr=t.min_lr)
    if epoch < t.warmup_epochs:
        return t.lr * (epoch + 1) / t.warmup_epochs
    index = epoch - max(t.warmup_epochs, 1)
    return t.min_lr + (t.lr - t.min_lr) * (1 + math.cos(math.pi * index / t.t_max)) / 2


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + int(k)) % (2 ** 63)
    return torch.Generator().manual_seed(seed)


class PeakMemory:
    """Peak resident memory of this process during a block, sampled from /proc every 20 ms
    (ru_maxrss cannot be reset between runs of one matrix)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak_mb, self.start_mb = interval, 0.0, 0.0
        self._stop = threading.Event()

    @staticmethod
    def rss_mb() -> float:
        try:
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
        except OSError:  # not Linux: fall back to the lifetime peak
            import resource

            return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def _watch(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, self.rss_mb())

    def __enter__(self):
        self.start_mb = self.peak_mb = self.rss_mb()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self.rss_mb())


def training_batch(cfg: ExperimentConfig, images: torch.Tensor, grid: torch.Tensor, step: int):
    """Coordinates (B, N, 2) and targets (B, N, 3) for one step under the configuration's protocol."""
    t = cfg.train
    B = images.shape[0]
    gt = rearrange(images, "b c h w -> b (h w) c")
    if t.jitter_std > 0:  # one draw for the whole batch, as the original's helper adds it before repeating
        grid = grid + torch.randn(grid.shape, generator=_generator(t.seed, step, 1)) * t.jitter_std
    coords = grid.unsqueeze(0).expand(B, -1, -1)
    if t.pixels == "sampled":
        idx = torch.randint(0, grid.shape[0], (B, t.num_samples), generator=_generator(t.seed, step, 2))
        coords = torch.gather(coords, 1, idx.unsqueeze(-1).expand(-1, -1, 2))
        gt = torch.gather(gt, 1, idx.unsqueeze(-1).expand(-1, -1, 3))
    return coords, gt


def step_loss(cfg: ExperimentConfig, pred: torch.Tensor, gt: torch.Tensor) -> torch.Tensor:
    """The notebook's F.mse_loss on sampled pixels; the original's mean of per-image MSEs on the full
    grid (the same number up to float rounding)."""
    if cfg.train.pixels == "sampled":
        return F.mse_loss(pred, gt)
    return ((pred - gt) ** 2).reshape(pred.shape[0], -1).mean(dim=-1).mean()


@torch.no_grad()
def quick_test_psnr(model, loader, cfg: ExperimentConfig, max_images: int | None = None) -> dict:
    from ..evaluation.evaluate import evaluate_reconstruction

    return evaluate_reconstruction(model, loader, cfg.train.coords, max_images=max_images)


def environment() -> dict:
    """The software and machine a run trained on (recorded with its results)."""
    return {"parity": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count()}


def _loader(dataset, cfg: ExperimentConfig, epoch: int | None, batch_size: int | None = None) -> DataLoader:
    if epoch is None:  # evaluation order: fixed
        return DataLoader(dataset, batch_size=batch_size or cfg.eval.batch_size, shuffle=False)
    return DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, drop_last=cfg.data.drop_last,
                      generator=_generator(cfg.train.seed, epoch, 0))


def train_run(cfg: ExperimentConfig, run_dir, datasets=None, progress=None, final_eval: bool = True,
              eval_images: int | None = None) -> dict:
    """Train (or resume) one run in ``run_dir`` and return its metrics. ``progress``: an optional
    callable(dict) receiving step/loss/psnr updates. Raises DivergedError on a non-finite loss."""
    validate(cfg)
    run = RunDir(run_dir)
    run.check_config(cfg)  # else another configuration's results would be returned or resumed
    done = run.finished_metrics()
    if done is not None:
        return done
    t = cfg.train
    from .distributed import context as ddp_context
    from .distributed import training_device

    device = training_device()  # CUDA when there is one (this rank's GPU under torchrun), else the CPU
    ddp = ddp_context(device)  # None unless torchrun started several processes (parity.runtime.distributed)
    main = ddp is None or ddp.is_main  # only rank 0 writes files and evaluates
    if ddp is not None:
        ddp.check_batch(t.batch_size)
    from ..spec.build import check_fits_in_memory

    check_fits_in_memory(cfg)  # before anything is built or written
    if datasets is None:  # before any file is written: a data error leaves no half-made run folder
        from ..data import make_datasets

        datasets = make_datasets(cfg.data)
    train_set, test_set = datasets
    steps_per_epoch = batches_per_epoch(len(train_set), t.batch_size, cfg.data.drop_last)
    if steps_per_epoch == 0:  # before any file is written, so the fix it suggests is not blocked by a half-made run
        raise ParityError(f"{len(train_set)} training images make no full batch of {t.batch_size}: "
                          "lower train.batch_size or set data.drop_last=false")
    if main:
        run.start(cfg)
    total_steps = t.epochs * steps_per_epoch if t.max_steps is None else min(t.max_steps, t.epochs * steps_per_epoch)
    eval_every = t.eval_every or steps_per_epoch

    model = build_model(cfg).to(device)  # built on the CPU: the same initial weights on any device
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, weight_decay=t.weight_decay)
    state = run.load_state(model, optimizer)
    net = ddp.wrap(model) if ddp is not None else None  # after resuming: DDP broadcasts rank 0's weights
    grids: dict[tuple[int, int], torch.Tensor] = {}
    test_loader = _loader(test_set, cfg, None)
    if main:
        run.write_status("running", step=state.step, total_steps=total_steps)

    with PeakMemory() as memory:
        epoch = state.step // steps_per_epoch + 1
        while state.step < total_steps:
            lr = lr_for_epoch(t, epoch)
            for group in optimizer.param_groups:
                group["lr"] = lr
            model.train()
            skip = state.step - (epoch - 1) * steps_per_epoch  # batches of this epoch already done (resume)
            for i, (images, _) in enumerate(_loader(train_set, cfg, epoch)):
                if i < skip:
                    continue
                if state.step >= total_steps:
                    break
                t0 = time.perf_counter()
                size = tuple(images.shape[-2:])
                if size not in grids:
                    grids[size] = make_grid(*size, t.coords)
                coords, gt = training_batch(cfg, images, grids[size], state.step)  # CPU draws: same on any device
                images, coords, gt = images.to(device), coords.to(device), gt.to(device)
                if ddp is None:
                    loss = step_loss(cfg, model.decode(model.encode(images), coords), gt)
                else:  # the global batch's draws above, then this rank's slice; DDP averages gradients
                    loss = step_loss(cfg, net(ddp.shard(images), ddp.shard(coords)), ddp.shard(gt))
                optimizer.zero_grad()
                loss.backward()
                value = loss.item() if ddp is None else ddp.mean(loss.item())  # the global batch's loss
                if not math.isfinite(value):
                    raise DivergedError(state.step + 1, value, state.losses[-10:])
                if t.clip_norm is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), t.clip_norm)
                optimizer.step()
                state.train_time += time.perf_counter() - t0
                state.train_images += images.shape[0]
                state.step += 1
                state.losses.append(value)
                if progress:
                    progress({"step": state.step, "total": total_steps, "loss": value, "epoch": epoch, "lr": lr})
                if main and (state.step % eval_every == 0 or state.step == total_steps):
                    test = quick_test_psnr(model, test_loader, cfg, eval_images)
                    recent = state.losses[-eval_every:]
                    state.history.append({"step": state.step, "epoch": epoch, "lr": lr,
                                          "train_loss": sum(recent) / len(recent), "test_psnr": test["psnr"],
                                          "test_psnr_batch_mse": test["psnr_batch_mse"],
                                          "train_time_s": state.train_time})
                    if progress:
                        progress({"step": state.step, "total": total_steps, "loss": value, "psnr": test["psnr"]})
                    run.save(model, optimizer, state, max(eval_every, 10), total_steps)
            epoch += 1

    metrics = {"steps": state.step, "epochs": state.step / steps_per_epoch, "steps_per_epoch": steps_per_epoch,
               "train_images": state.train_images, "train_time_s": state.train_time,
               "train_images_per_s": state.train_images / state.train_time if state.train_time else None,
               "peak_rss_mb": memory.peak_mb, "device": str(device),
               "peak_gpu_mb": torch.cuda.max_memory_allocated(device) / 2 ** 20 if device.type == "cuda" else None,
               "final_lr": state.history[-1]["lr"] if state.history else None,
               "seed": t.seed, "environment": environment()}
    if not main:  # rank 0 evaluates and writes the run's files
        return metrics
    if final_eval:
        from ..evaluation.evaluate import evaluate_all

        train_eval = _loader(train_set, cfg, None)
        metrics.update(evaluate_all(model, train_eval, test_loader, cfg.eval, t.coords, cfg.data.image_size))
    else:
        metrics["test"] = quick_test_psnr(model, test_loader, cfg, eval_images)
    save_samples(model, test_set, cfg, run.samples)
    run.finish(metrics, state.history, total_steps)
    return metrics


@torch.no_grad()
def save_samples(model, dataset, cfg: ExperimentConfig, path, n: int = 8) -> None:
    """Ground truth over reconstruction for the first ``n`` test images (torchvision's grid)."""
    from torchvision.utils import make_grid as image_grid

    from ..evaluation.evaluate import reconstruct
    from ..core.store import atomic_write_bytes

    images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
    recon = reconstruct(model, images, cfg.train.coords).clamp(0, 1).cpu()
    grid = image_grid(torch.cat([images, recon]), nrow=len(images), padding=1)
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
