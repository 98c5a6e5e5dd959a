"""One section per matrix: its effects (with family-wise intervals, verdicts and the smallest effect it detects;
a factorial's main effects, interactions, group leave-one-outs and readings), its results per variant, and its
plots and baseline samples at the end of the report. The section functions take the report's Document
(parity.report.markdown)."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..core.store import atomic_write_bytes
from ..experiment.kinds import KINDS
from . import prose, stats
from .effects import PSNR_COLUMN
from .factorial_report import (
    INTERVALS_WHY,
    cells_table,
    detectable_table,
    pairing_sentence,
    readings_intro,
    readings_table,
)
from .format import capitalised, count_text, interval_text, mean_pm_std, seeds_text
from .plots import plot_matrix
from .readings import matrix_detectable
from .results import variant_summary
from .tables import MISSING, ci, number, p_value, table


def matrix_section(doc, matrix) -> str:
    """A matrix's effects (or a factorial's tables) and its results per variant."""
    runs = doc.matrix_runs(matrix.matrix)
    summary = variant_summary(runs, matrix.variants)
    effects = doc.effects[doc.effects["matrix"] == matrix.matrix]
    source = prose.RUN_FOLDERS.format(folder=doc.shown(matrix.dir), seeds=", ".join(str(s) for s in matrix.seeds))
    if matrix.kind == "factorial":
        body = factorial_tables(doc, matrix)
    else:
        body = f"{capitalised(KINDS[matrix.kind].meaning)}.\n\n{effects_table(doc, effects, matrix)}"
        body += detectable_text(effects, matrix)
        if matrix.kind == "cumulative":
            body = prose.CUMULATIVE_ORDER + body
    return prose.MATRIX_SECTION.format(kind=matrix.kind, name=matrix.matrix, source=source, body=body,
                                       table=results_table(doc, summary))


def factorial_tables(doc, matrix) -> str:
    """A factorial's main effects, interactions and group leave-one-outs; its readings three ways and cells."""
    meaning = capitalised(KINDS["factorial"].meaning)
    analysis, why = doc.factorials.get(matrix.matrix, (None, "not analysed"))
    if analysis is None:
        return prose.NOT_ANALYSED.format(meaning=meaning, why=why)
    fr = doc.readings.get(matrix.matrix)
    mains, pairs, loo = factorial_rows(analysis, doc.group_loo[matrix.matrix])
    parts = [prose.FACTORIAL_INTRO.format(meaning=meaning, intervals_why=INTERVALS_WHY,
                                          pairing=pairing_sentence(fr) if fr else ""),
             table(pd.DataFrame(mains)), table(pd.DataFrame(pairs)), prose.GROUP_LEAVE_ONE_OUT,
             table(pd.DataFrame(loo))]
    if fr is None:
        return "\n\n".join(parts)
    parts += [prose.MAIN_EFFECTS_THREE_WAYS.format(intro=readings_intro(fr)), readings_table(fr, "main effect"),
              prose.LEAVE_ONE_OUTS_THREE_WAYS, readings_table(fr, "leave-one-out"), prose.CELLS,
              cells_table(fr, doc.rates[matrix.matrix]), detectable_table(fr)]
    return "\n\n".join(p for p in parts if p)


def factorial_rows(analysis: stats.FactorialAnalysis, group_loo: dict) -> tuple[list, list, list]:
    """The rows of a factorial's tables: main effects, pairwise interactions, group leave-one-outs."""
    main_p = stats.holm([iv.p for iv in analysis.main_effects.values()])
    inter_p = stats.holm([iv.p for iv in analysis.interactions.values()])
    mains = [{"group": f"`{g}`", "main effect (dB)": f"{iv.mean:+.2f}", "95% interval": ci(iv),
              "df": number(iv.df, 1), "p": p_value(iv.p), "p (Holm, 4 groups)": p_value(hp)}
             for (g, iv), hp in zip(analysis.main_effects.items(), main_p)]
    pairs = [{"groups": f"`{a}` x `{b}`", "interaction (dB)": f"{iv.mean:+.2f}", "95% interval": ci(iv),
              "df": number(iv.df, 1), "p": p_value(iv.p), f"p (Holm, {len(inter_p)} pairs)": p_value(hp)}
             for ((a, b), iv), hp in zip(analysis.interactions.items(), inter_p)]
    loo = [{"group left out": f"`{g}`", "PSNR(original) - PSNR(original without it) (dB)": f"{iv.mean:+.2f}",
            "Holm interval": f"{ci(iv)} ({iv.level:.3g})", "label": "measured" if iv.excludes_zero else
            stats.NOT_MEASURED, "per seed": ", ".join(f"{v:+.2f}" for v in values.values())}
           for g, (iv, values) in group_loo.items()]
    return mains, pairs, loo


def results_table(doc, summary: pd.DataFrame) -> str:
    """Each variant's runs done and mean ± std of PSNR (two ways), SSIM, parameters and throughput."""
    rows = []
    for row in summary.itertuples():
        form = f" ({row.psnr_form})" if row.psnr_form else ""
        skipped = " (skipped)" if row.skipped else ""
        rows.append({"variant": doc.folder_link(row.variant, row.run_dir),
                     "role": row.role, "runs done": f"{row.done}/{row.seeds}{skipped}",
                     "PSNR per image (dB)": mean_pm_std(row.psnr_mean, row.psnr_std, row.done),
                     "PSNR reported (dB)": mean_pm_std(row.headline_mean, row.headline_std, row.done) + form,
                     "SSIM": mean_pm_std(row.ssim_mean, row.ssim_std, row.done, digits=4),
                     "params": count_text(row.params_mean), "images/s": number(row.images_per_s_mean, 1)})
    return table(pd.DataFrame(rows))


