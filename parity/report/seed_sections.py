"""The report's sections on the seed audit's own terms: its claims one by one (``claims``), jitter in training
(``jitter``) and what the `paper` preset would cost to test its headline figures (``cost``). Each function
takes the numbers already computed and returns markdown; the prose lives here, the arithmetic there."""

from __future__ import annotations

import pandas as pd

from .tables import number, table

CLAIMS_INTRO = (
    "**The seed audit, claim by claim.** Each claim against the effect measured in each direction it was run: "
    "the difference removed from the original (leave-one-out), added to the notebook (one-at-a-time), and jitter "
    "in training added to either. A positive effect means the original's value (or jitter) gives the higher "
    "PSNR. Intervals are simultaneous over their matrix's effects (Bonferroni, the ends a severity word reads); "
    "an effect none of whose runs collapsed shares the matrix's pooled seed variance, one with a collapsed run "
    "keeps its own. Claimed bands: MASSIVE, CRITICAL and SEVERE mean large (>= 1 dB), MODERATE 0.3-1 dB, MINOR "
    "< 0.3 dB. *Overstated* also where nothing was measured but the whole interval lies below the claimed band.")

AT_THIS_BUDGET = (
    "**What holds only at this budget.** Every verdict above is read at the proxy (its regime above: a fraction of "
    "the paper's steps, width and LP tokens scaled down); none of them is a claim about the paper's protocol, "
    "whose cost is given below. Where the two directions disagree, the difference matters only next to others "
    "(an interaction), which one-direction audits cannot see.")

JITTER_INTRO = (
    "Runs trained with and without coordinate jitter (std {train_std}), each scored at every test jitter std on "
    "the same images (the notebook's `generate_with_jitter`: grid plus Gaussian noise, clamped to [0, 1], for the "
    "encoder's view and the decoder's coordinates alike). *Drop*: PSNR at the std minus PSNR at 0, paired by seed "
    "(95% t interval). *With minus without* (paired by seed; at std 0 it is what jitter in training costs a clean "
    "reconstruction) and *change in drop* (what jitter in training changes in the drop; positive: it keeps more "
    "PSNR) carry Bonferroni intervals over the stds (level in brackets), since the robustness claim is read at "
    "all of them at once.")


def reading_cell(reading: dict) -> str:
    """One direction of a claim in one cell: effect [simultaneous interval] verdict; collapse named."""
    if not reading["seeds"]:
        return reading["verdict"]
    text = f"{number(reading['effect_db'], 2, True)}"
    if reading["ci_low_db"] is not None:
        text += f" [{reading['ci_low_db']:+.2f}, {reading['ci_high_db']:+.2f}]"
    text += f" ({reading['seeds']} seeds): **{reading['claim_verdict']}**"
    if reading["collapsed_seeds"]:
        seeds = ", ".join(map(str, reading["collapsed_seeds"]))
        without = reading.get("without_collapsed_db")
        text += (f"; seed{'s' if len(reading['collapsed_seeds']) > 1 else ''} {seeds} collapsed"
                 + (f", without {'them' if len(reading['collapsed_seeds']) > 1 else 'it'} "
                    f"{without:+.2f} ({reading['without_collapsed_seeds']} seed"
                    f"{'s' if reading['without_collapsed_seeds'] != 1 else ''})" if without is not None else ""))
    return text


def claims_section(rows: list[dict]) -> str:
    if not any(r["readings"] for r in rows):
        return ""
    table_rows = []
    for row in rows:
        by = {}
        for reading in row["readings"]:
            column = "from the original" if "original" in reading["direction"] else "onto the notebook"
            by[column] = (f"{reading['direction']}: " if reading["direction"] == "added to the original" else "") \
                + reading_cell(reading)
        table_rows.append({"difference": f"`{row['difference']}`",
                           "seed audit": f"{row['seed_audit']}: {row['claim']}" if row["claim"] else row["seed_audit"],
                           "removed from the original": by.get("from the original", "not run"),
                           "added to the notebook": by.get("onto the notebook", "not run"),
                           "together": row["summary"]})
    parts = [CLAIMS_INTRO, table(pd.DataFrame(table_rows))]
    convergence = [(row, r) for row in rows for r in row["readings"] if r.get("convergence")]
    if convergence:
        lines = []
        for _row, reading in convergence:
            said = "; ".join(
                f"at {c['budget']:,.0f} {c['measure']} {number(c['effect_db'], 2, True)}"
                f" [{number(c['ci_low_db'], 2, True)}, {number(c['ci_high_db'], 2, True)}] ({c['seeds']} seeds)"
                for c in reading["convergence"])
            lines.append(f"{reading['direction']} (`{reading['variant']}` vs `{reading['reference']}`): {said}")
        parts.append("**\"Slower convergence\" with sampled pixels**, read before the end of the budget: at half "
                     "the steps, and at the training FLOPs the cheaper run spends in all its steps (each run read "
                     "at its last evaluation at or before the budget; 95% t intervals, not adjusted): "
                     + "; ".join(lines) + ".")
    split = [r["difference"] for r in rows if r["summary"].startswith("mixed")]
    collapsed = [f"`{r['difference']}` ({x['direction']})" for r in rows for x in r["readings"] if x["collapsed_seeds"]]
    extra = []
    if split:
        extra.append("The directions disagree for " + ", ".join(f"`{d}`" for d in split) + ".")
    if collapsed:
        extra.append("Collapsed runs enter " + ", ".join(collapsed) + ": there the verdict reads an interval "
                     "with the collapsed seeds in it, and the value without them is given beside it.")
    parts.append(" ".join([AT_THIS_BUDGET, *extra]))
    return "\n\n".join(parts)


