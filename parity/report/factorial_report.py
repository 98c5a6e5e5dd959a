"""The factorial's readings in words and tables: whether counting collapse changes the answer (first screen),
each quantity with all runs, without collapsed runs and by cell medians, the readings at matched steps and
training FLOPs, the cells with their collapse rates, the smallest detectable effects, and the JSON of it all."""

from __future__ import annotations

import pandas as pd

from . import stats
from .collapse import COLLAPSE_DB
from .compute import FLOPS, STEPS
from .readings import (
    ALL_RUNS,
    MEDIANS,
    MORE_SEEDS,
    WITHOUT_COLLAPSED,
    FactorialReadings,
    factorial_detectable,
    families,
    label,
    marginal,
)
from .tables import MISSING, as_float, ci, missing, number, table

QUANTITIES = ("share", "main effect", "leave-one-out")

INTERVALS_WHY = (
    "Intervals sum each cell's own seed variance (Welch-Satterthwaite df), because the cells are not alike: one "
    "where some seeds collapsed has a seed spread ten times the others', and a variance pooled over cells spreads "
    "it over every contrast while claiming the df of all of them (in a simulation of this study's cells the "
    "pooled 95% interval of the decoder's share covered 89%, Welch's 94%, and 94-96% for every share and main "
    "effect; `tests/parity/report/test_coverage.py`).")


def cell_name(cell, groups) -> str:
    return " + ".join(g for g in groups if g in cell) or "none (the notebook)"


def _with_label(interval: stats.Interval, labelled: stats.Interval) -> str:
    if missing(interval.mean):
        return MISSING
    return f"{interval.mean:+.2f} {ci(interval)}, {label(labelled)}"


def _quantity(quantity: str, group: str) -> str:
    return "the gap" if quantity == "gap" else f"`{group}`'s {quantity}"


# ------------------------------------------------------------------------------------------ first screen


def collapse_statement(name: str, fr: FactorialReadings | None, limit: float | None) -> str:
    """Whether any Holm label changes between all runs and without the collapsed runs, in a sentence or two."""
    if fr is None:
        return ""
    if limit is None:
        return (f"**Collapse** (`{name}`): no reference levels were recorded, so collapsed runs cannot be told "
                "apart; every reading below uses all runs.")
    if not fr.dropped and not fr.every_seed_collapsed:
        return f"**Collapse does not enter the answer** (`{name}`): no run ended on the constant-colour plateau."
    if fr.readings.get(WITHOUT_COLLAPSED) is None:
        return (f"**Collapse** (`{name}`): without the collapsed runs no design is left "
                f"({fr.why.get(WITHOUT_COLLAPSED)}); the answer below holds for all runs only.")
    changes = fr.collapse_dependent()
    every = f"; {len(fr.every_seed_collapsed)} cell(s) collapsed at every seed and keep their runs in both readings" \
        if fr.every_seed_collapsed else ""
    counted = f"{fr.dropped} collapsed run(s) left out of the second reading{every}"
    if not changes:
        return (f"**How collapse is counted does not change any label** (`{name}`; {counted}): every share, main "
                "effect and group leave-one-out keeps its Holm label without the collapsed runs (the values move: "
                "see the readings below).")
    said = "; ".join(f"{_quantity(c['quantity'], c['group'])} is {_with_label(c['all_runs_95'], c['all_runs'])} "
                     f"with all runs but {_with_label(c['without_95'], c['without'])} without the collapsed runs "
                     f"(cell medians: {c['median']:+.2f})" for c in changes)
    return (f"**How collapse is counted changes the answer** (`{name}`; {counted}): {said}. These verdicts measure "
            "whether training survived at this budget as much as what the groups do; the collapse rate of each "
            "cell is in the factorial's section.")


# ------------------------------------------------------------------------------------------ tables


