"""The markdown report of a RUNS_DIR, answer first: the gap between the baselines, the regime they are in
against trivial predictors, the attribution of the gap to groups of differences; then the evaluation-side
differences, each matrix's effects with family-wise intervals and verdicts on the seed audit, the setting,
improvements, defects, what did not run, plots, and what the budget cannot show. Every table names the run
folders its numbers come from (relative links). Beside it, <report>.json holds the same numbers for tools."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..core.store import atomic_write_bytes, atomic_write_text
from ..spec.config import notebook_baseline, original_baseline
from ..spec.differences import DEFECTS, DIFFERENCES, GROUPS, IMPROVEMENTS, NOT_IN_SEED
from ..spec.kinds import KINDS, TABLE
from . import stats
from .effects import PSNR_COLUMN, aggregation_effect, compute_effects, factorial, group_leave_one_out, paired
from .plots import attribution_waterfall, plot_matrix
from .results import Results, done_values, load_results, variant_summary

# The sources' data sizes: torchvision's official CIFAR-10 split (notebook) and the original's
# numbered-JPEG index ranges (train 1-49999, test 55000-59999).
SOURCE_TRAIN_IMAGES = {"official": 50_000, "numbered": 49_999}
SOURCE_TEST_IMAGES = {"official": 10_000, "numbered": 5_000}
MISSING = "—"
COLLAPSE_DB = 0.5  # a run within this of the constant-colour predictor has collapsed to one colour


# ------------------------------------------------------------------------------------------ entry point


def write_report(runs_dir, out=None, groups: tuple[str, ...] | None = None) -> Path:
    """Write the report of ``runs_dir`` to ``out`` (default <runs_dir>/report.md, beside the runs), plots and
    sample images to the sibling folder <out stem>_files/, and the machine-readable summary to <out>.json.
    ``groups``: attribute over these groups of a factorial only (a sub-design, the rest at the notebook's values)."""
    runs_dir = Path(runs_dir)
    results = load_results(runs_dir)
    default_out = out is None
    out = (runs_dir / "report.md" if default_out else Path(out)).resolve()
    files = out.parent / f"{out.stem}_files"
    effects = compute_effects(results)
    doc = Document(results, effects, out, files, regenerate=_regenerate(results, runs_dir, out, default_out, groups),
                   groups=groups)
    text = doc.render()
    atomic_write_text(out.with_suffix(".json"), json.dumps(doc.summary(), indent=1, default=_json_default) + "\n")
    atomic_write_text(out, text)
    return out


def _json_default(value):
    if isinstance(value, Path):
        return value.as_posix()
    if isinstance(value, float) and math.isnan(value):
        return None
    return str(value)


class Document:
    """Builds the report's sections; holds what they share (results, effects, where files go)."""

    def __init__(self, results: Results, effects: pd.DataFrame, out: Path, files: Path, regenerate: list[str],
                 groups: tuple[str, ...] | None = None):
        self.results, self.effects, self.out, self.files = results, effects, out, files
        self.regenerate = regenerate
        self.slugs = _slugs(list(results.matrices["matrix"]))
        self.baselines = find_baselines(results)
        self.references = _first(m.references for m in results.matrices.itertuples() if m.references)
        self.factorials = {m.matrix: factorial(m, results.runs[results.runs["matrix"] == m.matrix], groups)
                           for m in results.matrices.itertuples() if m.kind == "factorial"}
        self.group_loo = {name: group_leave_one_out(self._matrix(name), results.runs[results.runs["matrix"] == name],
                                                    analysis)
                          for name, (analysis, _) in self.factorials.items() if analysis is not None}

    def render(self) -> str:
        sections = [self.header(), self.answer(), self.evaluation_side(), *self.matrix_sections(), self.setting(),
                    self.reading(), self.improvements(), self.defects(), self.not_run(), self.plots(), self.budget()]
        return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"

    # ---------------------------------------------------------------------------------- links

    def link(self, text: str, target: Path, folder: bool = True) -> str:
        """A markdown link relative to the report (works on GitHub and locally)."""
        relative = Path(os.path.relpath(Path(target).resolve(), self.out.parent)).as_posix()
        return f"[{_cell(text)}]({quote(relative + ('/' if folder else ''), safe='/._-~+')})"

    def folder_link(self, text: str, target: Path | None) -> str:
        """A link when the folder exists (skipped and never-started variants have none)."""
        if target is None or not Path(target).is_dir():
            return _cell(text)
        return self.link(text, target)

    def shown(self, target: Path) -> str:
        """A run folder as the reader should find it: relative to the folder that holds RUNS_DIR."""
        return Path(os.path.relpath(Path(target).resolve(), self.results.root.resolve().parent)).as_posix()

    # ---------------------------------------------------------------------------------- top

    def header(self) -> str:
        name = self.results.root.resolve().name
        commands = "\n".join(self.regenerate)
        return (f"# Parity report: {name}\n\n"
                "Which differences between the notebook and the original MAMBA-GINR cost how many dB of PSNR, "
                "measured, against the seed audit's claims (`SEED-notebook-vs-original.md`).\n\n"
                f"Regenerate (runs resume; finished runs are kept):\n\n```bash\n{commands}\n```")

    def answer(self) -> str:
        """The first screen: the gap, the regime against trivial predictors, the attribution."""
        parts = ["## The answer at this budget"]
        gap = self.gap()
        if gap is None:
            parts.append("No seed has finished both baselines yet: there is no gap to report.")
        else:
            nb, og = self.baselines["notebook"], self.baselines["original"]
            parts.append(
                f"**Gap: {gap.mean:+.2f} dB** (original minus notebook, mean per-image PSNR on the same test images, "
                f"paired over {gap.n} seed{'s' if gap.n != 1 else ''}; 95% interval {_ci(gap)}"
                f"{f' from the factorial residual, df {gap.df}' if self.gap_source() is not None else ''}). "
                f"Original {_mean_ci(og['psnr'])} dB, notebook {_mean_ci(nb['psnr'])} dB per image; as each source "
                f"reports it (its own aggregation): original {_mean_of(og['headline'])} dB, notebook "
                f"{_mean_of(nb['headline'])} dB. Baseline runs: {self.folder_link(nb['variant'], nb['dir'])} "
                f"(notebook), {self.folder_link(og['variant'], og['dir'])} (original).")
        parts.append(self.regime())
        parts.append(self.collapsed_text())
        parts.append(self.attribution())
        parts.append(self.seed_claims())
        return "\n\n".join(p for p in parts if p)

    def gap(self) -> stats.Interval | None:
        """Original minus notebook, paired by seed; from a factorial whose corners are the baselines, with the
        interval of its cells x seeds residual (many more degrees of freedom than the seeds alone)."""
        nb, og = self.baselines.get("notebook"), self.baselines.get("original")
        if not nb or not og:
            return None
        analysis = self.gap_source()
        if analysis is not None:
            return analysis.gap
        values = paired(og["psnr"], nb["psnr"], 1)
        return stats.t_interval(values) if values else None

    def gap_source(self) -> stats.FactorialAnalysis | None:
        """The factorial analysis whose corners are both baselines (None when the gap comes from elsewhere)."""
        nb, og = self.baselines.get("notebook"), self.baselines.get("original")
        for name, (analysis, _) in self.factorials.items():
            matrix = self._matrix(name)
            if analysis is not None and set(analysis.groups) == set(matrix.groups or ()) and \
                    Path(nb["dir"]).parent == Path(matrix.dir) == Path(og["dir"]).parent:
                return analysis
        return None

    def regime(self) -> str:
        refs = self.references
        if not refs:
            return "Reference levels: not recorded for these matrices (made before `parity ablate` stored them)."
        rows = [{"predictor": "one constant colour (the training set's mean)", "PSNR (dB, per image)":
                 f"{refs['constant_colour_db']:.2f}"},
                {"predictor": "each image's own mean colour", "PSNR (dB, per image)":
                 f"{refs['per_image_mean_colour_db']:.2f}"}]
        if refs.get("bicubic_x2_db") is not None:
            rows.append({"predictor": "bicubic upsampling of a 2x area-downsampled image (super-resolution "
                                      "reference)", "PSNR (dB, per image)": f"{refs['bicubic_x2_db']:.2f}"})
        statement = " ".join(regime_sentence(side, self.baselines[side]["psnr"], refs)
                             for side in ("notebook", "original") if self.baselines.get(side))
        return (f"**Regime.** {statement}\n\nTrivial predictors on the same {refs.get('images', '?')} test "
                f"images:\n\n{_table(pd.DataFrame(rows))}")

    def collapsed(self) -> list[dict]:
        """Finished runs that ended on the constant-colour plateau (within COLLAPSE_DB of one constant colour):
        their model outputs about one colour, so a cell holding them measures a training failure."""
        refs = self.references
        if not refs:
            return []
        runs = self.results.runs
        done = runs[runs["state"] == "done"]
        if PSNR_COLUMN not in done:
            return []
        limit = refs["constant_colour_db"] + COLLAPSE_DB
        low = done[done[PSNR_COLUMN] < limit]
        return [{"matrix": r["matrix"], "variant": r["variant"], "seed": int(r["seed"]), "psnr_db": float(r[PSNR_COLUMN]),
                 "run_dir": r["run_dir"]} for _, r in low.iterrows()]

    def collapsed_text(self) -> str:
        rows = self.collapsed()
        if not rows:
            return ""
        by_variant: dict[tuple, list] = {}
        for r in rows:
            by_variant.setdefault((r["matrix"], r["variant"]), []).append(r)
        seeds = {(m.matrix, v["id"]): len(m.seeds) for m in self.results.matrices.itertuples() for v in m.variants}
        listed = "; ".join(f"`{v}` ({len(rs)} of {seeds.get((m, v), '?')} seeds, {min(r['psnr_db'] for r in rs):.2f} dB)"
                           for (m, v), rs in by_variant.items())
        return (f"**Collapsed runs.** {len(rows)} finished run(s) ended within {COLLAPSE_DB:g} dB of one constant "
                f"colour ({self.references['constant_colour_db']:.2f} dB): {listed}. Their models output about one "
                "colour: a cell holding them measures a training failure at this budget (for instance a learning "
                "rate the cell's architecture does not survive), and every effect and share involving it carries "
                "that failure.")

    def attribution(self) -> str:
        done = {k: v for k, v in self.factorials.items() if v[0] is not None}
        if not self.factorials:
            return ("**Attribution.** No factorial matrix here: `parity ablate --matrix factorial` attributes the "
                    "gap to groups of differences (shares that add up to it).")
        if not done:
            why = "; ".join(f"`{k}`: {v[1]}" for k, v in self.factorials.items())
            return f"**Attribution.** Not yet computable ({why})."
        parts = []
        for name, (analysis, _) in done.items():
            matrix = self._matrix(name)
            rows = []
            for group in analysis.groups:
                share = analysis.shapley[group]
                rows.append({"group": f"`{group}`", "differences": ", ".join(GROUPS[group]),
                             "share of the gap (dB)": f"{share.mean:+.2f}", "95% interval": _ci(share),
                             "per seed": ", ".join(f"{v:+.2f}" for v in analysis.shapley_per_seed[group].values()),
                             "main effect (dB)": f"{analysis.main_effects[group].mean:+.2f} "
                                                 f"{_ci(analysis.main_effects[group])}"})
            gap = analysis.gap
            rows.append({"group": "**sum = gap**", "differences": "", "share of the gap (dB)": f"**{gap.mean:+.2f}**",
                         "95% interval": _ci(gap),
                         "per seed": ", ".join(f"{v:+.2f}" for v in analysis.gap_per_seed.values()),
                         "main effect (dB)": ""})
            chart = attribution_waterfall(
                [(g, analysis.shapley[g].mean, analysis.shapley[g].low - analysis.shapley[g].mean,
                  analysis.shapley[g].high - analysis.shapley[g].mean, analysis.shapley_per_seed[g])
                 for g in analysis.groups], analysis.cell_means[frozenset()],
                self.files / f"attribution-{self.slugs[name]}.png",
                f"Attribution of the gap ({name}, {len(analysis.seeds)} seeds)")
            picture = f"\n\n![attribution waterfall]({self._file_link(chart)})" if chart else ""
            held = [g for g in (matrix.groups or []) if g not in analysis.groups]
            sub = (f" A sub-design: {', '.join(held)} held at the notebook's values, so the gap here is from the "
                   f"notebook to notebook + {' + '.join(analysis.groups)}, not to the original." if held else "")
            parts.append(
                f"**Attribution of the gap{' at a second budget' if parts else ''}** (`{name}`, {len(analysis.seeds)} seeds, {2 ** len(analysis.groups)} cells; "
                f"run folders under {self.folder_link(self.shown(matrix.dir), matrix.dir)}). Each group's Shapley share "
                "averages its gain over every order of adding the groups to the notebook, so the shares add up "
                "exactly to the gap between the factorial's corners; intervals are t intervals from the "
                f"cells x seeds residual (df {analysis.residual_df}), not adjusted across groups.{sub}\n\n"
                f"{_table(pd.DataFrame(rows))}{picture}")
        if len(done) > 1:
            parts.append(self.stability(done))
        return "\n\n".join(parts)

    def stability(self, done: dict) -> str:
        """The shares of every factorial side by side: whether the attribution holds across budgets."""
        names = list(done)
        groups = list(dict.fromkeys(g for analysis, _ in done.values() for g in analysis.groups))
        rows = []
        for group in groups:
            row = {"group": f"`{group}`"}
            for name in names:
                analysis = done[name][0]
                share = analysis.shapley.get(group)
                row[f"`{name}` share (dB)"] = MISSING if share is None else f"{share.mean:+.2f} {_ci(share)}"
                row[f"`{name}` % of gap"] = MISSING if share is None or not analysis.gap.mean else \
                    f"{100 * share.mean / analysis.gap.mean:.0f}%"
            rows.append(row)
        return ("**Are the shares stable across budgets?** The same factorial at each budget (shares as a "
                f"percentage of that budget's gap):\n\n{_table(pd.DataFrame(rows))}")

    def seed_claims(self) -> str:
        """Each claim of the seed audit against what this report can say: its own effect where a single-toggle
        matrix measured it, else its group's leave-one-out and share from the factorial."""
        done = [(name, a) for name, (a, _) in self.factorials.items() if a is not None]
        if not done:
            return ""
        name, analysis = done[0]
        loo = {g: iv for g, (iv, _) in self.group_loo[name].items()}
        own = {r.difference: r for r in self.effects.itertuples() if r.kind == "leave-one-out"}
        rows = []
        for diff in DIFFERENCES:
            if diff.claimed_severity == NOT_IN_SEED:
                continue
            group = next((g for g, ids in GROUPS.items() if diff.id in ids), None)
            if diff.id in own and not _missing(own[diff.id].mean):
                r = own[diff.id]
                said = f"{r.mean:+.2f} {_interval(r)}: {r.verdict} (leave-one-out)"
            elif group in loo:
                iv = loo[group]
                word = "measured" if iv.excludes_zero else "not measured"
                said = (f"untestable alone at this budget; its group `{group}`: leave-one-out {iv.mean:+.2f} "
                        f"{_ci(iv)} ({word}), share {analysis.shapley[group].mean:+.2f}")
            else:
                said = "untestable at this budget (no matrix varies it)"
            rows.append({"difference": f"`{diff.id}`", "seed audit": diff.claimed_severity, "what this report says": said})
        return ("**The seed audit's claims at this budget.** A claim about one difference is tested only where a "
                "single-toggle matrix varied it; otherwise only its group's contribution is measured.\n\n"
                + _table(pd.DataFrame(rows)))

    def evaluation_side(self) -> str:
        """Differences that change what is scored, computed from the stored per-image values."""
        rows = []
        for side in ("original", "notebook"):
            base = self.baselines.get(side)
            if not base:
                continue
            batch = base["notebook_eval_batch"]
            values = aggregation_effect(base["runs"], base["variant"], batch)
            if values:
                interval = stats.t_interval(values)
                rows.append({"difference": "`psnr-aggregation`", "on": f"{side} baseline",
                             "effect (dB)": f"{interval.mean:+.2f}", "95% interval": _ci(interval),
                             "what": f"mean per-image PSNR minus batch-MSE PSNR (batches of {batch}): the same "
                                     "model, reported two ways"})
        split = ("`data-split`: in matrices whose preset sets `data.eval_split`, every variant is scored on the same "
                 "test images, and the first-N training images are the same in both splits, so the split changes "
                 "nothing measured here; on the sources' full test sets it changes which 10,000 or 5,000 images are "
                 "scored, a change of images, not of the model.")
        table = _table(pd.DataFrame(rows)) if rows else "No baseline run has per-image values stored yet."
        return ("## Evaluation-side differences\n\nThese change the number reported, not the model: computed "
                f"from each baseline run's stored per-image values, not from training.\n\n{table}\n\n{split}")

    def _matrix(self, name: str):
        return next(m for m in self.results.matrices.itertuples() if m.matrix == name)

    # ---------------------------------------------------------------------------------- per matrix

    def matrix_sections(self) -> list[str]:
        return [self.matrix_section(m) for m in self.results.matrices.itertuples()]

    def matrix_section(self, matrix) -> str:
        runs = self.results.runs[self.results.runs["matrix"] == matrix.matrix]
        summary = variant_summary(runs, matrix.variants)
        effects = self.effects[self.effects["matrix"] == matrix.matrix]
        seeds = ", ".join(str(s) for s in matrix.seeds)
        source = (f"Run folders: `{self.shown(matrix.dir)}/<variant>/seed-<k>/` (seeds {seeds}); "
                  "results from `metrics.json`, effects paired by seed.")
        if matrix.kind == "factorial":
            body = self.factorial_tables(matrix)
        else:
            body = f"{_sentence(KINDS[matrix.kind].meaning)}.\n\n{self.effects_table(effects, matrix)}"
            if matrix.kind == "cumulative":
                body = ("The gains below depend on the order in which the differences are added (here: most severe "
                        "seed claim first); the factorial's Shapley attribution is the order-free answer.\n\n" + body)
        return (f"## {matrix.kind}: `{matrix.matrix}`\n\n{source}\n\n### Effects\n\n{body}\n\n"
                f"### Results per variant\n\n{self.results_table(summary)}")

    def factorial_tables(self, matrix) -> str:
        analysis, why = self.factorials.get(matrix.matrix, (None, "not analysed"))
        if analysis is None:
            return f"{_sentence(KINDS['factorial'].meaning)}. Not analysed: {why}."
        mains = [{"group": f"`{g}`", "main effect (dB)": f"{iv.mean:+.2f}", "95% interval": _ci(iv),
                  "p": _p(iv.p)} for g, iv in analysis.main_effects.items()]
        pairs = [{"groups": f"`{a}` x `{b}`", "interaction (dB)": f"{iv.mean:+.2f}", "95% interval": _ci(iv),
                  "p": _p(iv.p)} for (a, b), iv in analysis.interactions.items()]
        loo = [{"group left out": f"`{g}`", "PSNR(original) - PSNR(original without it) (dB)": f"{iv.mean:+.2f}",
                "95% interval": _ci(iv), "per seed": ", ".join(f"{v:+.2f}" for v in values.values())}
               for g, (iv, values) in self.group_loo[matrix.matrix].items()]
        cells = [{"cell (groups at the original's values)": " + ".join(sorted(c, key=analysis.groups.index))
                  or "none (the notebook)", "PSNR per image (dB)": f"{m:.2f}"}
                 for c, m in sorted(analysis.cell_means.items(), key=lambda kv: (len(kv[0]), kv[1]))]
        return (f"{_sentence(KINDS['factorial'].meaning)}. A main effect is the gain of a group averaged over the other groups' "
                "settings; an interaction is how much one group's gain changes when the other is switched on. "
                f"Residual variance from the additive cells x seeds model: {analysis.residual_var:.4f} dB^2, "
                f"df {analysis.residual_df}; intervals are not adjusted across the "
                f"{len(mains) + len(pairs)} contrasts.\n\n{_table(pd.DataFrame(mains))}\n\n"
                f"{_table(pd.DataFrame(pairs))}\n\n**Leave one group out, from the original** (cells of this "
                "factorial; the interval uses its residual variance):\n\n"
                f"{_table(pd.DataFrame(loo))}\n\n{_table(pd.DataFrame(cells))}")

    def results_table(self, summary: pd.DataFrame) -> str:
        rows = []
        for row in summary.itertuples():
            form = f" ({row.psnr_form})" if row.psnr_form else ""
            skipped = " (skipped)" if row.skipped else ""
            rows.append({"variant": self.folder_link(row.variant, row.run_dir),
                         "role": row.role, "runs done": f"{row.done}/{row.seeds}{skipped}",
                         "PSNR per image (dB)": _pm(row.psnr_mean, row.psnr_std, row.done),
                         "PSNR reported (dB)": _pm(row.headline_mean, row.headline_std, row.done) + form,
                         "SSIM": _pm(row.ssim_mean, row.ssim_std, row.done, digits=4),
                         "params": _count(row.params_mean), "images/s": _number(row.images_per_s_mean, 1)})
        return _table(pd.DataFrame(rows))

    def effects_table(self, effects: pd.DataFrame, matrix) -> str:
        if effects.empty:
            return "No variant in this matrix toggles a difference."
        folders = {v["id"]: Path(matrix.dir) / v["id"] for v in matrix.variants}
        rows = []
        for row in effects.itertuples():
            item = {"step": _number(row.step, 0)} if matrix.kind == "cumulative" else {}
            verdict = row.verdict
            if row.level and verdict == stats.MEASURED_UNCLAIMED:
                verdict += f", {row.level}"
            if row.metric != PSNR_COLUMN:
                verdict += f" (on `{row.metric}`)"
            item.update({"difference": f"`{row.difference}`", "claimed": row.claimed or MISSING,
                         "effect (dB)": _number(row.mean, 2, signed=True), "adjusted interval": _interval(row),
                         "seeds": _seeds(row), "verdict": verdict, "compared": self._compared(row, folders)})
            if effects["note"].astype(bool).any():  # only matrices whose variants carry notes get the column
                item["note"] = row.note or ""
            rows.append(item)
        return _table(pd.DataFrame(rows))

    def _compared(self, row, folders: dict[str, Path]) -> str:
        variant = self.folder_link(row.variant, folders[row.variant])
        if not isinstance(row.reference, str):
            return variant
        return f"{variant} vs {self.folder_link(row.reference, folders[row.reference])}"

    # ---------------------------------------------------------------------------------- across matrices

    def setting(self) -> str:
        """What differs between the matrices (one row each), then each preset once: its description and the
        fields its baselines change from the sources'."""
        rows = []
        for m in self.results.matrices.itertuples():
            env = m.environment or {}
            rows.append({"matrix": self.folder_link(f"{m.matrix}", m.dir), "kind": m.kind, "preset": f"`{m.preset}`",
                         "seeds": len(m.seeds), "groups": ", ".join(m.groups or []) or MISSING,
                         "overrides": ", ".join(f"`{o}`" for o in m.overrides) or MISSING,
                         "machine": f"{env.get('machine', '?')}, {env.get('threads', '?')} thread(s), torch "
                                    f"{env.get('torch', '?')}", "created": m.created})
        parts = ["## Setting", _table(pd.DataFrame(rows))]
        seen = set()
        for m in self.results.matrices.itertuples():
            key = json.dumps([m.preset, m.overrides], default=str)
            if key in seen or not m.baselines:
                continue
            seen.add(key)
            parts.append(f"**Preset `{m.preset}`**{' with ' + ', '.join(m.overrides) if m.overrides else ''}: "
                         f"{m.preset_description or ''}.\n\n{_table(preset_changes(m.baselines))}")
        return "\n\n".join(parts)

    def reading(self) -> str:
        meanings = "\n".join(f"- **{kind.id}**: {kind.meaning}." for kind in KINDS.values()
                             if kind.id in set(self.results.matrices["kind"]))
        return (f"## How to read the effects\n\n{meanings}\n\n{stats.rule_text()} Power of this rule, by "
                "simulation (`tests/parity/report/test_stats.py`): with 24 differences, 3 seeds and 0.3 dB of seed "
                "spread per run, a 1 dB effect is called measured about 78% of the time, and a matrix of null "
                "effects yields any false 'measured' in under 5% of matrices.")

    def improvements(self) -> str:
        rows = []
        measured = self.effects[self.effects["kind"] == "improvements"]
        for imp in IMPROVEMENTS:
            mine = measured[measured["difference"] == imp.id]
            rows.append({"fix": f"`{imp.id}`", "what it changes": imp.title,
                         "sets": ", ".join(f"`{k}={v}`" for k, v in imp.sets.items()),
                         "requires": ", ".join(f"`{k}={v}`" for k, v in imp.requires.items()) or MISSING,
                         "addresses": imp.fixes, "seed claim": imp.claimed_severity,
                         "measured (dB)": "; ".join(f"{_number(r.mean, 2, signed=True)} {_interval(r)} → "
                                                    f"{r.verdict} (`{r.matrix}`)"
                                                    for r in mine.itertuples()) or "not run"})
        return ("## Improvements\n\nFixes for the original's defects and the seed audit's jitter recommendation, "
                "outside the parity set: each is applied on top of the original.\n\n" + _table(pd.DataFrame(rows)))

    def defects(self) -> str:
        rows = [{"defect": name, "what": what, "fixed by": f"`{fix}`" if fix else "no fix toggle (recorded only)"}
                for name, what, fix in DEFECTS]
        return "## Defects of the original\n\nReproduced by the faithful port.\n\n" + _table(pd.DataFrame(rows))

    def not_run(self) -> str:
        runs = self.results.runs
        bad = runs[runs["state"] != "done"]
        if bad.empty:
            return "## Failed and skipped runs\n\nNone: every run finished."
        rows, seen = [], set()
        for row in bad.itertuples():
            if row.state == "skipped":
                if (row.matrix, row.variant) in seen:
                    continue  # a skipped variant has no runs: list it once, not per seed
                seen.add((row.matrix, row.variant))
            rows.append({"matrix": f"`{row.matrix}`", "variant": row.variant,
                         "seed": "all" if row.state == "skipped" else str(row.seed), "state": row.state,
                         "reason": _reason(row),
                         "run folder": self.folder_link(self.shown(row.run_dir), row.run_dir)
                         if row.state != "skipped" else MISSING})
        return ("## Failed and skipped runs\n\nListed, never dropped: effects involving them have a smaller n "
                "or none.\n\n" + _table(pd.DataFrame(rows)))

    # ---------------------------------------------------------------------------------- plots

    def plots(self) -> str:
        parts = ["## Plots"]
        for matrix in self.results.matrices.itertuples():
            parts.append(f"### `{matrix.matrix}`")
            parts += self.matrix_plots(matrix)
            parts += self.samples(matrix)
        return "\n\n".join(parts)

    def matrix_plots(self, matrix) -> list[str]:
        runs = self.results.runs[self.results.runs["matrix"] == matrix.matrix]
        histories = self.results.histories[self.results.histories["matrix"] == matrix.matrix]
        effects = self.effects[self.effects["matrix"] == matrix.matrix]
        charts = plot_matrix(matrix, runs, histories, effects, self.files, self.slugs[matrix.matrix])
        if not charts:
            return ["No finished run to plot."]
        return [f"![{_alt(caption)}]({self._file_link(path)})\n\n*{caption}*" for path, caption in charts]

    def samples(self, matrix) -> list[str]:
        """Copy each baseline's samples.png (its first finished seed) next to the report."""
        runs = self.results.runs
        mine = runs[(runs["matrix"] == matrix.matrix) & (runs["role"] == "baseline") & (runs["state"] == "done")]
        out = []
        for variant, group in mine.groupby("variant", sort=False):
            found = group.dropna(subset=["samples"]).sort_values("seed")
            if found.empty:
                continue
            first = found.iloc[0]
            copy = self.files / f"samples-{self.slugs[matrix.matrix]}-{_slug(variant)}-seed-{first['seed']}.png"
            atomic_write_bytes(copy, Path(first["samples"]).read_bytes())
            out.append(f"![{variant} samples]({self._file_link(copy)})\n\n*{variant}: ground truth (top) and "
                       f"reconstruction (bottom), from {self.link(self.shown(first['run_dir']), first['run_dir'])}*")
        return out

    def _file_link(self, path: Path) -> str:
        return quote(Path(os.path.relpath(path, self.out.parent)).as_posix(), safe="/._-~+")

    # ---------------------------------------------------------------------------------- closing

    def budget(self) -> str:
        groups: dict[str, list] = {}
        for matrix in self.results.matrices.itertuples():
            setting = budget_setting(matrix.baselines)
            key = json.dumps([setting, len(matrix.seeds)], sort_keys=True, default=str)
            groups.setdefault(key, []).append((matrix, setting))
        paragraphs = []
        for matrices in groups.values():
            matrix, setting = matrices[0]
            text = " ".join(budget_limits(setting, len(matrix.seeds)))
            prefix = f"**{', '.join(f'`{m.matrix}`' for m, _ in matrices)}**: " if len(groups) > 1 else ""
            paragraphs.append(prefix + text)
        if "paper" not in set(self.results.matrices["preset"]):
            paragraphs.append("No run of the `paper` preset (the sources' full protocols on all of CIFAR-10, a GPU "
                              "job) is in this report, so no GPU run backs any number here.")
        return "## What this budget cannot show\n\n" + "\n\n".join(paragraphs)

    # ---------------------------------------------------------------------------------- JSON

    def summary(self) -> dict:
        """The report's numbers for tools (a stable contract: see the README)."""
        gap = self.gap()
        matrices = list(self.results.matrices.itertuples())
        seeds = max((len(m.seeds) for m in matrices), default=0)
        out = {"report": self.out.name, "preset": sorted({str(m.preset) for m in matrices}),
               "seeds": gap.n if gap is not None else seeds,
               "gap_db": gap.mean if gap is not None else None,
               "gap_ci_db": [gap.low, gap.high] if gap is not None else None,
               "baselines": {}, "references": self.references or {},
               "regime": {side: regime_sentence(side, b["psnr"], self.references) for side, b in
                          self.baselines.items()} if self.references else {},
               "matrices": [{"matrix": m.matrix, "kind": m.kind, "folder": self.shown(m.dir),
                             "seeds": list(m.seeds), "groups": m.groups, "command": m.command} for m in matrices]}
        for side, base in self.baselines.items():
            out["baselines"][side] = {
                "psnr_per_image_db": _mean(base["psnr"]), "psnr_headline_db": _mean(base["headline"]),
                "psnr_form": base["form"], "per_seed_db": base["psnr"], "variant": base["variant"],
                "run_folder": self.shown(base["dir"])}
        for name, (analysis, why) in self.factorials.items():
            if analysis is None:
                out.setdefault("attribution_missing", {})[name] = why
                continue
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
                {"group": g, "effect_db": iv.mean, "ci_low_db": iv.low, "ci_high_db": iv.high, "per_seed_db": values}
                for g, (iv, values) in self.group_loo[name].items()]
            out.setdefault("factorials", []).append(entry)
            if "attribution" not in out:  # the first factorial is the one the gap comes from
                out.update(attribution=entry["attribution"], attribution_matrix=name,
                           attribution_gap_db=entry["gap_db"], main_effects=entry["main_effects"],
                           interactions=entry["interactions"])
        out["collapsed_runs"] = [{k: (self.shown(v) if k == "run_dir" else v) for k, v in r.items()}
                                 for r in self.collapsed()]
        out["effects"] = [
            {"matrix": r.matrix, "kind": r.kind, "difference": r.difference, "claimed": r.claimed,
             "metric": r.metric, "effect_db": _float(r.mean), "ci_low_db": _float(r.low), "ci_high_db": _float(r.high),
             "p_holm": _float(r.p_holm), "n": int(r.n), "per_seed_db": r.values, "verdict": r.verdict,
             "level": r.level, "variant": r.variant, "reference": r.reference}
            for r in self.effects.itertuples()]
        return out

