"""The progress bar every training command shows: one set of columns and one callback that puts a run's loss and
test PSNR on its bar (``parity train``, both executors)."""

from __future__ import annotations

from collections.abc import Callable


def progress_columns(elapsed: bool = True) -> tuple:
    """Description, bar, steps done of total, loss/PSNR, (elapsed,) remaining."""
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
            *((TimeElapsedColumn(),) if elapsed else ()), TimeRemainingColumn())


def training_updates(bar, task) -> Callable[[dict], None]:
    """The ``progress`` callback of ``train_run`` for ``task`` on ``bar``: steps, loss, and PSNR when evaluated."""

    def show(update: dict) -> None:
        info = f"loss {update['loss']:.4f}" + (f"  PSNR {update['psnr']:.2f} dB" if "psnr" in update else "")
        bar.update(task, completed=update["step"], total=update["total"], info=info)

    return show


__all__ = ["progress_columns", "training_updates"]
