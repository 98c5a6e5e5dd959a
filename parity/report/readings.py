"""A factorial read several ways: with all runs, without the collapsed runs, by cell medians, and at budgets
matched in steps and in training FLOPs; each reading's Holm labels, the labels that change with how collapse is
counted, and the smallest effects the design detects (for the factorial and for single-toggle matrices).

Everything here is numbers; parity.report.markdown turns them into words and tables."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from . import stats
from .collapse import without_collapsed
from .compute import FLOPS, STEPS, matched_values, variant_gflop_per_step
from .effects import analyse_cells, factorial_cells

ALL_RUNS, WITHOUT_COLLAPSED, MEDIANS = "all runs", "without collapsed runs", "cell medians"
MORE_SEEDS = (5, 8)  # the seed counts the detectable effects are also given at
POWER = 0.8
MEASURED_UP, MEASURED_DOWN = "measured (positive)", "measured (negative)"


def label(interval: stats.Interval) -> str:
    """A Holm interval in words: measured with its sign, or not measured."""
    if not interval.excludes_zero:
        return stats.NOT_MEASURED
    return MEASURED_UP if interval.low > 0 else MEASURED_DOWN


def families(analysis: stats.FactorialAnalysis) -> dict[str, dict[str, stats.Interval]]:
    """The labelled families of one reading, each Holm-adjusted over its groups: {"share", "main effect",
    "leave-one-out"} -> {group: Holm interval}."""
    return {"share": stats.holm_by_name(analysis.shapley), "main effect": stats.holm_by_name(analysis.main_effects),
            "leave-one-out": stats.group_leave_one_out(analysis)}


def marginal(analysis: stats.FactorialAnalysis) -> dict[str, dict[str, stats.Interval]]:
    """The same quantities as families, with their unadjusted 95% intervals (what the tables print)."""
    full = frozenset(analysis.groups)
    return {"share": dict(analysis.shapley), "main effect": dict(analysis.main_effects),
            "leave-one-out": {g: analysis.contrast({full: 1.0, full - {g}: -1.0}) for g in analysis.groups}}


@dataclass
class Budget:
    """One matched-budget reading: the budget (steps or GFLOP), its analysis, or why there is none."""

    measure: str
    budget: float = math.nan
    analysis: stats.FactorialAnalysis | None = None
    why: str = ""


@dataclass
class FactorialReadings:
    groups: tuple[str, ...]
    cells: dict[frozenset, dict[int, float]]
    ids: dict[frozenset, str]
    readings: dict[str, stats.FactorialAnalysis | None]  # ALL_RUNS, WITHOUT_COLLAPSED
    why: dict[str, str]
    medians: dict[tuple, float]  # stats.factorial_contrasts on each cell's median
    every_seed_collapsed: list[frozenset]
    dropped: int  # collapsed runs left out of WITHOUT_COLLAPSED
    budgets: dict[str, Budget] = field(default_factory=dict)  # STEPS, FLOPS
    gflop_per_step: dict[str, float] = field(default_factory=dict)

    def labels(self, reading: str) -> dict[str, dict[str, stats.Interval]]:
        analysis = self.readings.get(reading)
        return families(analysis) if analysis is not None else {}

    def median(self, quantity: str, group: str) -> float:
        key = {"share": "shapley", "main effect": "main", "leave-one-out": "loo"}[quantity]
        return self.medians[(key, group)]

    def collapse_dependent(self) -> list[dict]:
        """Every labelled quantity whose label differs between all runs and without the collapsed runs."""
        before, after = self.labels(ALL_RUNS), self.labels(WITHOUT_COLLAPSED)
        out = []
        for quantity, members in before.items():
            for group, interval in members.items():
                other = (after.get(quantity) or {}).get(group)
                if other is not None and label(other) != label(interval):
                    out.append({"quantity": quantity, "group": group, "all_runs": interval, "without": other,
                                "all_runs_95": marginal(self.readings[ALL_RUNS])[quantity][group],
                                "without_95": marginal(self.readings[WITHOUT_COLLAPSED])[quantity][group],
                                "median": self.median(quantity, group)})
        return out

    def seed_offset_variance(self) -> float:
        """Variance of a seed offset shared by every cell, estimated as the mean within-cell variance minus
        the additive model's residual variance (both over the seeds every cell has): what pairing by seed
        would remove, and what Welch's unpaired intervals count as noise. nan without two common seeds."""
        analysis = self.readings.get(ALL_RUNS)
        if analysis is None or len(analysis.seeds) < 2:
            return math.nan
        within = [pd.Series([cell[s] for s in analysis.seeds]).var() for cell in analysis.cells.values()]
        return float(sum(within) / len(within) - analysis.residual_var)