# ------------------------------------------------------------------------------------------ the budget


def source_steps(side: str) -> int:
    """Optimiser steps of a source's full protocol (epochs x batches per epoch)."""
    cfg = notebook_baseline() if side == "notebook" else original_baseline()
    images = SOURCE_TRAIN_IMAGES[cfg.data.split]
    from ..spec.schedule import batches_per_epoch

    return batches_per_epoch(images, cfg.train.batch_size, cfg.data.drop_last) * cfg.train.epochs


def budget_limits(setting: dict, seeds: int) -> list[str]:
    """Sentences on what the setting's budget leaves out, compared with the sources' protocols."""
    nb, og = notebook_baseline(), original_baseline()
    out = _data_limits(setting)
    out += _schedule_limits(setting, (nb.train.epochs, og.train.epochs))
    if seeds == 1:
        out.append("With one seed the spread between seeds is unknown: no effect is tested, and a single run's luck "
                   "is not separated from a difference's effect.")
    else:
        out.append(f"With {seeds} seeds, effects whose family-wise interval includes 0 are 'not measured'; smaller "
                   "effects than the intervals resolve may exist.")
    out.append("The seed audit's expectation after the fixes (28-32 dB on CIFAR-10) refers to the full protocol; "
               "only a run of the paper preset can test it.")
    return out


