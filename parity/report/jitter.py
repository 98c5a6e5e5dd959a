"""Jitter as the seed audit means it: runs trained with and without coordinate jitter, each scored at every test
jitter std, and the robustness effect (the PSNR lost from std 0 to each std) as a measured claim.

For each pair (a variant trained with jitter, the same configuration without), per test std: each side's mean
PSNR with its seed t interval (95%), each side's drop from std 0 (paired by seed within the side), and what
jitter in training changes in that drop (paired by seed across the sides), with Bonferroni intervals over the
pair's stds, since the claim is read at all of them at once. The notebook's protocol jitters the encoder's
view of the grid and the decoder's coordinates together ('same'); that is the one read here.
"""

from __future__ import annotations

import pandas as pd

from . import stats
from .results import done_values
from .tables import as_float

MODE = "same"
TRAINED_WITH = "jitter-train"


def jitter_stds(runs: pd.DataFrame) -> list[str]:
    """The test jitter stds the runs were scored at, as stored (column suffixes), in increasing order."""
    prefix = f"jitter.{MODE}."
    return sorted((c[len(prefix):] for c in runs.columns if c.startswith(prefix)), key=float)


def jitter_pairs(effects: pd.DataFrame) -> list[tuple[str, str, str, list[int]]]:
    """(matrix, trained with jitter, trained without, seeds where either collapsed) for every jitter-train
    effect that has runs."""
    if effects.empty:
        return []
    rows = effects[(effects["difference"] == TRAINED_WITH) & (effects["n"] > 0)]
    return [(r.matrix, r.variant, r.reference, list(r.collapsed_seeds) if isinstance(r.collapsed_seeds, list) else [])
            for r in rows.itertuples()]


def robustness(runs: pd.DataFrame, effects: pd.DataFrame) -> list[dict]:
    """One entry per pair: {matrix, with, without, seeds, collapsed_seeds, stds, stds_without_collapsed}; stds:
    [{std, psnr_with, psnr_without, change, drop_with, drop_without, drop_change}], each value {mean_db,
    ci_low_db, ci_high_db, seeds}; change = psnr_with - psnr_without and drop_change = drop_with - drop_without
    (paired by seed, Bonferroni over the stds), so positive means jitter in training kept more PSNR.
    stds_without_collapsed: the same over the seeds where neither side collapsed (a collapsed model outputs one
    colour, which no jitter moves: it would pass for robust)."""
    out = []
    for matrix, with_id, without_id, collapsed in jitter_pairs(effects):
        here = runs[runs["matrix"] == matrix]
        stds = jitter_stds(here)
        if not stds:
            continue
        value = {side: {s: done_values(here, vid, f"jitter.{MODE}.{s}") for s in stds}
                 for side, vid in (("with", with_id), ("without", without_id))}
        alive = {side: {s: {k: v for k, v in per.items() if k not in collapsed} for s, per in by_std.items()}
                 for side, by_std in value.items()}
        seeds = sorted(set(value["with"][stds[0]]) & set(value["without"][stds[0]]))
        out.append({"matrix": matrix, "with": with_id, "without": without_id, "seeds": seeds, "mode": MODE,
                    "collapsed_seeds": collapsed, "stds": _by_std(value, stds),
                    "stds_without_collapsed": _by_std(alive, stds) if collapsed else None})
    return out


def _by_std(value: dict, stds: list[str]) -> list[dict]:
    """The per-std readings of one pair's values ({side: {std: {seed: dB}}}): each side's PSNR and drop, and
    two paired comparisons with Bonferroni intervals over the stds: ``change`` (with minus without, at each std
    including 0, where it is what jitter in training costs a clean reconstruction) and ``drop_change``."""
    zero = stds[0]
    rows, changes, drop_changes = [], [], []
    for s in stds:
        entry = {"std": float(s)}
        drops = {}
        for side in ("with", "without"):
            entry[f"psnr_{side}"] = _interval(stats.t_interval(value[side][s]))
            drops[side] = {k: v - value[side][zero][k] for k, v in value[side][s].items() if k in value[side][zero]}
            entry[f"drop_{side}"] = _interval(stats.t_interval(drops[side])) if s != zero else None
        change = {k: v - value["without"][s][k] for k, v in value["with"][s].items() if k in value["without"][s]}
        changes.append((entry, stats.t_interval(change)))
        if s != zero:
            change = {k: drops["with"][k] - drops["without"][k] for k in drops["with"] if k in drops["without"]}
            drop_changes.append((entry, stats.t_interval(change)))
        rows.append(entry)
    for key, family in (("change", changes), ("drop_change", drop_changes)):
        for (entry, _), adjusted in zip(family, stats.bonferroni_family([iv for _, iv in family])):
            entry[key] = {**_interval(adjusted), "confidence": adjusted.level}
    return rows


def _interval(iv: stats.Interval) -> dict:
    return {"mean_db": as_float(iv.mean), "ci_low_db": as_float(iv.low), "ci_high_db": as_float(iv.high),
            "seeds": iv.n}


__all__ = ["MODE", "jitter_pairs", "jitter_stds", "robustness"]
