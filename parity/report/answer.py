"""The report's first screen: each side's baseline runs and the gap between them, the runs that collapsed, the
attribution of the gap to groups of differences (and whether it holds across budgets), and the seed audit's
claims read through their groups where no single-toggle matrix ran. The section functions take the report's
Document (parity.report.markdown), which holds the numbers they read."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..experiment.differences import DIFFERENCES, GROUPS, NOT_IN_SEED
from ..experiment.kinds import TABLE
from . import prose, stats
from .budget import proxy_text, regime_text
from .collapse import COLLAPSE_DB, collapsed_runs
from .effects import PSNR_COLUMN, paired
from .factorial_report import INTERVALS_WHY, budgets_text, collapse_statement, readings_intro, readings_table
from .format import interval_text, mean_text, mean_with_ci
from .plots import attribution_waterfall
from .results import Results, done_values
from .seed_sections import claims_section
from .tables import MISSING, ci, missing, table

BASELINE_IDS = {side: tuple(dict.fromkeys(k.baseline for k in TABLE if k.side == side))
                for side in ("notebook", "original")}  # each side's reference runs, from the matrix kinds' table


def find_baselines(results: Results) -> dict[str, dict]:
    """Each side's baseline runs: {side: {psnr, headline: {seed: dB}, form, variant, dir, runs,
    notebook_eval_batch}}. The factorial's corners come first (its full cell is the original but for the
    evaluation-side differences, which do not change what is trained or which images are scored), then
    the baselines of the other matrices."""
    out = {}
    for m in sorted(results.matrices.itertuples(), key=lambda m: m.kind != "factorial"):
        runs = results.runs[results.runs["matrix"] == m.matrix]
        candidates = {side: [v for v in m.variants if v["id"] in ids] for side, ids in BASELINE_IDS.items()}
        if m.kind == "factorial" and m.groups:
            candidates["original"] = [v for v in m.variants if len(v.get("groups") or []) == len(m.groups)]
        batch = ((m.baselines or {}).get("notebook") or {}).get("eval", {}).get("batch_size", 32)
        for side, found in candidates.items():
            if side in out or not found:
                continue
            values = done_values(runs, found[0]["id"], PSNR_COLUMN)
            if not values:
                continue
            forms = runs[(runs["variant"] == found[0]["id"]) & (runs["state"] == "done")]
            out[side] = {"psnr": values, "headline": done_values(runs, found[0]["id"], "test.psnr_headline"),
                         "form": next(iter(forms["test.psnr_form"].dropna()), None)
                         if "test.psnr_form" in forms else None,
                         "variant": found[0]["id"], "dir": Path(m.dir) / found[0]["id"], "runs": runs,
                         "notebook_eval_batch": int(batch)}
    return out


def answer_section(doc) -> str:
    """The first screen: the gap, the regime against trivial predictors, the attribution."""
    parts = [prose.ANSWER_TITLE, gap_text(doc)]
    parts += [collapse_statement(name, fr, doc.limits[name]) for name, fr in doc.readings.items()]
    parts += [regime_text(doc), claims_section(doc.claims) or group_claims(doc), proxy_text(doc),
              collapsed_text(doc), attribution(doc)]
    return "\n\n".join(p for p in parts if p)


# ------------------------------------------------------------------------------------------ the gap


def gap(doc) -> stats.Interval | None:
    """Original minus notebook; from a factorial whose corners are the baselines, with the Welch interval of
    its two corner cells; else paired by seed."""
    nb, og = doc.baselines.get("notebook"), doc.baselines.get("original")
    if not nb or not og:
        return None
    analysis = gap_source(doc)
    if analysis is not None:
        return analysis.gap
    values = paired(og["psnr"], nb["psnr"], 1)
    return stats.t_interval(values) if values else None


def gap_source(doc) -> stats.FactorialAnalysis | None:
    """The factorial analysis whose corners are both baselines (None when the gap comes from elsewhere)."""
    nb, og = doc.baselines.get("notebook"), doc.baselines.get("original")
    for name, (analysis, _) in doc.factorials.items():
        matrix = doc.matrix(name)
        if analysis is not None and set(analysis.groups) == set(matrix.groups or ()) and \
                Path(nb["dir"]).parent == Path(matrix.dir) == Path(og["dir"]).parent:
            return analysis
    return None


def gap_origin(doc, interval: stats.Interval) -> str:
    """Where the gap's interval comes from, when it is the factorial's corner cells ('' when paired by seed)."""
    return "" if gap_source(doc) is None else prose.GAP_FROM_CORNERS.format(df=interval.df)


def gap_text(doc) -> str:
    """The gap's paragraph: its interval, both baselines' PSNR two ways and their run folders."""
    interval = gap(doc)
    if interval is None:
        return prose.NO_GAP
    nb, og = doc.baselines["notebook"], doc.baselines["original"]
    return prose.GAP.format(
        mean=interval.mean, n=interval.n, plural="s" if interval.n != 1 else "", interval=ci(interval),
        origin=gap_origin(doc, interval), original=mean_with_ci(og["psnr"]), notebook=mean_with_ci(nb["psnr"]),
        original_reported=mean_text(og["headline"]), notebook_reported=mean_text(nb["headline"]),
        notebook_run=doc.folder_link(nb["variant"], nb["dir"]), original_run=doc.folder_link(og["variant"], og["dir"]))


# ------------------------------------------------------------------------------------------ collapsed runs


def collapsed(doc) -> list[dict]:
    """Finished runs that ended on the constant-colour plateau (within COLLAPSE_DB of one constant colour):
    their model outputs about one colour, so a cell holding them measures a training failure."""
    return [r for m in doc.results.matrices.itertuples()
            for r in collapsed_runs(doc.matrix_runs(m.matrix), doc.limits[m.matrix])]


def collapsed_text(doc) -> str:
    """The collapsed runs by variant, with each one's collapse rate ('' when none collapsed)."""
    rows = collapsed(doc)
    if not rows:
        return ""
    by_variant: dict[tuple, list] = {}
    for r in rows:
        by_variant.setdefault((r["matrix"], r["variant"]), []).append(r)
    seeds = {(m.matrix, v["id"]): len(m.seeds) for m in doc.results.matrices.itertuples() for v in m.variants}
    listed = "; ".join(f"`{v}` ({len(rs)} of {seeds.get((m, v), '?')} seeds, "
                       f"{min(r['psnr_db'] for r in rs):.2f} dB)"
                       for (m, v), rs in by_variant.items())
    return prose.COLLAPSED_RUNS.format(count=len(rows), limit=COLLAPSE_DB,
                                       constant=doc.references["constant_colour_db"], listed=listed,
                                       table=rates_table(doc, by_variant))