def _data_limits(setting: dict) -> list[str]:
    out = []
    dataset = setting.get("dataset")
    if dataset == "procedural":
        out.append("The images are procedural, not CIFAR-10: absolute PSNRs say nothing about the sources' "
                   "numbers, and effects on natural images may differ.")
    elif dataset not in (None, "cifar10"):
        out.append(f"The data are read as '{dataset}': absolute PSNRs compare with the sources' only if that "
                   "folder holds CIFAR-10.")
    size = setting.get("image_size")
    if size not in (None, 32):
        proxy = (f" (a proxy: the stored {setting['source_size']}×{setting['source_size']} images area-downsampled)"
                 if setting.get("source_size") not in (None, size) else "")
        out.append(f"Images are {size}×{size} px{proxy}, not CIFAR-10's 32×32: patch and LP counts scale "
                   "differently, and absolute PSNRs are not comparable with 32×32 ones.")
    if setting.get("train_subset"):
        out.append(f"Training uses {int(setting['train_subset']):,} images instead of the sources' "
                   f"{SOURCE_TRAIN_IMAGES['official']:,} (notebook) and {SOURCE_TRAIN_IMAGES['numbered']:,} "
                   "(original).")
    if setting.get("test_subset"):
        out.append(f"PSNR is measured on {int(setting['test_subset']):,} test images, not the full "
                   f"{SOURCE_TEST_IMAGES['official']:,} (official split) or {SOURCE_TEST_IMAGES['numbered']:,} "
                   "(the original's range).")
    return out


