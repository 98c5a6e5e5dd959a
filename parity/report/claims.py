"""The seed audit, claim by claim: each claim against the effect measured in each direction (the difference
removed from the original, added to the notebook; jitter in training added to either), with its simultaneous
interval, its verdict, and the collapsed runs that decide it.

Why two directions: a difference can matter only next to others (an interaction), so one direction alone can
call a claim false that holds in the other. Why simultaneous intervals: a verdict reads an interval's ends,
and the claims are read together (``stats.simultaneous_intervals``, per matrix). A claim whose interval
includes 0 but lies wholly below its claimed band is overstated whatever the truth inside it
(``stats.bounded_below``). The "faster convergence" of all pixels is read per step and per training FLOP.
"""

from __future__ import annotations

import math

import pandas as pd

from ..core.errors import ParityError
from ..experiment.differences import DIFFERENCES, IMPROVEMENTS, NOT_IN_SEED
from . import stats
from .compute import curves, gflop_per_step, value_at
from .effects import claimed_level
from .tables import as_float, missing

# (matrix kind, how the reading is named): the directions a claim is read in, in the order shown
DIRECTIONS = (("leave-one-out", "removed from the original"), ("improvements", "added to the original"),
              ("one-at-a-time", "added to the notebook"))
CONVERGENCE = "pixel-sampling"  # the claim of "slower convergence", read at matched budgets too


def seed_rated() -> list:
    """The registry's entries the seed audit rates (differences, then jitter in training)."""
    return [d for d in (*DIFFERENCES, *IMPROVEMENTS) if d.claimed_severity != NOT_IN_SEED]


def claim_readings(effects: pd.DataFrame, histories: pd.DataFrame | None = None,
                   runs: pd.DataFrame | None = None) -> list[dict]:
    """One row per seed-rated claim: {difference, seed_audit, claim, claimed_level, readings: [...], summary}.
    Each reading comes from a single-toggle effect row (``effects``: compute_effects); ``histories`` and
    ``runs`` add the convergence readings of pixel-sampling."""
    out = []
    for entry in seed_rated():
        level = claimed_level(entry.claimed_severity)
        readings = []
        for kind, direction in DIRECTIONS:
            rows = effects[(effects["kind"] == kind) & (effects["difference"] == entry.id)] \
                if not effects.empty else effects
            for row in rows.itertuples():
                reading = effect_reading(row, level, direction)
                if entry.id == CONVERGENCE and histories is not None and runs is not None:
                    reading["convergence"] = convergence(histories, runs, row)
                readings.append(reading)
        out.append({"difference": entry.id, "seed_audit": entry.claimed_severity, "claim": entry.claim,
                    "claimed_level": level, "readings": readings, "summary": summary(readings)})
    return out


def effect_reading(row, level: str | None, direction: str) -> dict:
    """One direction of a claim: the effect, its simultaneous interval, the verdict and what collapse did."""
    values = row.values if isinstance(row.values, dict) else {}
    collapsed = list(row.collapsed_seeds) if isinstance(row.collapsed_seeds, list) else []
    reading = {"direction": direction, "matrix": row.matrix, "variant": row.variant, "reference": row.reference,
               "metric": row.metric, "seeds": int(row.n) if not missing(row.n) else 0,
               "effect_db": as_float(row.mean), "ci_low_db": as_float(row.sim_low),
               "ci_high_db": as_float(row.sim_high),
               "confidence": as_float(row.sim_confidence), "verdict": row.verdict, "collapsed_seeds": collapsed,
               "own_variance": bool(row.own_variance) if not missing(row.own_variance) else False}
    ends = stats.Interval(reading["effect_db"], reading["ci_low_db"], reading["ci_high_db"], reading["seeds"],
                          math.nan, math.nan, math.nan, reading["confidence"])
    reading["claim_verdict"] = stats.bounded_below(ends, level) if row.verdict == stats.NOT_MEASURED \
        else row.verdict
    alive = {s: v for s, v in values.items() if s not in collapsed}
    if collapsed:
        reading["without_collapsed_db"] = as_float(sum(alive.values()) / len(alive)) if alive else None
        reading["without_collapsed_seeds"] = len(alive)
    return reading


def summary(readings: list[dict]) -> str:
    """What the directions say together: 'holds' (confirmed where measured, not refuted elsewhere), 'refuted'
    (overstated or contradicted in every direction that was judged), 'mixed', 'not measured' or 'not run'."""
    words = [r["claim_verdict"] for r in readings if r["seeds"]]
    if not words:
        return "not run"
    good = {stats.CONFIRMED, stats.UNDERSTATED}
    bad = {stats.OVERSTATED, stats.CONTRADICTED}
    if all(w in bad for w in words):
        return "refuted in every direction"
    if any(w in good for w in words) and not any(w in bad for w in words):
        return "holds" if all(w in good for w in words) else "holds in one direction"
    if any(w in bad for w in words) and any(w in good | {stats.DIRECTION_ONLY} for w in words):
        return "mixed: the directions disagree"
    if any(w in bad for w in words):
        return "refuted where judged"
    return "not measured" if all(w == stats.NOT_MEASURED for w in words) else "direction only"


def convergence(histories: pd.DataFrame, runs: pd.DataFrame, row) -> list[dict]:
    """The effect of one pixel-sampling comparison read early: at half the shorter run's steps and at the
    training FLOPs the cheaper run spends in all its steps (each run read at its last evaluation at or before
    the budget). Intervals: the seed-paired t interval at 95%, not adjusted (a reading beside the verdict)."""
    found = curves(histories[histories["matrix"] == row.matrix])
    pair = {"variant": row.variant, "reference": row.reference}
    per = {k: {s: c for (v, s), c in found.items() if v == vid} for k, vid in pair.items()}
    if not per["variant"] or not per["reference"]:
        return []
    sign = 1 if row.kind != "leave-one-out" else -1
    last = {k: min(c[-1][0] for c in per[k].values()) for k in per}
    budgets = [("steps", 0.5 * min(last.values()), {"variant": 1.0, "reference": 1.0})]
    flops = {}
    for key, vid in pair.items():
        done = runs[(runs["matrix"] == row.matrix) & (runs["variant"] == vid) & (runs["state"] == "done")]
        try:
            flops[key] = gflop_per_step(done.iloc[0]["run_dir"]) if not done.empty else None
        except (ParityError, ValueError, RuntimeError, TypeError):
            flops[key] = None  # a config that cannot be rebuilt here: the step reading stands alone
    if all(flops.values()):
        budgets.append(("training GFLOP", min(last[k] * flops[k] for k in per), flops))
    out = []
    for measure, budget, scale in budgets:
        values = {}
        for seed in sorted(set(per["variant"]) & set(per["reference"])):
            a = value_at(per["variant"][seed], budget, scale["variant"])
            b = value_at(per["reference"][seed], budget, scale["reference"])
            if a is not None and b is not None:
                values[seed] = sign * (a[1] - b[1])
        interval = stats.t_interval(values)
        out.append({"measure": measure, "budget": budget, "seeds": interval.n, "effect_db": as_float(interval.mean),
                    "ci_low_db": as_float(interval.low), "ci_high_db": as_float(interval.high)})
    return out


__all__ = ["CONVERGENCE", "DIRECTIONS", "claim_readings", "convergence", "effect_reading", "seed_rated", "summary"]
