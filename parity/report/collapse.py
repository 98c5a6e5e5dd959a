"""Collapse as an outcome: which finished runs ended on the constant-colour plateau, each variant's collapse
rate with its exact interval, and the cells of a factorial with the collapsed runs left out.

A run has collapsed when its test PSNR ends within COLLAPSE_DB of the constant-colour predictor (its model
outputs about one colour). At this budget that is a training failure (a learning rate a configuration does not
survive, for instance), a binary outcome of the run rather than a low PSNR among others: its rate is reported
on its own, and the factorial is read with and without the collapsed runs.
"""

from __future__ import annotations

import pandas as pd

from . import stats
from .results import done_values

COLLAPSE_DB = 0.5  # a run within this of the constant-colour predictor has collapsed to one colour
PSNR_COLUMN = "test.psnr"


def collapse_limit(references: dict | None) -> float | None:
    """The PSNR below which a run counts as collapsed; None when the matrix recorded no reference levels."""
    if not references or references.get("constant_colour_db") is None:
        return None
    return float(references["constant_colour_db"]) + COLLAPSE_DB


def is_collapsed(psnr: float, limit: float | None) -> bool:
    return limit is not None and psnr < limit


def collapsed_runs(runs: pd.DataFrame, limit: float | None) -> list[dict]:
    """The finished runs below ``limit``: {matrix, variant, seed, psnr_db, run_dir} each, in table order."""
    if limit is None or PSNR_COLUMN not in runs:
        return []
    done = runs[runs["state"] == "done"]
    low = done[done[PSNR_COLUMN] < limit]
    return [{"matrix": r["matrix"], "variant": r["variant"], "seed": int(r["seed"]), "psnr_db": float(r[PSNR_COLUMN]),
             "run_dir": r["run_dir"]} for _, r in low.iterrows()]


def collapse_rates(runs: pd.DataFrame, variants: list[dict], limit: float | None) -> pd.DataFrame:
    """Per variant of one matrix (runs of that matrix): finished seeds, collapsed seeds, the rate and its
    95% Clopper-Pearson interval (stats.rate_interval). Empty when collapse cannot be told (no references)."""
    columns = ["variant", "finished", "collapsed", "rate", "low", "high", "collapsed_seeds"]
    if limit is None:
        return pd.DataFrame(columns=columns)
    rows = []
    for variant in variants:
        if variant.get("skipped"):
            continue
        values = done_values(runs, variant["id"], PSNR_COLUMN)
        seeds = sorted(s for s, v in values.items() if v < limit)
        rate = stats.rate_interval(len(seeds), len(values))
        rows.append({"variant": variant["id"], "finished": rate.n, "collapsed": rate.k, "rate": rate.rate,
                     "low": rate.low, "high": rate.high, "collapsed_seeds": seeds})
    return pd.DataFrame(rows, columns=columns)


def without_collapsed(cells: dict[frozenset, dict[int, float]], limit: float | None
                      ) -> tuple[dict[frozenset, dict[int, float]], list[frozenset]]:
    """The cells with their collapsed runs left out, and the cells where every seed collapsed. Those keep their
    runs: collapsing is then all the configuration does at this budget, not a seed's bad luck, and leaving
    the cell out would leave no design to analyse."""
    kept, every = {}, []
    for cell, values in cells.items():
        alive = {s: v for s, v in values.items() if not is_collapsed(v, limit)}
        if alive:
            kept[cell] = alive
        else:
            kept[cell] = dict(values)
            every.append(cell)
    return kept, every


__all__ = ["COLLAPSE_DB", "collapse_limit", "collapse_rates", "collapsed_runs", "is_collapsed", "without_collapsed"]
