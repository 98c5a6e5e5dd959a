"""The effect of each difference in dB, per matrix, paired by seed, with a family-wise interval and a
verdict on the seed audit's claim (the rule lives in ``stats``); the factorial's attribution of the gap.

Signs are chosen so that, in every kind, a positive effect means "the original's value (or the fix)
gives a higher PSNR":
  one-at-a-time   PSNR(notebook + d) - PSNR(notebook)
  leave-one-out   PSNR(original) - PSNR(original with d reverted)
  cumulative      PSNR(step k) - PSNR(step k-1)
  improvements    PSNR(original + fix) - PSNR(original)
  factorial       contrasts of the 2^k cells (main effects, interactions, Shapley shares of the gap)

Effects are on the mean per-image PSNR of each run's test images (in a matrix whose preset sets
data.eval_split, the same images for every variant); jitter-train on the PSNR under coordinate jitter,
which is what it claims to improve. Differences that change only what is scored are evaluation-side:
they are computed from the stored per-image values (``evaluation_side``), not judged on training.
"""

from __future__ import annotations

import math

import pandas as pd

from ..experiment.differences import EVALUATION_SIDE, NOT_IN_SEED, REGISTRY
from ..experiment.kinds import KINDS
from . import stats
from .collapse import PSNR_COLUMN, collapse_limit
from .results import Results, done_lists, done_values

CLAIM_LEVEL = {"MASSIVE": "large", "CRITICAL": "large", "SEVERE": "large", "MODERATE": "moderate", "MINOR": "small"}

# Why a toggle can leave every run bit-identical in a CPU protocol (said next to "no effect").
NO_EFFECT_REASONS = {
    "drop-last": "every batch is full: the training subset divides by the batch size",
    "fix-batch0-coords": "training uses the full grid, the same for every sample",
    "fix-lp-extraction": "equidistant LP tokens are read back from where they were inserted",
    "data-split": "the first-N training images are the same in both splits and every variant is scored on the "
                  "same images",
    "psnr-aggregation": "it changes the number reported, not the model (see the evaluation-side effects)",
    "modulation-entry": "the LAINR decoder always adds the modulation",
}
EVALUATION_ARTEFACT = "changes which test images are scored: not an effect of the model (not judged)"

EFFECT_COLUMNS = ["matrix", "kind", "step", "difference", "title", "component", "claimed", "metric", "variant",
                  "reference", "note", "skipped", "mean", "low", "high", "p_holm", "confidence", "sim_low", "sim_high",
                  "sim_confidence", "df", "n", "values", "seeds_missing", "verdict", "level", "family", "se",
                  "collapsed_seeds", "own_variance"]


def claimed_level(claim: str | None) -> str | None:
    return CLAIM_LEVEL.get(claim) if claim not in (None, NOT_IN_SEED) else None


def metric_for(diff_id: str, runs: pd.DataFrame | None = None) -> str:
    """The column an effect is judged on: jitter-train on PSNR at its own training jitter (when the runs
    measured it), everything else on the mean per-image PSNR."""
    entry = REGISTRY.get(diff_id)
    if diff_id == "jitter-train" and entry is not None:
        column = f"jitter.same.{float(entry.sets['train.jitter_std'])}"
        if runs is None or column in runs:
            return column
    return PSNR_COLUMN


# ------------------------------------------------------------------------------------------ raw effects


def paired(variant: dict[int, float], reference: dict[int, float], sign: int) -> dict[int, float]:
    """Seed-paired differences sign * (variant - reference), over seeds both finished."""
    return {s: sign * (variant[s] - reference[s]) for s in sorted(variant) if s in reference}