def _schedule_limits(setting: dict, source_epochs: tuple[int, int]) -> list[str]:
    out = []
    epochs = setting.get("epochs (notebook, original)") or setting.get("epochs")
    if isinstance(epochs, (list, tuple)) and len(epochs) == 2 and tuple(epochs) != source_epochs:
        out.append(f"Runs train {epochs[0]} epochs (notebook side) and {epochs[1]} (original side) against the "
                   f"sources' {source_epochs[0]} and {source_epochs[1]}.")
    elif isinstance(epochs, (int, float)) and epochs not in source_epochs:
        out.append(f"Runs train {epochs} epochs against the sources' {source_epochs[0]} and {source_epochs[1]}.")
    max_steps = setting.get("max_steps")
    if max_steps:
        nb, og = source_steps("notebook"), source_steps("original")
        out.append(f"Each run stops after {int(max_steps):,} steps: {_share(max_steps / nb)} of the notebook's "
                   f"{nb:,} and {_share(max_steps / og)} of the original's {og:,}.")
    if out:
        out.append("Differences that act over the whole schedule (epochs, lr, warmup, lr-horizon) and the "
                   "architectural ones that pay off late in training are judged here on a truncated run; their "
                   "verdicts may not hold at full length.")
    return out


# ------------------------------------------------------------------------------------------ baselines


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
                         "form": _first(forms["test.psnr_form"].dropna()) if "test.psnr_form" in forms else None,
                         "variant": found[0]["id"], "dir": Path(m.dir) / found[0]["id"], "runs": runs,
                         "notebook_eval_batch": int(batch)}
    return out


