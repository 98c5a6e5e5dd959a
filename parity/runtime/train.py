"""One trainer for both protocols: any configuration, with that configuration's protocol (full grid
or sampled pixels, jitter, optimiser, clipping, per-epoch schedule, batch size) and CPU budgets.

A run lives in one folder: config.yaml, history.jsonl (one line per evaluation), checkpoint.pt (the
latest, enough to resume exactly), metrics.json (final evaluation), status.json, samples.png.
Randomness is keyed by (seed, epoch) for data order and (seed, step) for pixel sampling and jitter,
so a resumed run continues exactly as an uninterrupted one would.
"""

from __future__ import annotations

import io
import itertools
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from PIL import Image
from torch.utils.data import DataLoader

from .. import __version__
from ..core.coords import make_grid
from ..core.memory import PeakMemory, gpu_peak_mib
from ..core.store import atomic_write_bytes
from ..evaluation.evaluate import evaluate_all, evaluate_reconstruction, reconstruct
from ..experiment.build import build_model, check_fits_in_memory
from ..experiment.config import ExperimentConfig, validate
from ..experiment.schedule import StepPlan, lr_at_step, step_plan
from . import stopping
from .allocator import allocator_state
from .distributed import context as ddp_context
from .distributed import training_device
from .rundir import RunDir


class DivergedError(RuntimeError):
    def __init__(self, step: int, loss: float, recent: list[float]):
        super().__init__(f"loss became {loss} at step {step} (last losses: {', '.join(f'{x:.4g}' for x in recent)})")
        self.step, self.loss, self.recent = step, loss, recent


def _generator(*key: int) -> torch.Generator:
    seed = 0
    for k in key:
        seed = (seed * 1_000_003 + int(k)) % (2 ** 63)
    return torch.Generator().manual_seed(seed)


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
    return evaluate_reconstruction(model, loader, cfg.train.coords, max_images=max_images)


def environment() -> dict:
    """The software and machine a run trained on (recorded with its results); the allocator's settings change
    its speed and memory, never its numbers."""
    return {"parity": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "allocator": allocator_state()}


def _loader(dataset, cfg: ExperimentConfig, epoch: int | None, batch_size: int | None = None) -> DataLoader:
    if epoch is None:  # evaluation order: fixed
        return DataLoader(dataset, batch_size=batch_size or cfg.eval.batch_size, shuffle=False)
    return DataLoader(dataset, batch_size=cfg.train.batch_size, shuffle=True, drop_last=cfg.data.drop_last,
                      generator=_generator(cfg.train.seed, epoch, 0))


@dataclass
class Setup:
    """Everything a run trains with, settled (and checked) before any file of it is written: where it
    runs (the device; DDP under torchrun, where only rank 0 writes files and evaluates), the data and
    the step plan."""

    device: torch.device
    ddp: object | None  # a DDPContext under torchrun with several processes
    train_set: object
    test_set: object
    test_loader: DataLoader
    plan: StepPlan

    @property
    def main(self) -> bool:
        return self.ddp is None or self.ddp.is_main


def prepare(cfg: ExperimentConfig, datasets=None) -> Setup:
    """The run's Setup: device and DDP, the memory estimate, the datasets and the step plan; a data or
    size error raises here, before any file is written, so the fix it suggests is not blocked by a
    half-made run folder."""
    device = training_device()  # CUDA when there is one (this rank's GPU under torchrun), else the CPU
    ddp = ddp_context(device)  # None unless torchrun started several processes (parity.runtime.distributed)
    if ddp is not None:
        ddp.check_batch(cfg.train.batch_size)
    check_fits_in_memory(cfg)
    if datasets is None:
        from ..data import make_datasets

        datasets = make_datasets(cfg.data)
    train_set, test_set = datasets
    return Setup(device, ddp, train_set, test_set, _loader(test_set, cfg, None), step_plan(cfg, len(train_set)))


