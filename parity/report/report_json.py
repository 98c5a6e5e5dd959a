"""The report's numbers for tools, written beside it as <report>.json (a stable contract: see the README): the
gap and baselines, each factorial's attribution, main effects, interactions and readings, every finished
run's PSNR and collapse, the collapse rates, the smallest detectable effects, the proxy's regime, the claims,
jitter robustness, the paper's cost and every effect. The functions take the report's Document
(parity.report.markdown); the order of the keys is part of the file, so each is added where it always was."""

from __future__ import annotations

import pandas as pd

from ..experiment.differences import GROUPS
from . import stats
from .answer import collapsed, gap
from .budget import regime_sentence
from .effects import PSNR_COLUMN
from .factorial_report import factorial_json
from .readings import ALL_RUNS, factorial_detectable, matrix_detectable
from .regime import bicubic_distance, proxy_regime
from .results import seed_mean
from .tables import as_float, missing


def summary(doc) -> dict:
    """The report's numbers for tools (a stable contract: see the README)."""
    interval = gap(doc)
    matrices = list(doc.results.matrices.itertuples())
    seeds = max((len(m.seeds) for m in matrices), default=0)
    out = {"report": doc.out.name, "preset": sorted({str(m.preset) for m in matrices}),
           "seeds": interval.n if interval is not None else seeds,
           "gap_db": interval.mean if interval is not None else None,
           "gap_ci_db": [interval.low, interval.high] if interval is not None else None,
           "baselines": baselines_json(doc), "references": doc.references or {},
           "regime": {side: regime_sentence(side, b["psnr"], doc.references) for side, b in
                      doc.baselines.items()} if doc.references else {},
           "matrices": [{"matrix": m.matrix, "kind": m.kind, "folder": doc.shown(m.dir),
                         "seeds": list(m.seeds), "groups": m.groups, "command": m.command} for m in matrices]}
    add_factorials(doc, out)
    out["collapsed_runs"] = [{k: (doc.shown(v) if k == "run_dir" else v) for k, v in r.items()}
                             for r in collapsed(doc)]
    out["runs"] = runs_json(doc)
    out["collapse"] = [{"matrix": name, "variant": r.variant, "finished": int(r.finished),
                        "collapsed": int(r.collapsed), "rate": as_float(r.rate), "ci_low": as_float(r.low),
                        "ci_high": as_float(r.high), "collapsed_seeds": list(r.collapsed_seeds)}
                       for name, rates in doc.rates.items() for r in rates.itertuples()]
    out["collapse_limit_db"] = {name: limit for name, limit in doc.limits.items()}
    out["mde_db"] = detectable_json(doc)
    matrix = doc.baselines_matrix()
    og = doc.baselines.get("original")
    out["proxy_regime"] = {"sides": proxy_regime(matrix.baselines) if matrix is not None else [],
                           "original_minus_bicubic_db": bicubic_distance(seed_mean(og["psnr"]) if og else None,
                                                                          doc.references)}
    out["claims"] = doc.claims
    out["jitter_robustness"] = doc.jitter
    out["paper_cost"] = doc.cost
    out["effects"] = effects_json(doc.effects)
    return out


def baselines_json(doc) -> dict:
    """Each side's baseline: its mean PSNR two ways, per-seed values, variant and run folder."""
    return {side: {"psnr_per_image_db": seed_mean(base["psnr"]), "psnr_headline_db": seed_mean(base["headline"]),
                   "psnr_form": base["form"], "per_seed_db": base["psnr"], "variant": base["variant"],
                   "run_folder": doc.shown(base["dir"])}
            for side, base in doc.baselines.items()}


def add_factorials(doc, out: dict) -> None:
    """Each factorial's entry (or why it has none) into ``out``; the first analysed one is also the attribution."""
    for name, (analysis, why) in doc.factorials.items():
        if analysis is None:
            out.setdefault("attribution_missing", {})[name] = why
            continue
        entry = factorial_entry(doc, name, analysis)
        out.setdefault("factorials", []).append(entry)
        if "attribution" not in out:  # the first factorial is the one the gap comes from
            out.update(attribution=entry["attribution"], attribution_matrix=name,
                       attribution_gap_db=entry["gap_db"], main_effects=entry["main_effects"],
                       interactions=entry["interactions"])


