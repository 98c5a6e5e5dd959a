"""The report's sections on the registry's differences outside the matrices: the evaluation-side differences
(computed from the baselines' stored per-image values), how to read the effects (the kinds of matrix and the
rule), the improvements with what they measured, and the original's defects. The section functions take the
report's Document (parity.report.markdown)."""

from __future__ import annotations

import pandas as pd

from ..experiment.differences import DEFECTS, IMPROVEMENTS
from ..experiment.kinds import KINDS
from . import prose, stats
from .effects import aggregation_effect
from .format import interval_text
from .tables import MISSING, ci, number, table


def evaluation_side(doc) -> str:
    """Differences that change what is scored, computed from the stored per-image values."""
    rows = []
    for side in ("original", "notebook"):
        base = doc.baselines.get(side)
        if not base:
            continue
        batch = base["notebook_eval_batch"]
        values = aggregation_effect(base["runs"], base["variant"], batch)
        if values:
            interval = stats.t_interval(values)
            rows.append({"difference": "`psnr-aggregation`", "on": f"{side} baseline",
                         "effect (dB)": f"{interval.mean:+.2f}", "95% interval": ci(interval),
                         "what": prose.AGGREGATION_EFFECT.format(batch=batch)})
    shown = table(pd.DataFrame(rows)) if rows else prose.NO_PER_IMAGE_VALUES
    return prose.EVALUATION_SIDE.format(table=shown, data_split=prose.DATA_SPLIT)


def reading(doc) -> str:
    """What each kind of matrix in the report measures, the rule its labels follow and what the rule delivers."""
    meanings = "\n".join(f"- **{kind.id}**: {kind.meaning}." for kind in KINDS.values()
                         if kind.id in set(doc.results.matrices["kind"]))
    return prose.HOW_TO_READ.format(meanings=meanings, rule=stats.rule_text(), coverage=prose.COVERAGE_TEXT)


def improvements(doc) -> str:
    """Each improvement, what it sets and requires, and what it measured in the matrices that ran it."""
    rows = []
    measured = doc.effects[doc.effects["kind"] == "improvements"]
    for imp in IMPROVEMENTS:
        mine = measured[measured["difference"] == imp.id]
        rows.append({"fix": f"`{imp.id}`", "what it changes": imp.title,
                     "sets": ", ".join(f"`{k}={v}`" for k, v in imp.sets.items()),
                     "requires": ", ".join(f"`{k}={v}`" for k, v in imp.requires.items()) or MISSING,
                     "addresses": imp.fixes, "seed claim": imp.claimed_severity,
                     "measured (dB)": "; ".join(f"{number(r.mean, 2, signed=True)} {interval_text(r)} → "
                                                f"{r.verdict} (`{r.matrix}`)"
                                                for r in mine.itertuples()) or "not run"})
    return prose.IMPROVEMENTS_SECTION.format(table=table(pd.DataFrame(rows)))


def defects() -> str:
    """The original's defects and the toggle that fixes each."""
    rows = [{"defect": name, "what": what, "fixed by": f"`{fix}`" if fix else prose.NO_FIX}
            for name, what, fix in DEFECTS]
    return prose.DEFECTS_SECTION.format(table=table(pd.DataFrame(rows)))


__all__ = ["defects", "evaluation_side", "improvements", "reading"]