def readings_table(fr: FactorialReadings, quantity: str) -> str:
    """One quantity of each group (share, main effect or leave-one-out) three ways."""
    rows = []
    labelled = {r: families(a)[quantity] for r, a in fr.readings.items() if a is not None}
    plain = {r: marginal(a)[quantity] for r, a in fr.readings.items() if a is not None}
    for group in fr.groups:
        row = {"group": f"`{group}`"}
        for reading in (ALL_RUNS, WITHOUT_COLLAPSED):
            row[f"{reading}: 95% interval, Holm label"] = _with_label(plain[reading][group], labelled[reading][group]) \
                if reading in plain else MISSING
        row[f"{MEDIANS} (no interval)"] = number(fr.median(quantity, group), 2, signed=True)
        rows.append(row)
    return table(pd.DataFrame(rows))


def readings_intro(fr: FactorialReadings) -> str:
    if not fr.dropped and not fr.every_seed_collapsed:
        return (f"No run collapsed, so **{ALL_RUNS}** and **{WITHOUT_COLLAPSED}** are the same reading; "
                f"**{MEDIANS}** (each cell's median seed, no interval: with three seeds no distribution-free "
                "interval for a median reaches 95%) shows how much one seed moves it. Labels are Holm-adjusted "
                "over the groups within each reading.")
    every = ", ".join(f"`{cell_name(c, fr.groups)}`" for c in fr.every_seed_collapsed)
    kept = (f" A cell where every seed collapsed ({every}) keeps its runs there: collapsing is all that "
            "configuration does at this budget, and without the cell there is no design to read.") if every else ""
    return (f"Three readings: **{ALL_RUNS}**; **{WITHOUT_COLLAPSED}** (the {fr.dropped} run(s) within "
            f"{COLLAPSE_DB:g} dB of one constant colour left out: the PSNR of the runs that trained; a cell left "
            f"with one run borrows the within-cell variance of the others).{kept} **{MEDIANS.capitalize()}**: each "
            "cell's median seed, robust to one collapsed seed in three; with three seeds no distribution-free "
            "interval for a median reaches 95% (the range of three covers 75%), so it has none. Labels are "
            "Holm-adjusted over the groups within each reading.")


def budgets_table(fr: FactorialReadings) -> str:
    """Shares, group leave-one-outs and the gap at the end of each run's own budget and at matched budgets."""
    end = fr.readings.get(ALL_RUNS)
    columns = {"end of each run's budget": end}
    steps, flops = fr.budgets.get(STEPS), fr.budgets.get(FLOPS)
    if steps is not None:
        columns[f"at step {steps.budget:,.0f}" if not missing(steps.budget) else "at matched steps"] = steps.analysis
    if flops is not None:
        columns[f"at {flops.budget:,.1f} training GFLOP" if not missing(flops.budget) else "at matched FLOPs"] = \
            flops.analysis
    rows = []
    for quantity in ("share", "leave-one-out"):
        for group in fr.groups:
            row = {"quantity": _quantity(quantity, group)}
            for title, analysis in columns.items():
                row[title] = MISSING if analysis is None else \
                    _with_label(marginal(analysis)[quantity][group], families(analysis)[quantity][group])
            rows.append(row)
    gap = {"quantity": "the gap"}
    for title, analysis in columns.items():
        gap[title] = MISSING if analysis is None else f"{analysis.gap.mean:+.2f} {ci(analysis.gap)}"
    rows.append(gap)
    return table(pd.DataFrame(rows))


def budgets_text(fr: FactorialReadings) -> str:
    steps, flops = fr.budgets.get(STEPS), fr.budgets.get(FLOPS)
    if steps is None or flops is None:
        return ""
    whys = [f"{b.measure}: {b.why}" for b in (steps, flops) if b.analysis is None and b.why]
    missing_text = f" Not available: {'; '.join(whys)}." if whys else ""
    per_step = ", ".join(f"{v:.3g}" for v in sorted(set(round(x, 6) for x in fr.gflop_per_step.values())))
    return (
        "**At matched budgets.** The cells train for different lengths (the optimisation group sets the original's "
        "epochs and batch size), so an end-of-budget share mixes what a group does per step with how long it "
        "trains. Each run is also read at its last evaluation (history.jsonl) at or before the largest budget "
        "every run of the design reached: in steps, and in training compute (GFLOP per step counted from each "
        f"cell's config.yaml by torch's FlopCounterMode, matrix products and convolutions: {per_step or MISSING}). "
        "A run read before its end has not finished its learning-rate schedule: the matched readings say what "
        "each configuration had reached at that budget, not what a schedule of that length would reach."
        f"{missing_text}\n\n{budgets_table(fr)}")


