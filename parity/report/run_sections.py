"""The report's section on the runs that did not count in full: failed and skipped runs with why, and finished
runs missing a part the report reads. Listed, never dropped. The functions take the report's Document
(parity.report.markdown)."""

from __future__ import annotations

import pandas as pd

from . import prose
from .format import failure_reason
from .tables import MISSING, table


def not_run(doc) -> str:
    """The failed and skipped runs, then the finished runs with parts missing."""
    return "\n\n".join(filter(None, [unfinished(doc), incomplete(doc)]))


def incomplete(doc) -> str:
    """Finished runs missing a part the report reads: without history.jsonl a run is absent from the training
    curves and the matched-budget readings (which then average fewer seeds); without samples.png a baseline
    shows no reconstructions."""
    runs = doc.results.runs
    if "missing_parts" not in runs:
        return ""
    rows = []
    for r in runs.itertuples():
        parts = [p for p in (r.missing_parts if isinstance(r.missing_parts, list) else [])
                 if p != "samples.png" or r.role == "baseline"]  # only baselines' samples are shown
        if parts:
            rows.append({"matrix": f"`{r.matrix}`", "variant": r.variant, "seed": str(r.seed),
                         "missing": ", ".join(parts), "run folder": doc.folder_link(doc.shown(r.run_dir), r.run_dir)})
    return prose.PARTS_MISSING.format(table=table(pd.DataFrame(rows))) if rows else ""


def unfinished(doc) -> str:
    """Every run that did not finish, with its state and why; a skipped variant once, not per seed."""
    runs = doc.results.runs
    bad = runs[runs["state"] != "done"]
    if bad.empty:
        return prose.ALL_FINISHED
    rows, seen = [], set()
    for row in bad.itertuples():
        if row.state == "skipped":
            if (row.matrix, row.variant) in seen:
                continue  # a skipped variant has no runs: list it once, not per seed
            seen.add((row.matrix, row.variant))
        rows.append({"matrix": f"`{row.matrix}`", "variant": row.variant,
                     "seed": "all" if row.state == "skipped" else str(row.seed), "state": row.state,
                     "reason": failure_reason(row),
                     "run folder": doc.folder_link(doc.shown(row.run_dir), row.run_dir)
                     if row.state != "skipped" else MISSING})
    return prose.UNFINISHED.format(table=table(pd.DataFrame(rows)))


__all__ = ["incomplete", "not_run", "unfinished"]