def effect_row(runs: pd.DataFrame, seeds: list[int], diff_id: str, variant: dict, reference: dict | None,
               sign: int, note: str = "", limit: float | None = None) -> dict:
    """One effect: its per-seed paired values and the seeds where either run collapsed (below ``limit``)."""
    entry = REGISTRY.get(diff_id)
    metric = metric_for(diff_id, runs)
    row = {"difference": diff_id, "title": entry.title if entry else "(not in the registry)",
           "component": entry.component if entry else None, "claimed": entry.claimed_severity if entry else None,
           "metric": metric, "variant": variant["id"], "reference": reference["id"] if reference else None,
           "note": note}
    values = {}
    if reference is not None and not variant.get("skipped"):
        values = paired(done_values(runs, variant["id"], metric), done_values(runs, reference["id"], metric), sign)
    collapsed = set()
    if values and limit is not None:
        for side in (variant, reference):
            collapsed |= {s for s, v in done_values(runs, side["id"], PSNR_COLUMN).items() if v < limit}
    row.update(values=values, n=len(values), seeds_missing=[s for s in seeds if s not in values],
               skipped=variant.get("skipped"), collapsed_seeds=sorted(s for s in collapsed if s in values))
    return row


def reference_for(variants: list[dict], base: str) -> dict | None:
    """The variant with this base and no toggles (the baseline every single-toggle variant is compared to)."""
    plain = [v for v in variants if v.get("base") == base and not v.get("toggles")]
    return next((v for v in plain if v.get("role") == "baseline"), plain[0] if plain else None)


def single_toggle_effects(variants: list[dict], runs: pd.DataFrame, seeds: list[int], sign: int,
                          limit: float | None = None) -> list[dict]:
    """one-at-a-time, leave-one-out and improvements: each variant against its own base's baseline."""
    rows = []
    for variant in variants:
        toggles = list(variant.get("toggles") or [])
        if not toggles:
            continue  # a baseline
        others = toggles[:-1]
        note = f"together with {', '.join(others)}" if others else ""
        if variant.get("fixed"):
            note = "; ".join(filter(None, [note, "batch-0 defect fixed in this mix"]))
        rows.append(effect_row(runs, seeds, toggles[-1], variant, reference_for(variants, variant.get("base")),
                               sign, note, limit))
    return rows


def cumulative_chain(variants: list[dict]) -> list[dict]:
    """The cumulative steps in order: variants sharing the starting base, by number of toggles (stable)."""
    bases = [v.get("base") for v in variants if not v.get("toggles")]
    start = "notebook" if "notebook" in bases else (bases[0] if bases else variants[0].get("base"))
    chain = [v for v in variants if v.get("base") == start]
    return sorted(chain, key=lambda v: len(v.get("toggles") or ()))


def cumulative_effects(variants: list[dict], runs: pd.DataFrame, seeds: list[int],
                       limit: float | None = None) -> list[dict]:
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
        row = effect_row(runs, seeds, toggles[-1], variant, previous, 1, note, limit)
        rows.append({**row, "step": k})
        if not variant.get("skipped"):
            previous = variant
    return rows


# ------------------------------------------------------------------------------------------ judging