def cells_table(fr: FactorialReadings, rates: pd.DataFrame) -> str:
    """Every cell: its seeds, mean, median and spread, and its collapse rate with the exact interval."""
    by_variant = {r.variant: r for r in rates.itertuples()} if not rates.empty else {}
    end = fr.readings.get(ALL_RUNS)
    rows = []
    for cell in sorted(fr.cells, key=lambda c: (len(c), end.cell_means[c] if end else 0.0)):
        values = list(fr.cells[cell].values())
        spread = pd.Series(values).std() if len(values) > 1 else float("nan")
        rate = by_variant.get(fr.ids[cell])
        rows.append({"cell (groups at the original's values)": cell_name(cell, fr.groups),
                     "seeds": len(values), "PSNR per image (dB)": f"{sum(values) / len(values):.2f}",
                     "median (dB)": f"{pd.Series(values).median():.2f}", "seed sd (dB)": number(spread, 2),
                     "collapsed": MISSING if rate is None else f"{rate.collapsed}/{rate.finished}",
                     "collapse rate [95% exact]": MISSING if rate is None else
                     f"{rate.rate:.2f} [{rate.low:.2f}, {rate.high:.2f}]"})
    return table(pd.DataFrame(rows))


def detectable_table(fr: FactorialReadings) -> str:
    analysis = fr.readings.get(ALL_RUNS)
    if analysis is None:
        return ""
    found = factorial_detectable(analysis)
    seeds = min(len(v) for v in analysis.cells.values())
    rows = []
    for quantity in ("share", "leave-one-out"):
        for group, by_seeds in found[quantity].items():
            rows.append({"quantity": _quantity(quantity, group),
                         **{f"{k} seeds{' (this design)' if k == seeds else ''}": number(v, 2)
                            for k, v in by_seeds.items()}})
    rows.append({"quantity": "the gap", **{f"{k} seeds{' (this design)' if k == seeds else ''}": number(v, 2)
                                          for k, v in found["gap"]["gap"].items()}})
    return (f"**Smallest effect detected with 80% power** (dB; from this design's own cell variances, all runs, "
            f"the noncentral t distribution at Holm's first step over the {len(fr.groups)} groups, "
            f"{stats.ALPHA:g}/{len(fr.groups)}; at {', '.join(map(str, MORE_SEEDS))} seeds the same cell variances "
            "with more seeds):\n\n" + table(pd.DataFrame(rows)))


def pairing_sentence(fr: FactorialReadings) -> str:
    """What ignoring the pairing by seed costs in this design."""
    offset = fr.seed_offset_variance()
    if missing(offset):
        return ""
    verdict = ("so pairing by seed would remove nothing measurable and the unpaired intervals lose no power"
               if offset <= 0.05 * max(fr.readings[ALL_RUNS].residual_var, 1e-12) else
               "so the unpaired intervals are conservative here: part of what they count as noise is a seed offset "
               "every cell shares")
    return (f"Welch's intervals do not use the pairing by seed. The seed offset shared by every cell has an "
            f"estimated variance of {offset:+.4f} dB^2 (mean within-cell variance minus the additive cells x seeds "
            f"model's residual variance, {fr.readings[ALL_RUNS].residual_var:.4f} dB^2), {verdict}.")


# ------------------------------------------------------------------------------------------ JSON