class Stepper:
    """One optimisation step of the configuration's protocol: the coordinates and targets drawn on the
    CPU from (seed, step) (the same draws on any device), the loss (on this rank's slice under DDP, which
    averages the gradients), the NaN check, clipping and the optimiser."""

    def __init__(self, cfg: ExperimentConfig, model, optimizer, setup: Setup):
        self.cfg, self.model, self.optimizer, self.setup = cfg, model, optimizer, setup
        self.net = setup.ddp.wrap(model) if setup.ddp is not None else None  # after resuming: rank 0's weights
        self.grids: dict[tuple[int, int], torch.Tensor] = {}

    def __call__(self, images: torch.Tensor, step: int, recent: list[float]) -> float:
        """The global batch's loss after optimiser step ``step`` (from 0); DivergedError on a NaN/inf."""
        cfg, ddp, device = self.cfg, self.setup.ddp, self.setup.device
        size = tuple(images.shape[-2:])
        if size not in self.grids:
            self.grids[size] = make_grid(*size, cfg.train.coords)
        coords, gt = training_batch(cfg, images, self.grids[size], step)
        images, coords, gt = images.to(device), coords.to(device), gt.to(device)
        if ddp is None:
            loss = step_loss(cfg, self.model.decode(self.model.encode(images), coords), gt)
        else:
            loss = step_loss(cfg, self.net(ddp.shard(images), ddp.shard(coords)), ddp.shard(gt))
        self.optimizer.zero_grad()
        loss.backward()
        value = loss.item() if ddp is None else ddp.mean(loss.item())
        if not math.isfinite(value):
            raise DivergedError(step + 1, value, recent[-10:])
        if cfg.train.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.train.clip_norm)
        self.optimizer.step()
        return value


def epochs_from(cfg: ExperimentConfig, setup: Setup, step: int):
    """(epoch, the batches left in it) from optimiser step ``step`` on: a resumed run skips the batches of
    its epoch that were done (the order is keyed by (seed, epoch), so it is the same)."""
    plan = setup.plan
    for epoch in itertools.count(plan.epoch_of(step)):
        done = max(0, step - (epoch - 1) * plan.steps_per_epoch)
        yield epoch, itertools.islice(_loader(setup.train_set, cfg, epoch), done, None)


def train_run(cfg: ExperimentConfig, run_dir, datasets=None, progress=None, final_eval: bool = True,
              eval_images: int | None = None) -> dict:
    """Train (or resume) one run in ``run_dir`` and return its metrics. ``progress``: an optional
    callable(dict) receiving step/loss/psnr updates. Raises DivergedError on a non-finite loss."""
    validate(cfg)
    folder = RunDir(run_dir)
    folder.check_config(cfg)  # else another configuration's results would be returned or resumed
    if (done := folder.finished_metrics()) is not None:
        return done
    setup = prepare(cfg, datasets)
    if setup.main:
        folder.start(cfg)
    run = Run(cfg, folder, setup)
    try:
        return run.train(progress, final_eval, eval_images)
    except stopping.Interrupted:
        raise  # the loop saved the run and marked it
    except KeyboardInterrupt:
        if setup.main:  # a second signal, or one in the final evaluation: the last checkpoint stands
            folder.write_status("interrupted", step=run.state.step, total_steps=setup.plan.total_steps)
        raise
    except Exception as e:
        if setup.main:
            folder.fail(f"{type(e).__name__}: {e}" if not isinstance(e, DivergedError) else str(e),
                        step=run.state.step)
        raise