def read_factorial(matrix, runs: pd.DataFrame, histories: pd.DataFrame, limit: float | None,
                   groups: tuple[str, ...] | None = None, budgets: bool = True) -> FactorialReadings | None:
    """Every reading of one factorial matrix; None when its cells are not all finished."""
    cells, ids, groups, why = factorial_cells(matrix, runs, groups)
    if why:
        return None
    kept, every = without_collapsed(cells, limit)
    dropped = sum(len(cells[c]) - len(kept[c]) for c in cells)
    readings, whys = {}, {}
    # a cell left with one trained run borrows the spread of cells that trained, not of cells that never did
    trained = [c for c in kept if c not in every]
    for name, design, donors in ((ALL_RUNS, cells, None), (WITHOUT_COLLAPSED, kept, trained)):
        readings[name], whys[name] = analyse_cells(design, groups, donors)
    medians = stats.factorial_contrasts({c: float(pd.Series(list(v.values())).median()) for c, v in cells.items()},
                                        groups)
    out = FactorialReadings(groups, cells, ids, readings, whys, medians, every, dropped)
    if budgets:
        out.gflop_per_step, flop_why = variant_gflop_per_step(runs, [v for v in matrix.variants
                                                                     if v["id"] in ids.values()])
        for measure in (STEPS, FLOPS):
            out.budgets[measure] = matched_budget(histories, ids, groups, measure, out.gflop_per_step,
                                                  flop_why if measure == FLOPS else "")
    return out


def matched_budget(histories: pd.DataFrame, ids: dict, groups: tuple[str, ...], measure: str,
                   gflop: dict[str, float], why: str = "") -> Budget:
    if why:
        return Budget(measure, why=why)
    mine = histories[histories["variant"].isin(list(ids.values()))]
    cells, budget, why = matched_values(mine, ids, measure, gflop)
    if why:
        return Budget(measure, budget, why=why)
    analysis, why = analyse_cells(cells, groups)
    return Budget(measure, budget, analysis, why)


# ------------------------------------------------------------------------------------------ power


def factorial_detectable(analysis: stats.FactorialAnalysis, at: tuple[int, ...] = MORE_SEEDS
                         ) -> dict[str, dict[str, dict[int, float]]]:
    """The smallest share, main effect and leave-one-out of each group (and the gap) detected with 80% power,
    at the design's seeds and at each count in ``at``, from this reading's own variances: noncentral t at
    Holm's first step over the groups (alpha/k; alpha for the gap, a family of one)."""
    k = len(analysis.groups)
    seeds = min((len(v) for v in analysis.cells.values()), default=0)
    out: dict[str, dict[str, dict[int, float]]] = {}
    for quantity, members in marginal(analysis).items():
        out[quantity] = {g: stats.detectable_by_seeds(iv.se, iv.df, seeds, at, stats.ALPHA / k, POWER)
                         for g, iv in members.items()}
    out["gap"] = {"gap": stats.detectable_by_seeds(analysis.gap.se, analysis.gap.df, seeds, at, stats.ALPHA, POWER)}
    return out


def matrix_detectable(effects: pd.DataFrame, seeds: int, at: tuple[int, ...] = MORE_SEEDS) -> dict | None:
    """A single-toggle matrix's smallest effect detected with 80% power (its pooled seed variance, Holm's first
    step alpha/m over its m judged effects on PSNR): {"family", "m", "detectable": {seeds: dB}}; None when no
    effect was judged."""
    judged = effects[effects["family"].notna() & effects["se"].notna()]
    if judged.empty:
        return None
    family = judged["family"].iloc[0]
    members = judged[judged["family"] == family]
    full = members[members["n"] == members["n"].max()].iloc[0]  # a fully seeded effect: se = sqrt(var / n)
    n = int(full["n"])
    se = float(full["se"]) * math.sqrt(n / seeds) if seeds else math.nan
    return {"family": family, "m": len(members), "seeds": seeds,
            "detectable": stats.detectable_by_seeds(se, float(full["df"]), seeds, at, stats.ALPHA / len(members),
                                                    POWER)}


__all__ = ["ALL_RUNS", "Budget", "FactorialReadings", "MEASURED_DOWN", "MEASURED_UP", "MEDIANS", "MORE_SEEDS",
           "WITHOUT_COLLAPSED", "factorial_detectable", "families", "label", "marginal", "matched_budget",
           "matrix_detectable",
           "read_factorial"]
