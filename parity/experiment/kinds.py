"""The matrix kinds, one table: what each compares, the sign that makes a positive effect mean "the
original's value (or the fix) helps", how its effects are read, and the order they run and are reported in."""

from __future__ import annotations

from dataclasses import dataclass


def factorial_cell_id(groups) -> str:
    """A factorial cell's variant id: 'with-none', 'with-decoder+encoder'."""
    return "with-" + ("+".join(groups) if groups else "none")


def cumulative_step_id(k: int, name: str) -> str:
    """The cumulative matrix's k-th variant id: 'step-00-notebook', 'step-03-lr'."""
    return f"step-{k:02d}-{name}"


@dataclass(frozen=True)
class MatrixKind:
    id: str
    sign: int  # effect = sign * (PSNR(variant) - PSNR(reference))
    meaning: str
    axis: str  # the effect chart's x label
    side: str  # the source its reference run is: notebook | original
    baseline: str  # the reference run's variant id


TABLE = (
    MatrixKind("factorial", 1, "every combination of the groups of differences at the original's values, the rest at "
               "the notebook's: main effects, interactions, and the Shapley attribution of the gap", "effect (dB)",
               "notebook", factorial_cell_id(())),
    MatrixKind("leave-one-out", -1, "PSNR(original) - PSNR(original with d reverted): positive when d contributes to "
               "the original's advantage", "effect (dB): + means the difference contributes to the original's "
               "advantage", "original", "original"),
    MatrixKind("cumulative", 1, "PSNR(step k) - PSNR(step k-1): the gain of adding d on top of every earlier step; it "
               "depends on the order of the steps (the factorial's attribution does not)",
               "step gain (dB) over the previous step", "notebook", cumulative_step_id(0, "notebook")),
    MatrixKind("one-at-a-time", 1, "PSNR(notebook + d) - PSNR(notebook): positive when adopting the original's value "
               "helps", "effect (dB): + means adopting the original's value helps", "notebook", "notebook"),
    MatrixKind("improvements", 1, "PSNR(original + fix) - PSNR(original): positive when the fix helps",
               "effect (dB): + means the fix helps", "original", "original"),
)
KINDS = {k.id: k for k in TABLE}
RUN_ORDER = ("factorial", "leave-one-out", "cumulative", "one-at-a-time", "improvements")  # --matrix all
REPORT_ORDER = ("leave-one-out", "factorial", "cumulative", "one-at-a-time", "improvements")  # after the answer

__all__ = ["KINDS", "REPORT_ORDER", "RUN_ORDER", "TABLE", "MatrixKind", "cumulative_step_id", "factorial_cell_id"]