def judge_rows(rows: list[dict], kind: str) -> list[dict]:
    """Intervals and verdicts for the effects of one matrix. Bit-identical effects are 'no effect in this
    protocol'; evaluation-side differences whose runs differ only changed the scored images (not judged);
    the rest form families, one per metric, with the seed variance pooled within each over the effects none of
    whose runs collapsed (an effect with a collapsed run keeps its own variance, ``own_variance``): the label
    reads the Holm interval (low/high), the severity words the simultaneous one (sim_low/sim_high)."""
    families: dict[str, list[dict]] = {}
    for row in rows:
        values = list(row["values"].values())
        row.update(mean=(math.fsum(values) / len(values)) if values else math.nan, low=math.nan, high=math.nan,
                   p_holm=math.nan, confidence=math.nan, sim_low=math.nan, sim_high=math.nan,
                   sim_confidence=math.nan, df=math.nan, se=math.nan, level=None, family=None,
                   own_variance=bool(row.get("collapsed_seeds")))
        if not values:
            row["verdict"] = _why_unmeasured(row)
        elif all(v == 0.0 for v in values):
            reason = NO_EFFECT_REASONS.get(row["difference"], "bit-identical runs")
            row["verdict"] = stats.verdict(None, None, bit_identical=True, reason=reason)["verdict"]
        elif row["difference"] in EVALUATION_SIDE:
            row["verdict"] = EVALUATION_ARTEFACT
        else:
            families.setdefault(row["metric"], []).append(row)
    for metric, members in families.items():
        effects = [r["values"] for r in members]
        shared = kind != "cumulative"
        own = [r["own_variance"] for r in members]
        labels = stats.adjusted_intervals(effects, pool=True, shared_reference=shared, own=own)
        ends = stats.simultaneous_intervals(effects, pool=True, shared_reference=shared, own=own)
        for row, interval, together in zip(members, labels, ends):
            judged = stats.verdict(interval, claimed_level(row["claimed"]), ends=together)
            row.update(low=interval.low, high=interval.high, p_holm=interval.p, confidence=interval.level,
                       sim_low=together.low, sim_high=together.high, sim_confidence=together.level,
                       df=interval.df, se=interval.se, verdict=judged["verdict"], level=judged["level"],
                       family=f"{metric}: {len(members)} effects")
    return rows


def _why_unmeasured(row: dict) -> str:
    if row.get("skipped"):
        return f"not run (skipped: {row['skipped']})"
    if row.get("reference") is None:
        return "not tested (no reference variant in the matrix)"
    return f"{stats.NO_RUNS}: no seed finished in both {row['variant']} and {row['reference']}"


def matrix_effects(kind: str, variants: list[dict], runs: pd.DataFrame, seeds: list[int],
                   limit: float | None = None) -> list[dict]:
    """The judged single-toggle (or cumulative) effects of one matrix; ``limit``: its collapse threshold."""
    if kind == "factorial":
        return []  # contrasts of cells, not single toggles: see factorial()
    if kind == "cumulative":
        return judge_rows(cumulative_effects(variants, runs, seeds, limit), kind)
    return judge_rows(single_toggle_effects(variants, runs, seeds, KINDS[kind].sign, limit), kind)


def compute_effects(results: Results) -> pd.DataFrame:
    """Every single-toggle effect of every matrix in ``results``: one row per (matrix, difference)."""
    rows = []
    for matrix in results.matrices.itertuples():
        runs = results.runs[results.runs["matrix"] == matrix.matrix]
        limit = collapse_limit(matrix.references or first_references(results))
        for row in matrix_effects(matrix.kind, matrix.variants, runs, matrix.seeds, limit):
            rows.append({"matrix": matrix.matrix, "kind": matrix.kind, **row})
    return pd.DataFrame(rows).reindex(columns=EFFECT_COLUMNS)


def first_references(results: Results) -> dict | None:
    """Any matrix's reference levels (every matrix of a study scores the same images)."""
    return next((m.references for m in results.matrices.itertuples() if m.references), None)


# ------------------------------------------------------------------------------------------ factorial


def factorial_cells(matrix, runs: pd.DataFrame, groups: tuple[str, ...] | None = None
                    ) -> tuple[dict[frozenset, dict[int, float]], dict[frozenset, str], tuple[str, ...], str]:
    """Each cell's finished per-seed PSNR ({cell: {seed: dB}}), its variant id, the groups analysed and why
    there is no design ('' when every cell has a finished seed). ``groups``: the sub-design over these groups
    only (the others held at the notebook's values)."""
    everything = tuple(matrix.groups or ())
    groups = tuple(g for g in everything if g in groups) if groups else everything
    cells, ids = {}, {}
    for variant in matrix.variants:
        if variant.get("groups") is None or not set(variant["groups"]) <= set(groups):
            continue
        cell = frozenset(variant["groups"])
        cells[cell], ids[cell] = done_values(runs, variant["id"], PSNR_COLUMN), variant["id"]
    if len(cells) != 2 ** len(groups) or not groups:
        return cells, ids, groups, f"{len(cells)} of {2 ** len(groups)} cells in the matrix"
    if not all(cells.values()):
        done = sum(1 for v in cells.values() if v)
        return cells, ids, groups, f"not every cell has a finished seed yet ({done} of {len(cells)} have one)"
    return cells, ids, groups, ""