class Run:
    """One training run: its configuration, setup, model, optimiser, state and folder. ``train`` is the loop; the
    other methods are what it does at an evaluation and at the end. The folder (RunDir) owns the files."""

    def __init__(self, cfg: ExperimentConfig, folder: RunDir, setup: Setup):
        self.cfg, self.folder, self.setup = cfg, folder, setup
        self.model = build_model(cfg).to(setup.device)  # built on the CPU: the same initial weights on any device
        self.optimizer = torch.optim.AdamW(self.model.parameters(), lr=cfg.train.lr,
                                           weight_decay=cfg.train.weight_decay)
        self.state = folder.load_state(self.model, self.optimizer)
        self.step = Stepper(cfg, self.model, self.optimizer, setup)
        if setup.main:
            folder.write_status("running", step=self.state.step, total_steps=setup.plan.total_steps,
                                **({"restarted": folder.restarted} if folder.restarted else {}))
            if folder.restarted:
                print(f"parity: {folder.path}: {folder.restarted}", file=sys.stderr)

    def train(self, progress, final_eval: bool, eval_images: int | None) -> dict:
        """The training loop from ``state.step``, the final evaluation and the run's last writes. A stop asked by
        SIGTERM or SIGINT (``stopping``) ends the step in progress, saves the run at that step and raises."""
        cfg, setup, state, plan = self.cfg, self.setup, self.state, self.setup.plan
        with PeakMemory() as memory, stopping.deferred():
            for epoch, batches in epochs_from(cfg, setup, state.step):
                if state.step >= plan.total_steps:
                    break
                self.model.train()
                for images, _ in batches:
                    if state.step >= plan.total_steps:
                        break
                    lr = lr_at_step(cfg.train, plan, state.step)  # once an epoch in the sources; per sub-epoch here
                    for group in self.optimizer.param_groups:
                        group["lr"] = lr
                    t0 = time.perf_counter()
                    loss = self.step(images, state.step, state.losses)
                    state.advance(loss, images.shape[0], time.perf_counter() - t0)
                    update = {"step": state.step, "total": plan.total_steps, "loss": loss, "epoch": epoch, "lr": lr}
                    if progress:
                        progress(update)
                    if setup.main and (state.step % plan.eval_every == 0 or state.step == plan.total_steps):
                        psnr = self.record_evaluation(epoch, lr, eval_images)
                        if progress:
                            progress({"step": state.step, "total": plan.total_steps, "loss": loss, "psnr": psnr})
                        self.save_checkpoint()
                    if (name := stopping.requested()) is not None:
                        self.stop(name)
        metrics = self.metrics(memory.peak_mb)
        if not setup.main:  # rank 0 evaluates and writes the run's files
            return metrics
        metrics.update(self.final_evaluation(final_eval, eval_images))
        save_samples(self.model, setup.test_set, cfg, self.folder.samples)
        self.folder.finish(metrics, state.history, plan.total_steps)
        return metrics

    def save_checkpoint(self) -> None:
        """checkpoint.pt, history and status at this step (with the loss tail a resumed run needs)."""
        plan = self.setup.plan
        self.folder.save(self.model, self.optimizer, self.state, max(plan.eval_every, 10), plan.total_steps)

    def stop(self, signal_name: str) -> None:
        """Save the run at this step, mark it interrupted and raise stopping.Interrupted."""
        plan = self.setup.plan
        if self.setup.main:
            self.save_checkpoint()
            self.folder.write_status("interrupted", step=self.state.step, total_steps=plan.total_steps,
                                     signal=signal_name)
        raise stopping.Interrupted(signal_name, f"{self.folder.path} saved at step {self.state.step} of "
                                                f"{plan.total_steps}")

    def record_evaluation(self, epoch: int, lr: float, eval_images: int | None) -> float:
        """Evaluate on the test images and append the history line; returns the test PSNR."""
        state = self.state
        test = quick_test_psnr(self.model, self.setup.test_loader, self.cfg, eval_images)
        recent = state.losses[-self.setup.plan.eval_every:]
        state.history.append({"step": state.step, "epoch": epoch, "lr": lr, "train_loss": sum(recent) / len(recent),
                              "test_psnr": test["psnr"], "test_psnr_batch_mse": test["psnr_batch_mse"],
                              "train_time_s": state.train_time})
        return test["psnr"]

    def metrics(self, peak_rss_mb: float) -> dict:
        """What the training itself measured: steps, time, throughput, memory, the environment."""
        setup, state = self.setup, self.state
        return {"steps": state.step, "epochs": state.step / setup.plan.steps_per_epoch,
                "steps_per_epoch": setup.plan.steps_per_epoch, "train_images": state.train_images,
                "train_time_s": state.train_time,
                "train_images_per_s": state.train_images / state.train_time if state.train_time else None,
                "peak_rss_mb": peak_rss_mb, "device": str(setup.device), "peak_gpu_mb": gpu_peak_mib(setup.device),
                "final_lr": state.history[-1]["lr"] if state.history else None,
                "seed": self.cfg.train.seed, "environment": environment()}

    def final_evaluation(self, full: bool, eval_images: int | None) -> dict:
        """Every evaluation of the configuration (``full``), or the quick test PSNR only."""
        cfg, setup = self.cfg, self.setup
        if not full:
            return {"test": quick_test_psnr(self.model, setup.test_loader, cfg, eval_images)}

        train_eval = _loader(setup.train_set, cfg, None)
        return evaluate_all(self.model, train_eval, setup.test_loader, cfg.eval, cfg.train.coords,
                            cfg.data.image_size)


@torch.no_grad()
def save_samples(model, dataset, cfg: ExperimentConfig, path, n: int = 8) -> None:
    """Ground truth over reconstruction for the first ``n`` test images (torchvision's grid)."""
    from torchvision.utils import make_grid as image_grid

    images = torch.stack([dataset[i][0] for i in range(min(n, len(dataset)))])
    recon = reconstruct(model, images, cfg.train.coords).clamp(0, 1).cpu()
    grid = image_grid(torch.cat([images, recon]), nrow=len(images), padding=1)

    buf = io.BytesIO()
    Image.fromarray((grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")).save(buf, format="PNG")
    atomic_write_bytes(path, buf.getvalue())
