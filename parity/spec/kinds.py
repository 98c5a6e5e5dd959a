"""The matrix kinds, one table: what each compares, the sign that makes a positive effect mean "the
original's value (or the fix) helps", how its effects are read, and the order they run and are reported in."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MatrixKind:
    id: str
    sign: int  # effect = sign * (PSNR(variant) - PSNR(reference))
    meaning: str
    axis: str  # the effect chart's x label


TABLE = (
    MatrixKind("factorial", 1, "every combination of the groups of differences at the original's values, the rest at "
               "the notebook's: main effects, interactions, and the Shapley attribution of the gap", "effect (dB)"),
    MatrixKind("leave-one-out", -1, "PSNR(original) - PSNR(original with d reverted): positive when d contributes to "
               "the original's advantage", "effect (dB): + means the difference contributes to the original's "
               "advantage"),
    MatrixKind("cumulative", 1, "PSNR(step k) - PSNR(step k-1): the gain of adding d on top of every earlier step; it "
               "depends on the order of the steps (the factorial's attribution does not)",
               "step gain (dB) over the previous step"),
    MatrixKind("one-at-a-time", 1, "PSNR(notebook + d) - PSNR(notebook): positive when adopting the original's value "
               "helps", "effect (dB): + means adopting the original's value helps"),
    MatrixKind("improvements", 1, "PSNR(original + fix) - PSNR(original): positive when the fix helps",
               "effect (dB): + means the fix helps"),
)
KINDS = {k.id: k for k in TABLE}
RUN_ORDER = ("factorial", "leave-one-out", "cumulative", "one-at-a-time", "improvements")  # --matrix all
REPORT_ORDER = ("leave-one-out", "factorial", "cumulative", "one-at-a-time", "improvements")  # after the answer

__all__ = ["KINDS", "REPORT_ORDER", "RUN_ORDER", "TABLE", "MatrixKind"]