def _value(v: dict | None) -> str:
    if not v or v["mean_db"] is None:
        return "—"
    if v["ci_low_db"] is None:
        return f"{v['mean_db']:+.2f}"
    return f"{v['mean_db']:+.2f} [{v['ci_low_db']:+.2f}, {v['ci_high_db']:+.2f}]"


def _level(v: dict | None) -> str:
    if not v or v["mean_db"] is None:
        return "—"
    return f"{v['mean_db']:.2f}" if v["ci_low_db"] is None else \
        f"{v['mean_db']:.2f} [{v['ci_low_db']:.2f}, {v['ci_high_db']:.2f}]"


def jitter_table(pair: dict, rows: list[dict]) -> str:
    out = []
    for r in rows:
        out.append({"test jitter std": f"{r['std']:g}", f"`{pair['with']}` (dB)": _level(r["psnr_with"]),
                    f"`{pair['without']}` (dB)": _level(r["psnr_without"]),
                    "with minus without": _value(r.get("change")),
                    "drop, with jitter": _value(r["drop_with"]), "drop, without": _value(r["drop_without"]),
                    "change in drop": _value(r.get("drop_change"))})
    return table(pd.DataFrame(out))


def jitter_section(pairs: list[dict], train_std: float, chart: str | None) -> str:
    if not pairs:
        return ""
    parts = ["## Jitter in training, as the seed audit means it", JITTER_INTRO.format(train_std=train_std)]
    for pair in pairs:
        parts.append(f"**`{pair['with']}` against `{pair['without']}`** (`{pair['matrix']}`, seeds "
                     f"{', '.join(map(str, pair['seeds']))}):\n\n{jitter_table(pair, pair['stds'])}")
        if pair["collapsed_seeds"]:
            seeds = ", ".join(map(str, pair["collapsed_seeds"]))
            parts.append(f"Seed {seeds} collapsed in this pair: a model that outputs one colour loses nothing to "
                         "jitter and would pass for robust. Without the collapsed seeds:\n\n"
                         + jitter_table(pair, pair["stds_without_collapsed"]))
    if chart:
        parts.append(chart)
    return "\n\n".join(parts)


def cost_section(cost: dict | None, seeds: int) -> str:
    if cost is None:
        return ("## What the `paper` preset would cost\n\nNo GPU step has been measured (`parity bench gpu` writes "
                "`reports/gpu.md`), so the paper-scale cost of this study cannot be priced.")
    rows = [{"matrix": f"`{m['matrix']}`", "runs": f"{m['runs']:,}", "optimiser steps": f"{m['steps']:,}",
             "GPU-hours": f"{m['gpu_hours_low']:,.0f}" if round(m["gpu_hours_low"]) == round(m["gpu_hours_high"])
             else f"{m['gpu_hours_low']:,.0f}-{m['gpu_hours_high']:,.0f}"} for m in cost["per_matrix"]]
    steps = ", ".join(f"{side} {s:.4f} s" for side, s in sorted(cost["seconds_per_step"].items()))
    return ("## What the `paper` preset would cost\n\n"
            f"This study's matrices and seeds rebuilt from the sources' full protocols (`--preset paper`), each run's "
            f"steps from its own configuration, priced from one training step measured on an {cost['device']} "
            f"({steps} a step at the sources' batches; `{cost['source']}`). A baseline run is priced at its own "
            "step; any other variant mixes the two models and is priced as a range (its images at the cheaper and at "
            f"the dearer baseline's seconds per image).\n\n{table(pd.DataFrame(rows))}\n\n"
            f"In all {cost['runs']:,} runs, {cost['gpu_hours_low']:,.0f}-{cost['gpu_hours_high']:,.0f} GPU-hours. "
            f"Testing only the headline figures (the notebook's 20-25 dB against the original's 28-32) takes the two "
            f"baselines: {cost['baselines_gpu_hours_per_seed']:.1f} GPU-hours a seed, "
            f"{seeds * cost['baselines_gpu_hours_per_seed']:.1f} at {seeds} seeds.")


__all__ = ["AT_THIS_BUDGET", "CLAIMS_INTRO", "JITTER_INTRO", "claims_section", "cost_section", "jitter_section",
           "jitter_table", "reading_cell"]