def analyse_cells(cells: dict[frozenset, dict[int, float]], groups: tuple[str, ...], donors=None
                  ) -> tuple[stats.FactorialAnalysis | None, str]:
    """The Welch factorial analysis of these cells, or None and why not (a cell with no value; no cell with
    two values, so no variance). ``donors``: the cells a one-value cell borrows its variance from."""
    if not groups or len(cells) != 2 ** len(groups) or not all(cells.values()):
        return None, "not every cell has a finished seed"
    if all(len(v) < 2 for v in cells.values()):
        return None, "one seed in every cell: intervals need two"
    return stats.factorial_analysis(cells, groups, donors=donors), ""


def factorial(matrix, runs: pd.DataFrame, groups: tuple[str, ...] | None = None
              ) -> tuple[stats.FactorialAnalysis | None, str]:
    """The factorial analysis (all finished runs, each cell's own variance) of one factorial matrix, or None
    and why not (cells unfinished, one seed). ``groups``: analyse the sub-design over these groups only."""
    cells, _, groups, why = factorial_cells(matrix, runs, groups)
    return (None, why) if why else analyse_cells(cells, groups)


def group_leave_one_out(analysis: stats.FactorialAnalysis
                        ) -> dict[str, tuple[stats.Interval, dict[int, float]]]:
    """Leave-one-out over the groups, read off the factorial: PSNR(all groups) - PSNR(all but g) ({group:
    (Holm interval over the groups, per-seed values on the seeds both cells have)}), each contrast with the
    two cells' own variances (stats.group_leave_one_out)."""
    full = frozenset(analysis.groups)
    out = {}
    for g, interval in stats.group_leave_one_out(analysis).items():
        top, rest = analysis.cells[full], analysis.cells[full - {g}]
        out[g] = (interval, paired(top, rest, 1))
    return out


# ------------------------------------------------------------------------------------------ evaluation side


def batch_mse_psnr(mse: list[float], batch_size: int) -> float:
    """The notebook's reported form from per-image MSEs: -10 log10 of each batch's MSE (images of one
    size, so the batch MSE is the mean of its images' MSEs), averaged over batches in loader order."""
    out = []
    for start in range(0, len(mse), batch_size):
        chunk = mse[start:start + batch_size]
        out.append(-10.0 * math.log10(math.fsum(chunk) / len(chunk)))
    return math.fsum(out) / len(out) if out else math.nan


def aggregation_effect(runs: pd.DataFrame, variant: str, batch_size: int) -> dict[int, float]:
    """psnr-aggregation on one variant's runs: PSNR in the original's form (mean per-image PSNR) minus the
    notebook's (batch-MSE PSNR at the notebook's evaluation batch size), per seed, from the stored values."""
    per_image = done_values(runs, variant, PSNR_COLUMN)
    mse = done_lists(runs, variant, "test.per_image.mse")
    return {s: per_image[s] - batch_mse_psnr(mse[s], batch_size) for s in per_image if s in mse}


__all__ = ["CLAIM_LEVEL", "EFFECT_COLUMNS", "NO_EFFECT_REASONS", "PSNR_COLUMN",
           "aggregation_effect", "analyse_cells", "batch_mse_psnr", "claimed_level", "compute_effects",
           "cumulative_chain", "factorial", "factorial_cells", "first_references", "group_leave_one_out", "judge_rows",
           "matrix_effects", "metric_for", "paired", "reference_for"]