def rates_table(doc, collapsed: dict) -> str:
    """The collapse rate of each (matrix, variant) in ``collapsed``, with its exact 95% interval."""
    rows = []
    for (matrix, variant) in collapsed:
        rates = doc.rates[matrix]
        r = rates[rates["variant"] == variant].iloc[0]
        rows.append({"matrix": f"`{matrix}`", "variant": f"`{variant}`", "collapsed": f"{r.collapsed}/{r.finished}",
                     "rate": f"{r.rate:.2f}", "95% interval": f"[{r.low:.2f}, {r.high:.2f}]"})
    return table(pd.DataFrame(rows))


# ------------------------------------------------------------------------------------------ attribution


def attribution(doc) -> str:
    """Each analysed factorial's Shapley shares of the gap, read three ways, and their stability across them."""
    done = {k: v for k, v in doc.factorials.items() if v[0] is not None}
    if not doc.factorials:
        return prose.NO_FACTORIAL
    if not done:
        why = "; ".join(f"`{k}`: {v[1]}" for k, v in doc.factorials.items())
        return prose.ATTRIBUTION_PENDING.format(why=why)
    parts = []
    for name, (analysis, _) in done.items():
        parts.append(attribution_paragraph(doc, name, analysis, second=bool(parts)))
        fr = doc.readings.get(name)
        if fr is not None:
            parts.append(prose.SHARES_THREE_WAYS.format(intro=readings_intro(fr), table=readings_table(fr, "share")))
            parts.append(budgets_text(fr))
    if len(done) > 1:
        parts.append(stability(done))
    return "\n\n".join(parts)


def attribution_paragraph(doc, name: str, analysis: stats.FactorialAnalysis, second: bool) -> str:
    """One factorial's shares: the paragraph, the table and the waterfall chart."""
    matrix = doc.matrix(name)
    held = [g for g in (matrix.groups or []) if g not in analysis.groups]
    sub = prose.SUB_DESIGN.format(held=", ".join(held), added=" + ".join(analysis.groups)) if held else ""
    chart = attribution_waterfall(
        [(g, analysis.shapley[g].mean, analysis.shapley[g].low - analysis.shapley[g].mean,
          analysis.shapley[g].high - analysis.shapley[g].mean, analysis.shapley_per_seed[g])
         for g in analysis.groups], analysis.cell_means[frozenset()],
        doc.files / f"attribution-{doc.slugs[name]}.png",
        f"Attribution of the gap ({name}, {len(analysis.seeds)} seeds)")
    picture = f"\n\n![attribution waterfall]({doc.file_link(chart)})" if chart else ""
    return prose.ATTRIBUTION.format(
        second=prose.SECOND_BUDGET if second else "", name=name, seeds=len(analysis.seeds),
        cells=2 ** len(analysis.groups), folder=doc.folder_link(doc.shown(matrix.dir), matrix.dir),
        intervals_why=INTERVALS_WHY, sub_design=sub, table=attribution_table(analysis), picture=picture)