def _interval_json(interval: stats.Interval, labelled: stats.Interval | None = None) -> dict:
    out = {"effect_db": as_float(interval.mean), "ci_low_db": as_float(interval.low),
           "ci_high_db": as_float(interval.high), "df": as_float(interval.df)}
    if labelled is not None:
        out.update(p_holm=as_float(labelled.p), label=label(labelled))
    return out


def reading_json(analysis: stats.FactorialAnalysis | None) -> dict | None:
    if analysis is None:
        return None
    labelled, plain = families(analysis), marginal(analysis)
    out = {"gap": _interval_json(analysis.gap)}
    key = {"share": "attribution", "main effect": "main_effects", "leave-one-out": "group_leave_one_out"}
    for quantity in QUANTITIES:
        out[key[quantity]] = [{"group": g, **_interval_json(plain[quantity][g], labelled[quantity][g])}
                              for g in analysis.groups]
        if quantity == "share":
            for entry in out[key[quantity]]:
                entry["share_db"] = entry["effect_db"]
    return out


def medians_json(fr: FactorialReadings) -> dict:
    keys = {"share": ("attribution", "share_db"), "main effect": ("main_effects", "effect_db"),
            "leave-one-out": ("group_leave_one_out", "effect_db")}
    out = {name: [{"group": g, field: fr.median(quantity, g)} for g in fr.groups]
           for quantity, (name, field) in keys.items()}
    return {**out, "gap_db": fr.medians[("gap", None)]}


def factorial_json(fr: FactorialReadings, rates: pd.DataFrame) -> dict:
    """The readings, the cells with their collapse rates, the detectable effects and the matched budgets."""
    by_variant = {r.variant: r for r in rates.itertuples()} if not rates.empty else {}
    cells = []
    for cell, values in fr.cells.items():
        rate = by_variant.get(fr.ids[cell])
        cells.append({"cell": [g for g in fr.groups if g in cell], "variant": fr.ids[cell], "per_seed_db": values,
                      "collapsed_seeds": list(rate.collapsed_seeds) if rate is not None else [],
                      "finished_seeds": len(values),
                      "collapse_rate": as_float(rate.rate) if rate is not None else None,
                      "collapse_ci": [as_float(rate.low), as_float(rate.high)] if rate is not None else None})
    analysis = fr.readings.get(ALL_RUNS)
    detectable = factorial_detectable(analysis) if analysis is not None else {}
    return {
        "cells": cells,
        "readings": {"all_runs": reading_json(analysis),
                     "without_collapsed": reading_json(fr.readings.get(WITHOUT_COLLAPSED)),
                     "cell_medians": medians_json(fr)},
        "every_seed_collapsed_cells": [[g for g in fr.groups if g in c] for c in fr.every_seed_collapsed],
        "collapsed_runs_left_out": fr.dropped,
        "collapse_dependent": [{"quantity": c["quantity"], "group": c["group"], "all_runs": label(c["all_runs"]),
                                "without_collapsed": label(c["without"]), "median_db": c["median"]}
                               for c in fr.collapse_dependent()],
        "intervals": "welch-satterthwaite per cell; labels holm over the groups",
        "seed_offset_variance_db2": as_float(fr.seed_offset_variance()),
        "mde_db": {"method": f"noncentral t, power 0.8, two-sided at alpha/{len(fr.groups)} (shares, leave-one-outs)"
                             f" and alpha (gap), all runs' cell variances",
                   **{q: {g: {str(k): as_float(v) for k, v in by.items()} for g, by in members.items()}
                      for q, members in detectable.items()}},
        "compute_matched": {
            "gflop_per_step": fr.gflop_per_step,
            **{measure: {"budget": as_float(b.budget), "unit": "steps" if measure == STEPS else "training GFLOP",
                         "why_not": b.why or None, "reading": reading_json(b.analysis)}
               for measure, b in fr.budgets.items()}},
    }


__all__ = ["INTERVALS_WHY", "QUANTITIES", "budgets_table", "budgets_text", "cell_name", "cells_table",
           "collapse_statement", "detectable_table", "factorial_json", "pairing_sentence", "reading_json",
           "readings_intro", "readings_table"]
