"""The effect of each difference in dB, per matrix kind, paired by seed, and a verdict on the seed
audit's claimed severity.

Signs are chosen so that, in every kind, a positive effect means "the original's value (or the fix)
gives a higher PSNR":
  one-at-a-time   PSNR(notebook + d) - PSNR(notebook)
  leave-one-out   PSNR(original) - PSNR(original with d reverted)
  cumulative      PSNR(step k) - PSNR(step k-1)
  improvements    PSNR(original + fix) - PSNR(original)
"""

from __future__ import annotations

import math

import pandas as pd

from ..differences import NOT_IN_SEED, REGISTRY
from .results import Results, done_values, summarise

# Verdict thresholds (dB). An effect is measurable when |mean| > max(NOISE_STD_MULTIPLE * std,
# NOISE_FLOOR_DB); with one seed std is unknown, so only the floor applies.
NOISE_FLOOR_DB = 0.1
NOISE_STD_MULTIPLE = 2.0
LARGE_DB = 1.0
MODERATE_DB = 0.3
# Stored PSNRs are floats: a difference of "exactly" 0.1 dB may come out as 0.1000000000001.
TOLERANCE_DB = 1e-9

# The seed audit's words, mapped to the level of effect they promise.
CLAIM_LEVEL = {"MASSIVE": "large", "CRITICAL": "large", "SEVERE": "large", "MODERATE": "moderate", "MINOR": "small"}
LEVEL_RANK = {"small": 0, "moderate": 1, "large": 2}

NOT_MEASURABLE = "not measurable at this budget"
CONFIRMED = "confirmed"
OVERSTATED = "overstated"
UNDERSTATED = "understated"
CONTRADICTED = "contradicted"
MISSED = "missed by the seed audit"

# Components whose differences change the number reported, not the model: compared on the headline.
HEADLINE_COMPONENTS = ("evaluation",)
PSNR_COLUMN = "test.psnr"
HEADLINE_COLUMN = "test.psnr_headline"

EFFECT_COLUMNS = ["matrix", "kind", "step", "difference", "title", "component", "claimed", "metric", "variant",
                  "reference", "note", "mean", "std", "min", "max", "n", "values", "seeds_missing", "verdict",
                  "level", "threshold", "basis"]

SIGN = {"one-at-a-time": 1, "leave-one-out": -1, "cumulative": 1, "improvements": 1}
MEANING = {
    "one-at-a-time": "PSNR(notebook + d) - PSNR(notebook): positive when adopting the original's value helps",
    "leave-one-out": "PSNR(original) - PSNR(original with d reverted): positive when d contributes to the "
                     "original's advantage",
    "cumulative": "PSNR(step k) - PSNR(step k-1): the gain of adding d on top of every earlier step",
    "improvements": "PSNR(original + fix) - PSNR(original): positive when the fix helps",
}


# ------------------------------------------------------------------------------------------ verdicts


def metric_for(diff_id: str) -> str:
    entry = REGISTRY.get(diff_id)
    return HEADLINE_COLUMN if entry is not None and entry.component in HEADLINE_COMPONENTS else PSNR_COLUMN


def measured_level(size_db: float) -> str:
    if size_db >= LARGE_DB - TOLERANCE_DB:
        return "large"
    return "moderate" if size_db >= MODERATE_DB - TOLERANCE_DB else "small"


def threshold(std: float, n: int) -> tuple[float, str]:
    """The noise threshold in dB and how it was chosen."""
    if n == 1:
        return NOISE_FLOOR_DB, f"one seed: {NOISE_FLOOR_DB:g} dB floor only"
    spread = NOISE_STD_MULTIPLE * std
    if spread > NOISE_FLOOR_DB:
        return spread, f"{NOISE_STD_MULTIPLE:g} × std"
    return NOISE_FLOOR_DB, f"{NOISE_FLOOR_DB:g} dB floor"


def judge(mean: float, std: float, n: int, claim: str | None) -> dict:
    """verdict, level (measured), threshold and its basis for one effect summary."""
    if n == 0:
        return {"verdict": "not measured", "level": None, "threshold": math.nan, "basis": ""}
    limit, basis = threshold(std, n)
    out = {"level": None, "threshold": limit, "basis": basis}
    if abs(mean) <= limit + TOLERANCE_DB:
        return {**out, "verdict": NOT_MEASURABLE}
    level = measured_level(abs(mean))
    out["level"] = level
    if claim == NOT_IN_SEED:
        return {**out, "verdict": MISSED}
    if claim not in CLAIM_LEVEL:
        return {**out, "verdict": f"measured {level}; no claim to compare"}
    if mean < 0:
        return {**out, "verdict": CONTRADICTED}  # the seed calls it a fix, yet the original's value hurts
    claimed = LEVEL_RANK[CLAIM_LEVEL[claim]]
    if claimed == LEVEL_RANK[level]:
        return {**out, "verdict": CONFIRMED}
    return {**out, "verdict": OVERSTATED if claimed > LEVEL_RANK[level] else UNDERSTATED}


# ------------------------------------------------------------------------------------------ one effect


def paired(variant: dict[int, float], reference: dict[int, float], sign: int) -> dict[int, float]:
    """Seed-paired differences sign * (variant - reference), over seeds both finished."""
    return {s: sign * (variant[s] - reference[s]) for s in sorted(variant) if s in reference}