def attribution_table(analysis: stats.FactorialAnalysis) -> str:
    """Each group's share with its interval, per-seed values and main effect; last, their sum: the gap."""
    rows = []
    for group in analysis.groups:
        share = analysis.shapley[group]
        rows.append({"group": f"`{group}`", "differences": ", ".join(GROUPS[group]),
                     "share of the gap (dB)": f"{share.mean:+.2f}", "95% interval": ci(share),
                     "per seed": ", ".join(f"{v:+.2f}" for v in analysis.shapley_per_seed[group].values()),
                     "main effect (dB)": f"{analysis.main_effects[group].mean:+.2f} "
                                         f"{ci(analysis.main_effects[group])}"})
    gap = analysis.gap
    rows.append({"group": "**sum = gap**", "differences": "", "share of the gap (dB)": f"**{gap.mean:+.2f}**",
                 "95% interval": ci(gap), "per seed": ", ".join(f"{v:+.2f}" for v in analysis.gap_per_seed.values()),
                 "main effect (dB)": ""})
    return table(pd.DataFrame(rows))


def stability(done: dict) -> str:
    """The shares of every factorial side by side: whether the attribution holds across budgets."""
    names = list(done)
    groups = list(dict.fromkeys(g for analysis, _ in done.values() for g in analysis.groups))
    rows = []
    for group in groups:
        row = {"group": f"`{group}`"}
        for name in names:
            analysis = done[name][0]
            share = analysis.shapley.get(group)
            row[f"`{name}` share (dB)"] = MISSING if share is None else f"{share.mean:+.2f} {ci(share)}"
            row[f"`{name}` % of gap"] = MISSING if share is None or not analysis.gap.mean else \
                f"{100 * share.mean / analysis.gap.mean:.0f}%"
        rows.append(row)
    return prose.STABILITY.format(table=table(pd.DataFrame(rows)))


# ------------------------------------------------------------------------------------------ claims by group


def group_claims(doc) -> str:
    """Where no single-toggle matrix ran: each claim of the seed audit against its group's leave-one-out and
    share from the factorial."""
    done = [(name, a) for name, (a, _) in doc.factorials.items() if a is not None]
    if not done:
        return ""
    name, analysis = done[0]
    loo = {g: iv for g, (iv, _) in doc.group_loo[name].items()}
    own = {r.difference: r for r in doc.effects.itertuples() if r.kind == "leave-one-out"}
    rows = [{"difference": f"`{diff.id}`", "seed audit": diff.claimed_severity,
             "what this report says": group_claim(diff.id, own, loo, analysis)}
            for diff in DIFFERENCES if diff.claimed_severity != NOT_IN_SEED]
    return prose.GROUP_CLAIMS.format(table=table(pd.DataFrame(rows)))


def group_claim(difference: str, own: dict, loo: dict, analysis: stats.FactorialAnalysis) -> str:
    """What the report says of one difference: its own leave-one-out, else its group's, else nothing."""
    group = next((g for g, ids in GROUPS.items() if difference in ids), None)
    if difference in own and not missing(own[difference].mean):
        r = own[difference]
        return prose.OWN_LEAVE_ONE_OUT.format(mean=r.mean, interval=interval_text(r), verdict=r.verdict)
    if group in loo:
        iv = loo[group]
        return prose.GROUP_ONLY.format(group=group, mean=iv.mean, interval=ci(iv),
                                       label="measured" if iv.excludes_zero else "not measured", groups=len(loo),
                                       level=iv.level, share=analysis.shapley[group].mean)
    return prose.UNTESTABLE


__all__ = ["BASELINE_IDS", "answer_section", "attribution", "attribution_paragraph", "attribution_table", "collapsed",
           "collapsed_text", "find_baselines", "gap", "gap_origin", "gap_source", "gap_text", "group_claim",
           "group_claims", "rates_table", "stability"]