def factorial_entry(doc, name: str, analysis: stats.FactorialAnalysis) -> dict:
    """One factorial's shares, main effects, interactions, group leave-one-outs and readings."""
    entry = {
        "matrix": name, "gap_db": analysis.gap.mean, "seeds": len(analysis.seeds),
        "attribution": [{"group": g, "differences": list(GROUPS[g]), "share_db": iv.mean,
                         "ci_low_db": iv.low, "ci_high_db": iv.high,
                         "per_seed_db": analysis.shapley_per_seed[g]} for g, iv in analysis.shapley.items()],
        "main_effects": [{"group": g, "effect_db": iv.mean, "ci_low_db": iv.low, "ci_high_db": iv.high}
                         for g, iv in analysis.main_effects.items()],
        "interactions": [{"groups": [a, b], "effect_db": iv.mean, "ci_low_db": iv.low,
                          "ci_high_db": iv.high} for (a, b), iv in analysis.interactions.items()]}
    entry["group_leave_one_out"] = [
        {"group": g, "effect_db": iv.mean, "ci_low_db": iv.low, "ci_high_db": iv.high, "confidence": iv.level,
         "p_holm": as_float(iv.p), "per_seed_db": values} for g, (iv, values) in doc.group_loo[name].items()]
    if name in doc.readings and doc.readings[name] is not None:
        entry.update(factorial_json(doc.readings[name], doc.rates[name]))
    return entry


def runs_json(doc) -> list[dict]:
    """Every finished run's PSNR, and whether it collapsed."""
    out = []
    for m in doc.results.matrices.itertuples():
        runs = doc.matrix_runs(m.matrix)
        done = runs[runs["state"] == "done"]
        values = done[PSNR_COLUMN] if PSNR_COLUMN in done else [None] * len(done)
        limit = doc.limits[m.matrix]
        for variant, seed, psnr in zip(done["variant"], done["seed"], values):
            psnr = as_float(psnr)
            out.append({"matrix": m.matrix, "variant": variant, "seed": int(seed), "psnr_db": psnr,
                        "collapsed": None if limit is None or psnr is None else psnr < limit})
    return out


def detectable_json(doc) -> list[dict]:
    """Each matrix's smallest effect detected with 80% power, at its seeds and at 5 and 8."""
    out = []
    for m in doc.results.matrices.itertuples():
        if m.kind == "factorial":
            fr = doc.readings.get(m.matrix)
            analysis = fr.readings.get(ALL_RUNS) if fr is not None else None
            if analysis is None:
                continue
            found = factorial_detectable(analysis)
            out.append({"matrix": m.matrix, "kind": m.kind, "quantity": "share",
                        "detectable_db": {g: {str(k): as_float(v) for k, v in by.items()}
                                          for g, by in found["share"].items()}})
            continue
        found = matrix_detectable(doc.effects[doc.effects["matrix"] == m.matrix], len(m.seeds))
        if found is not None:
            out.append({"matrix": m.matrix, "kind": m.kind, "quantity": "effect", "family_size": found["m"],
                        "detectable_db": {str(k): as_float(v) for k, v in found["detectable"].items()}})
    return out


def effects_json(effects: pd.DataFrame) -> list[dict]:
    """Every effect row with its intervals, per-seed values and verdict."""
    return [
        {"matrix": r.matrix, "kind": r.kind, "difference": r.difference, "claimed": r.claimed,
         "metric": r.metric, "effect_db": as_float(r.mean), "ci_low_db": as_float(r.low),
         "ci_high_db": as_float(r.high), "p_holm": as_float(r.p_holm), "sim_low_db": as_float(r.sim_low),
         "sim_high_db": as_float(r.sim_high), "sim_confidence": as_float(r.sim_confidence), "n": int(r.n),
         "per_seed_db": r.values, "verdict": r.verdict, "level": r.level, "variant": r.variant,
         "reference": r.reference, "collapsed_seeds": r.collapsed_seeds if isinstance(r.collapsed_seeds, list) else [],
         "own_variance": bool(r.own_variance) if not missing(r.own_variance) else False}
        for r in effects.itertuples()]


__all__ = ["add_factorials", "baselines_json", "detectable_json", "effects_json", "factorial_entry", "runs_json",
           "summary"]