def regime_sentence(side: str, values: dict, refs: dict | None) -> str:
    """Where a baseline stands against the trivial predictors, in one sentence."""
    mean = _mean(values)
    if mean is None or not refs:
        return ""
    constant, own = refs["constant_colour_db"], refs["per_image_mean_colour_db"]
    above = mean - own
    if mean < constant + 0.5:
        where = (f"is on the constant-colour plateau ({mean:.2f} dB vs {constant:.2f}): it has learned one colour, "
                 "not images")
    elif above < -0.5:
        where = (f"is between one constant colour and each image's own mean colour ({mean:.2f} dB; {constant:.2f} "
                 f"and {own:.2f}): it has learned colour, not images")
    elif above < 0.5:
        where = (f"is at the per-image-mean-colour level ({mean:.2f} dB vs {own:.2f}): it has learned each image's "
                 "colour, not its structure")
    elif above < 3.0:
        where = f"is {above:.2f} dB above each image's mean colour ({own:.2f}): coarse structure, barely"
    else:
        where = f"is {above:.2f} dB above each image's mean colour ({own:.2f}): it reconstructs image structure"
    return f"The {side} baseline {where}."


def budget_setting(baselines: dict) -> dict:
    """The few fields ``budget_limits`` reads, from a matrix's recorded baselines."""
    nb, og = (baselines or {}).get("notebook") or {}, (baselines or {}).get("original") or {}
    data, train = nb.get("data") or {}, nb.get("train") or {}
    return {"dataset": data.get("dataset"), "image_size": data.get("image_size"),
            "source_size": data.get("source_size"), "train_subset": data.get("train_subset"),
            "test_subset": data.get("test_subset"), "max_steps": train.get("max_steps"),
            "epochs (notebook, original)": [train.get("epochs"), (og.get("train") or {}).get("epochs")]}