def effects_table(doc, effects: pd.DataFrame, matrix) -> str:
    """A matrix's effects: each difference's effect, intervals, per-seed values, verdict and runs compared."""
    if effects.empty:
        return prose.NO_TOGGLE
    folders = {v["id"]: Path(matrix.dir) / v["id"] for v in matrix.variants}
    rows = []
    for row in effects.itertuples():
        item = {"step": number(row.step, 0)} if matrix.kind == "cumulative" else {}
        verdict = row.verdict
        if row.level and verdict == stats.MEASURED_UNCLAIMED:
            verdict += f", {row.level}"
        if row.metric != PSNR_COLUMN:
            verdict += f" (on `{row.metric}`)"
        item.update({"difference": f"`{row.difference}`", "claimed": row.claimed or MISSING,
                     "effect (dB)": number(row.mean, 2, signed=True), "Holm interval": interval_text(row),
                     "simultaneous interval": interval_text(row, simultaneous=True),
                     "seeds": seeds_text(row), "verdict": verdict, "compared": compared(doc, row, folders)})
        if effects["note"].astype(bool).any():  # only matrices whose variants carry notes get the column
            item["note"] = row.note or ""
        rows.append(item)
    return table(pd.DataFrame(rows))


def detectable_text(effects: pd.DataFrame, matrix) -> str:
    """The smallest effect the matrix detects with 80% power ('' when it has none to judge)."""
    found = matrix_detectable(effects, len(matrix.seeds))
    if found is None:
        return ""
    at = found["detectable"]
    more = ", ".join(f"{number(v, 2)} dB at {k}" for k, v in at.items() if k != found["seeds"])
    return prose.SENSITIVITY.format(own=number(at.get(found["seeds"]), 2), seeds=found["seeds"], more=more,
                                    family=found["m"], alpha=stats.ALPHA)


def compared(doc, row, folders: dict[str, Path]) -> str:
    """The runs an effect compares: its variant's folder, and its reference's when it has one."""
    variant = doc.folder_link(row.variant, folders[row.variant])
    if not isinstance(row.reference, str):
        return variant
    return f"{variant} vs {doc.folder_link(row.reference, folders[row.reference])}"


# ------------------------------------------------------------------------------------------ plots


def plots_section(doc) -> str:
    """Every matrix's charts and its baselines' samples."""
    parts = ["## Plots"]
    for matrix in doc.results.matrices.itertuples():
        parts.append(f"### `{matrix.matrix}`")
        parts += matrix_plots(doc, matrix)
        parts += samples(doc, matrix)
    return "\n\n".join(parts)


def matrix_plots(doc, matrix) -> list[str]:
    """A matrix's charts (drawn into the report's files folder), each with its caption."""
    runs, histories = doc.matrix_runs(matrix.matrix), doc.matrix_histories(matrix.matrix)
    effects = doc.effects[doc.effects["matrix"] == matrix.matrix]
    fr = doc.readings.get(matrix.matrix)
    matched = {m: b.budget for m, b in fr.budgets.items() if b.analysis is not None} if fr is not None else {}
    charts = plot_matrix(matrix, runs, histories, effects, doc.files, doc.slugs[matrix.matrix],
                         gflop_per_step=fr.gflop_per_step if fr is not None else None, matched=matched)
    if not charts:
        return [prose.NO_CHART]
    return [doc.figure(path, caption) for path, caption in charts]


def samples(doc, matrix) -> list[str]:
    """Copy each baseline's samples.png (its first finished seed) next to the report."""
    runs = doc.results.runs
    mine = runs[(runs["matrix"] == matrix.matrix) & (runs["role"] == "baseline") & (runs["state"] == "done")]
    out = []
    for variant, group in mine.groupby("variant", sort=False):
        found = group.dropna(subset=["samples"]).sort_values("seed")
        if found.empty:
            continue
        first = found.iloc[0]
        copy = doc.files / f"samples-{doc.slugs[matrix.matrix]}-{slug(variant)}-seed-{first['seed']}.png"
        atomic_write_bytes(copy, Path(first["samples"]).read_bytes())
        out.append(prose.SAMPLES.format(variant=variant, file=doc.file_link(copy),
                                        run=doc.link(doc.shown(first["run_dir"]), first["run_dir"])))
    return out


def slugs(names: list[str]) -> dict[str, str]:
    """File-name-safe, unique names for the matrices' plot files."""
    out, used = {}, set()
    for name in names:
        found, k = slug(name), 2
        while found in used:
            found, k = f"{slug(name)}-{k}", k + 1
        used.add(found)
        out[name] = found
    return out


def slug(text: str) -> str:
    """A file-name-safe form of ``text`` ('runs' when nothing is left of it)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "runs"


__all__ = ["compared", "detectable_text", "effects_table", "factorial_rows", "factorial_tables", "matrix_plots",
           "matrix_section", "plots_section", "results_table", "samples", "slug", "slugs"]