def effect_row(runs: pd.DataFrame, seeds: list[int], diff_id: str, variant: dict, reference: dict | None,
               sign: int, note: str = "") -> dict:
    entry = REGISTRY.get(diff_id)
    metric = metric_for(diff_id)
    row = {"difference": diff_id, "title": entry.title if entry else "(not in the registry)",
           "component": entry.component if entry else None, "claimed": entry.seed if entry else None,
           "metric": metric, "variant": variant["id"], "reference": reference["id"] if reference else None,
           "note": note}
    values = {}
    if reference is not None and not variant.get("skipped"):
        values = paired(done_values(runs, variant["id"], metric), done_values(runs, reference["id"], metric), sign)
    stats = summarise(values)
    row.update(stats, values=values, seeds_missing=[s for s in seeds if s not in values])
    row.update(judge(stats["mean"], stats["std"], stats["n"], row["claimed"]))
    if stats["n"] == 0:
        row["verdict"] = _why_unmeasured(variant, reference)
    return row


def _why_unmeasured(variant: dict, reference: dict | None) -> str:
    if variant.get("skipped"):
        return f"not run (skipped: {variant['skipped']})"
    if reference is None:
        return "not measured (no reference variant in the matrix)"
    return f"not measured (no seed finished in both {variant['id']} and {reference['id']})"


# ------------------------------------------------------------------------------------------ per kind


def reference_for(variants: list[dict], base: str) -> dict | None:
    """The variant with this base and no toggles (the baseline every single-toggle variant is compared to)."""
    plain = [v for v in variants if v.get("base") == base and not v.get("toggles")]
    return next((v for v in plain if v.get("role") == "baseline"), plain[0] if plain else None)


def single_toggle_effects(variants: list[dict], runs: pd.DataFrame, seeds: list[int], sign: int) -> list[dict]:
    """one-at-a-time, leave-one-out and improvements: each variant against its own base's baseline."""
    rows = []
    for variant in variants:
        toggles = list(variant.get("toggles") or [])
        if not toggles:
            continue  # a baseline
        others = toggles[:-1]
        note = f"together with {', '.join(others)}" if others else ""
        rows.append(effect_row(runs, seeds, toggles[-1], variant, reference_for(variants, variant.get("base")),
                               sign, note))
    return rows


def cumulative_chain(variants: list[dict]) -> list[dict]:
    """The cumulative steps in order: variants sharing the starting base, by number of toggles (stable)."""
    bases = [v.get("base") for v in variants if not v.get("toggles")]
    start = "notebook" if "notebook" in bases else (bases[0] if bases else variants[0].get("base"))
    chain = [v for v in variants if v.get("base") == start]
    return sorted(chain, key=lambda v: len(v.get("toggles") or ()))


def cumulative_effects(variants: list[dict], runs: pd.DataFrame, seeds: list[int]) -> list[dict]:
    """Step gains against the previous step that ran; skipped steps change nothing, so the next step
    is compared with the last step that was run."""
    chain = cumulative_chain(variants)
    rows, previous = [], chain[0] if chain else None
    for k, variant in enumerate(chain[1:], start=1):
        toggles = list(variant.get("toggles") or [])
        if not toggles:
            continue
        prior = set(previous.get("toggles") or []) if previous else set()
        spans = [t for t in toggles[:-1] if t not in prior]
        note = f"also spans skipped {', '.join(spans)}" if spans else ""
        row = effect_row(runs, seeds, toggles[-1], variant, previous, 1, note)
        rows.append({**row, "step": k})
        if not variant.get("skipped"):
            previous = variant
    return rows


def matrix_effects(kind: str, variants: list[dict], runs: pd.DataFrame, seeds: list[int]) -> list[dict]:
    if kind == "cumulative":
        return cumulative_effects(variants, runs, seeds)
    return single_toggle_effects(variants, runs, seeds, SIGN[kind])


def compute_effects(results: Results) -> pd.DataFrame:
    """Every effect of every matrix in ``results``: one row per (matrix, difference)."""
    rows = []
    for matrix in results.matrices.itertuples():
        runs = results.runs[results.runs["matrix"] == matrix.matrix]
        for row in matrix_effects(matrix.kind, matrix.variants, runs, matrix.seeds):
            rows.append({"matrix": matrix.matrix, "kind": matrix.kind, **row})
    return pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)


def thresholds_text() -> str:
    """The verdict rules in words, with the constants' values (printed in the report)."""
    return (f"An effect is measurable when |mean| > max({NOISE_STD_MULTIPLE:g} × std, {NOISE_FLOOR_DB:g} dB) "
            f"(with one seed std is unknown and only the {NOISE_FLOOR_DB:g} dB floor applies); otherwise it is "
            f"'{NOT_MEASURABLE}'. Measured level: large ≥ {LARGE_DB:g} dB, moderate ≥ {MODERATE_DB:g} dB, "
            "else small. The seed audit's levels promise: MASSIVE, CRITICAL, SEVERE → large; MODERATE → "
            f"moderate; MINOR → small. '{CONFIRMED}': same level; '{OVERSTATED}': the seed claimed more; "
            f"'{UNDERSTATED}': the seed claimed less; '{CONTRADICTED}': the original's value measurably hurts "
            f"although the seed calls it a fix; '{MISSED}': not in the seed audit, yet measurable. Differences "
            "of the 'evaluation' component change the number reported, not the model, and are compared on the "
            "reported (headline) PSNR; all others on the mean per-image PSNR.")


__all__ = ["CLAIM_LEVEL", "CONFIRMED", "CONTRADICTED", "HEADLINE_COLUMN", "LARGE_DB", "MEANING", "MISSED",
           "MODERATE_DB", "NOISE_FLOOR_DB", "NOISE_STD_MULTIPLE", "NOT_MEASURABLE", "OVERSTATED", "PSNR_COLUMN",
           "UNDERSTATED", "compute_effects", "cumulative_chain", "judge", "matrix_effects", "measured_level",
           "metric_for", "paired", "reference_for", "thresholds_text", "threshold"]