def preset_changes(baselines: dict) -> pd.DataFrame:
    """The fields where a preset's baselines differ from the sources' (the preset's scaling), side by side."""
    from ..spec.config import field_paths

    sources = {"notebook": notebook_baseline().to_dict(), "original": original_baseline().to_dict()}
    rows = []
    for path in field_paths():
        section, key = path.split(".")
        values = {side: ((baselines.get(side) or {}).get(section) or {}).get(key) for side in sources}
        source = {side: sources[side][section][key] for side in sources}
        if values != source and any(v is not None for v in values.values()):
            rows.append({"field": f"`{path}`", "notebook (preset)": _value(values["notebook"]),
                         "original (preset)": _value(values["original"]),
                         "sources (notebook / original)": f"{_value(source['notebook'])} / "
                                                          f"{_value(source['original'])}"})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ helpers


def _regenerate(results: Results, runs_dir: Path, out: Path, default_out: bool, groups=None) -> list[str]:
    commands = [c for c in dict.fromkeys(results.matrices["command"]) if isinstance(c, str) and c]
    report = f"parity report {_shell_path(runs_dir)}"
    if not default_out:
        report += f" --out {_shell_path(out)}"
    if groups:
        report += f" --groups {','.join(groups)}"
    return [*commands, report]


def _shell_path(path: Path) -> str:
    """Relative to the current directory when below it (what the reader types), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _slugs(names: list[str]) -> dict[str, str]:
    """File-name-safe, unique names for the matrices' plot files."""
    out, used = {}, set()
    for name in names:
        slug, k = _slug(name), 2
        while slug in used:
            slug, k = f"{_slug(name)}-{k}", k + 1
        used.add(slug)
        out[name] = slug
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", str(text)).strip("-") or "runs"


def _table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "None."
    # disable_numparse keeps strings like '+1.20' as written (tabulate would turn them into 1.2)
    return frame.apply(lambda column: column.map(_cell)).to_markdown(index=False, disable_numparse=True)


def _cell(value) -> str:
    """A table cell that cannot break GitHub's pipe tables."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return MISSING
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _alt(caption: str) -> str:
    return caption.replace("[", "(").replace("]", ")")


def _missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _pm(mean, std, n, digits: int = 2) -> str:
    if _missing(mean):
        return MISSING
    return f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _share(fraction: float) -> str:
    """A percentage that stays informative for tiny budgets (0.016%, not 0.0%)."""
    return f"{fraction:.1%}" if fraction >= 0.01 else f"{100 * fraction:.2g}%"


def _number(x, digits: int, signed: bool = False) -> str:
    return MISSING if _missing(x) else (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}")


def _float(x):
    return None if _missing(x) else float(x)


def _mean(values: dict) -> float | None:
    values = [v for v in values.values() if not _missing(v)]
    return math.fsum(values) / len(values) if values else None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _first(items):
    return next(iter(items), None)


def _ci(interval) -> str:
    if interval is None or _missing(interval.low):
        return "n/a (one seed)" if interval is not None and interval.n == 1 else MISSING
    return f"[{interval.low:+.2f}, {interval.high:+.2f}]"


def _mean_ci(values: dict) -> str:
    interval = stats.t_interval(values)
    if interval.n == 0:
        return MISSING
    return f"{interval.mean:.2f}" + ("" if _missing(interval.low) else f" [{interval.low:.2f}, {interval.high:.2f}]")


def _mean_of(values: dict) -> str:
    mean = _mean(values)
    return MISSING if mean is None else f"{mean:.2f}"


def _p(p) -> str:
    return MISSING if _missing(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


def _interval(row) -> str:
    if _missing(row.low):
        return MISSING
    return f"[{row.low:+.2f}, {row.high:+.2f}] ({row.confidence:.3g})"


def _seeds(row) -> str:
    if not row.n:
        return "0"
    shown = ", ".join(f"{v:+.2f}" for v in row.values.values())
    missing = f"; seed {', '.join(map(str, row.seeds_missing))} unpaired" if row.seeds_missing else ""
    return f"{int(row.n)}: {shown}{missing}"


def _count(x) -> str:
    return MISSING if _missing(x) else f"{int(round(x)):,}"


def _reason(row) -> str:
    fallback = "still running, or killed while running" if row.state == "running" else row.state
    reason = row.error if isinstance(row.error, str) and row.error else fallback
    if row.state in ("failed", "running") and not _missing(row.step) and f"at step {int(row.step)}" not in reason:
        total = "" if _missing(row.total_steps) else f"/{int(row.total_steps)}"
        reason += f" (at step {int(row.step)}{total})"
    if isinstance(row.losses, list) and row.losses:
        reason += "; last losses " + ", ".join(f"{x:.3g}" if isinstance(x, (int, float)) else str(x)
                                               for x in row.losses[-3:])
    return reason


__all__ = ["budget_limits", "budget_setting", "find_baselines", "preset_changes", "regime_sentence", "source_steps",
           "write_report"]
