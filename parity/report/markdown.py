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
from ..experiment.config import notebook_baseline, original_baseline
from ..experiment.differences import DEFECTS, DIFFERENCES, GROUPS, IMPROVEMENTS, NOT_IN_SEED, REGISTRY
from ..experiment.kinds import KINDS, TABLE
from . import stats
from .claims import claim_readings
from .collapse import COLLAPSE_DB, collapse_limit, collapse_rates, collapsed_runs
from .cost import paper_cost
from .effects import PSNR_COLUMN, aggregation_effect, compute_effects, factorial, group_leave_one_out, paired
from .factorial_report import (
    INTERVALS_WHY,
    budgets_text,
    cells_table,
    collapse_statement,
    detectable_table,
    factorial_json,
    pairing_sentence,
    readings_intro,
    readings_table,
)
from .jitter import robustness
from .plots import attribution_waterfall, jitter_robustness_chart, plot_matrix
from .readings import ALL_RUNS, factorial_detectable, matrix_detectable, read_factorial
from .regime import SOURCE_TEST_IMAGES, SOURCE_TRAIN_IMAGES, bicubic_distance, proxy_regime, source_steps
from .results import Results, done_values, load_results, variant_summary
from .seed_sections import claims_section, cost_section, jitter_section
from .tables import MISSING
from .tables import as_float as _float
from .tables import cell as _cell
from .tables import ci as _ci
from .tables import missing as _missing
from .tables import number as _number
from .tables import p_value as _p
from .tables import table as _table

# What the rule's intervals and labels deliver, as measured by the simulations of tests/parity/report
# (test_stats.py, test_coverage.py; the numbers are asserted there).
COVERAGE_TEXT = (
    "What this rule delivers, by simulation (`tests/parity/report/test_stats.py`, `test_coverage.py`). Labels: with "
    "24 differences, 3 seeds and 0.3 dB of seed spread per run, a 1 dB effect is called measured about 78% of the "
    "time, and a matrix of null effects yields any false 'measured' in under 5% of matrices; a factorial shaped "
    "like the CIFAR-10 study's (its cells' own seed spreads, 3 seeds) with no group leave-one-out effect gets a "
    "false 'measured' leave-one-out in 3.5% of designs (the earlier unadjusted, pooled labels: 39%). Intervals: "
    "with 24 true 1.5 dB effects, some Holm interval misses its true value in 25% of matrices, the simultaneous "
    "intervals the severity words read in 3%; on the study-shaped cells each 95% share and main-effect interval "
    "covers 94-96% with each cell's own variance (the pooled one covered 89% for the decoder's share), and the "
    "four shares' Bonferroni intervals hold together in 96% (94% without the collapsed runs). Where collapse is a "
    "seed's luck (the study's partly collapsed cells collapsing at random at their observed rates), no reading at "
    "3 seeds covers 95% for every all-runs share (the decoder's: 86%): a cell whose seeds happen not to collapse "
    "looks like a clean cell. Hence collapse rates beside the PSNR, and the reading without collapsed runs beside "
    "the one with all of them.")


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
        self.limits = {m.matrix: collapse_limit(m.references or self.references)
                       for m in results.matrices.itertuples()}
        self.factorials = {m.matrix: factorial(m, self._runs(m.matrix), groups)
                           for m in results.matrices.itertuples() if m.kind == "factorial"}
        self.group_loo = {name: group_leave_one_out(analysis)
                          for name, (analysis, _) in self.factorials.items() if analysis is not None}
        self.readings = {name: read_factorial(self._matrix(name), self._runs(name), self._histories(name),
                                              self.limits[name], groups)
                         for name, (analysis, _) in self.factorials.items() if analysis is not None}
        self.rates = {m.matrix: collapse_rates(self._runs(m.matrix), m.variants, self.limits[m.matrix])
                      for m in results.matrices.itertuples()}
        self.claims = claim_readings(effects, results.histories, results.runs)
        self.jitter = robustness(results.runs, effects)
        self.cost = paper_cost(list(results.matrices.itertuples())) if not results.matrices.empty else None

    def _runs(self, name: str) -> pd.DataFrame:
        return self.results.runs[self.results.runs["matrix"] == name]

    def _histories(self, name: str) -> pd.DataFrame:
        return self.results.histories[self.results.histories["matrix"] == name]

    def render(self) -> str:
        sections = [self.header(), self.answer(), self.jitter_section(), self.evaluation_side(),
                    *self.matrix_sections(), self.setting(), self.reading(), self.improvements(), self.defects(),
                    self.not_run(), self.plots(), self.budget(), self.cost_section()]
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
        # named for the report when it is written elsewhere (reports/<study>.md), else for its runs folder
        name = self.out.stem if self.out.name != "report.md" else self.results.root.resolve().name
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
                f"{gap.n} seed{'s' if gap.n != 1 else ''}; 95% interval {_ci(gap)}"
                f"{self.gap_origin(gap)}). "
                f"Original {_mean_ci(og['psnr'])} dB, notebook {_mean_ci(nb['psnr'])} dB per image; as each source "
                f"reports it (its own aggregation): original {_mean_of(og['headline'])} dB, notebook "
                f"{_mean_of(nb['headline'])} dB. Baseline runs: {self.folder_link(nb['variant'], nb['dir'])} "
                f"(notebook), {self.folder_link(og['variant'], og['dir'])} (original).")
        parts += [collapse_statement(name, fr, self.limits[name]) for name, fr in self.readings.items()]
        parts.append(self.regime())
        parts.append(claims_section(self.claims) or self.group_claims())
        parts.append(self.proxy())
        parts.append(self.collapsed_text())
        parts.append(self.attribution())
        return "\n\n".join(p for p in parts if p)

    def gap(self) -> stats.Interval | None:
        """Original minus notebook; from a factorial whose corners are the baselines, with the Welch interval of
        its two corner cells; else paired by seed."""
        nb, og = self.baselines.get("notebook"), self.baselines.get("original")
        if not nb or not og:
            return None
        analysis = self.gap_source()
        if analysis is not None:
            return analysis.gap
        values = paired(og["psnr"], nb["psnr"], 1)
        return stats.t_interval(values) if values else None

    def gap_origin(self, gap: stats.Interval) -> str:
        if self.gap_source() is None:
            return ""
        return f" from the two corner cells, each with its own seed variance (Welch, df {gap.df:.1f})"

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
        return [r for m in self.results.matrices.itertuples()
                for r in collapsed_runs(self._runs(m.matrix), self.limits[m.matrix])]

    def collapsed_text(self) -> str:
        rows = self.collapsed()
        if not rows:
            return ""
        by_variant: dict[tuple, list] = {}
        for r in rows:
            by_variant.setdefault((r["matrix"], r["variant"]), []).append(r)
        seeds = {(m.matrix, v["id"]): len(m.seeds) for m in self.results.matrices.itertuples() for v in m.variants}
        listed = "; ".join(f"`{v}` ({len(rs)} of {seeds.get((m, v), '?')} seeds, "
                           f"{min(r['psnr_db'] for r in rs):.2f} dB)"
                           for (m, v), rs in by_variant.items())
        return (f"**Collapsed runs.** {len(rows)} finished run(s) ended within {COLLAPSE_DB:g} dB of one constant "
                f"colour ({self.references['constant_colour_db']:.2f} dB): {listed}. Their models output about one "
                "colour: a cell holding them measures a training failure at this budget (for instance a learning "
                "rate the cell's architecture does not survive), and every effect and share involving it carries "
                "that failure. Collapse is an outcome of its own: each variant's rate (collapsed of finished seeds) "
                "with its exact 95% interval (Clopper-Pearson, which holds at 2-3 seeds where a normal "
                f"approximation does not):\n\n{self.rates_table(by_variant)}")

    def rates_table(self, collapsed: dict) -> str:
        rows = []
        for (matrix, variant) in collapsed:
            rates = self.rates[matrix]
            r = rates[rates["variant"] == variant].iloc[0]
            rows.append({"matrix": f"`{matrix}`", "variant": f"`{variant}`", "collapsed": f"{r.collapsed}/{r.finished}",
                         "rate": f"{r.rate:.2f}", "95% interval": f"[{r.low:.2f}, {r.high:.2f}]"})
        return _table(pd.DataFrame(rows))

    def proxy(self) -> str:
        """The proxy's regime against the paper's protocols, from the first matrix that recorded baselines."""
        matrix = _first(m for m in self.results.matrices.itertuples() if m.baselines)
        rows = proxy_regime(matrix.baselines) if matrix is not None else []
        if not rows:
            return ""
        table = [{"side": r["side"], "LP tokens / patches": f"{r['num_lp']} / {r['patches']} = "
                                                            f"{_number(r['lp_per_patch'], 2)}",
                  "paper": f"{r['paper_num_lp']} / {r['paper_patches']} = {_number(r['paper_lp_per_patch'], 2)}",
                  "optimiser steps": f"{r['steps']:,}" if r["steps"] else MISSING,
                  "of the paper's": f"{_share(r['steps_fraction'])} of {r['paper_steps']:,}"
                  if r["steps_fraction"] else MISSING,
                  "width (model.dim)": f"{r['dim']} vs {r['paper_dim']}"} for r in rows]
        og = self.baselines.get("original")
        distance = bicubic_distance(_mean(og["psnr"]) if og else None, self.references)
        bicubic = "" if distance is None else (
            f" The original baseline is {abs(distance):.2f} dB {'below' if distance < 0 else 'above'} bicubic "
            f"upsampling of a 2x area-downsampled image ({self.references['bicubic_x2_db']:.2f} dB), a reference "
            "that sees a quarter of the pixels: " + ("the proxy's autoencoder recovers less detail than that."
                                                     if distance < 0 else "it recovers more detail than that."))
        return (f"**This is a proxy** (preset `{matrix.preset}`): the ratio of LP tokens to patches, the training "
                "length and the width are not the paper's, so its dB and shares are read at this regime, not the "
                f"paper's.{bicubic}\n\n{_table(pd.DataFrame(table))}")

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
                f"**Attribution of the gap{' at a second budget' if parts else ''}** (`{name}`, "
                f"{len(analysis.seeds)} seeds, {2 ** len(analysis.groups)} cells; "
                f"run folders under {self.folder_link(self.shown(matrix.dir), matrix.dir)}). "
                "Each group's Shapley share "
                "averages its gain over every order of adding the groups to the notebook, so the shares add up "
                f"exactly to the gap between the factorial's corners; 95% intervals, not adjusted across groups. "
                f"{INTERVALS_WHY}{sub}\n\n{_table(pd.DataFrame(rows))}{picture}")
            fr = self.readings.get(name)
            if fr is not None:
                parts.append(f"**The shares three ways.** {readings_intro(fr)}\n\n{readings_table(fr, 'share')}")
                parts.append(budgets_text(fr))
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

    def group_claims(self) -> str:
        """Where no single-toggle matrix ran: each claim of the seed audit against its group's leave-one-out and
        share from the factorial."""
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
                        f"{_ci(iv)} ({word}; Holm over the {len(loo)} groups, at {iv.level:.3g}), share "
                        f"{analysis.shapley[group].mean:+.2f}")
            else:
                said = "untestable at this budget (no matrix varies it)"
            rows.append({"difference": f"`{diff.id}`", "seed audit": diff.claimed_severity,
                         "what this report says": said})
        return ("**The seed audit's claims at this budget.** A claim about one difference is tested only where a "
                "single-toggle matrix varied it; otherwise only its group's contribution is measured.\n\n"
                + _table(pd.DataFrame(rows)))

    def jitter_section(self) -> str:
        chart = None
        if self.jitter:
            path = jitter_robustness_chart(self.jitter, self.files / "jitter-robustness.png")
            if path is not None:
                caption = "PSNR under test jitter, trained with and without jitter (bands: 95% seed intervals)"
                chart = f"![{_alt(caption)}]({self._file_link(path)})\n\n*{caption}*"
        train_std = float(REGISTRY["jitter-train"].sets["train.jitter_std"])
        return jitter_section(self.jitter, train_std, chart)

    def cost_section(self) -> str:
        seeds = max((len(m.seeds) for m in self.results.matrices.itertuples()), default=3)
        return cost_section(self.cost, seeds)

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
            body += self.detectable_text(effects, matrix)
            if matrix.kind == "cumulative":
                body = ("The gains below depend on the order in which the differences are added (here: most severe "
                        "seed claim first); the factorial's Shapley attribution is the order-free answer.\n\n" + body)
        return (f"## {matrix.kind}: `{matrix.matrix}`\n\n{source}\n\n### Effects\n\n{body}\n\n"
                f"### Results per variant\n\n{self.results_table(summary)}")

    def factorial_tables(self, matrix) -> str:
        analysis, why = self.factorials.get(matrix.matrix, (None, "not analysed"))
        if analysis is None:
            return f"{_sentence(KINDS['factorial'].meaning)}. Not analysed: {why}."
        main_p = stats.holm([iv.p for iv in analysis.main_effects.values()])
        inter_p = stats.holm([iv.p for iv in analysis.interactions.values()])
        mains = [{"group": f"`{g}`", "main effect (dB)": f"{iv.mean:+.2f}", "95% interval": _ci(iv),
                  "df": _number(iv.df, 1), "p": _p(iv.p), "p (Holm, 4 groups)": _p(hp)}
                 for (g, iv), hp in zip(analysis.main_effects.items(), main_p)]
        pairs = [{"groups": f"`{a}` x `{b}`", "interaction (dB)": f"{iv.mean:+.2f}", "95% interval": _ci(iv),
                  "df": _number(iv.df, 1), "p": _p(iv.p), f"p (Holm, {len(inter_p)} pairs)": _p(hp)}
                 for ((a, b), iv), hp in zip(analysis.interactions.items(), inter_p)]
        loo = [{"group left out": f"`{g}`", "PSNR(original) - PSNR(original without it) (dB)": f"{iv.mean:+.2f}",
                "Holm interval": f"{_ci(iv)} ({iv.level:.3g})", "label": "measured" if iv.excludes_zero else
                stats.NOT_MEASURED, "per seed": ", ".join(f"{v:+.2f}" for v in values.values())}
               for g, (iv, values) in self.group_loo[matrix.matrix].items()]
        fr = self.readings.get(matrix.matrix)
        parts = [f"{_sentence(KINDS['factorial'].meaning)}. A main effect is the gain of a group averaged over the "
                 "other groups' settings; an interaction is how much one group's gain changes when the other is "
                 f"switched on. {INTERVALS_WHY} {pairing_sentence(fr) if fr else ''} Intervals are 95% and not "
                 "adjusted; the Holm columns are the family-wise p-values a 'measured' label reads.",
                 _table(pd.DataFrame(mains)), _table(pd.DataFrame(pairs)),
                 "**Leave one group out, from the original** (cells of this factorial; the two cells' own "
                 "variances; one Holm family over the groups, so the label keeps the chance of any false "
                 "'measured' at 0.05):", _table(pd.DataFrame(loo))]
        if fr is None:
            return "\n\n".join(parts)
        parts += [f"**Main effects three ways.** {readings_intro(fr)}", readings_table(fr, "main effect"),
                  "**Group leave-one-outs three ways:**", readings_table(fr, "leave-one-out"),
                  "**Cells**, with each cell's collapse rate (collapsed of finished seeds, exact 95% interval):",
                  cells_table(fr, self.rates[matrix.matrix]), detectable_table(fr)]
        return "\n\n".join(p for p in parts if p)

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
                         "effect (dB)": _number(row.mean, 2, signed=True), "Holm interval": _interval(row),
                         "simultaneous interval": _interval(row, simultaneous=True),
                         "seeds": _seeds(row), "verdict": verdict, "compared": self._compared(row, folders)})
            if effects["note"].astype(bool).any():  # only matrices whose variants carry notes get the column
                item["note"] = row.note or ""
            rows.append(item)
        return _table(pd.DataFrame(rows))

    def detectable_text(self, effects: pd.DataFrame, matrix) -> str:
        found = matrix_detectable(effects, len(matrix.seeds))
        if found is None:
            return ""
        at = found["detectable"]
        own = at.get(found["seeds"])
        more = ", ".join(f"{_number(v, 2)} dB at {k}" for k, v in at.items() if k != found["seeds"])
        return (f"\n\n**Sensitivity.** With its pooled seed variance, this matrix detects an effect of "
                f"{_number(own, 2)} dB with 80% power at its {found['seeds']} seeds ({more}): the noncentral t "
                f"distribution at Holm's first step over its {found['m']} judged effects "
                f"({stats.ALPHA:g}/{found['m']}). "
                "Smaller effects than that may exist behind 'not measured'.")

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
        return (f"## How to read the effects\n\n{meanings}\n\n{stats.rule_text()}\n\n{COVERAGE_TEXT}")

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
        return "\n\n".join(filter(None, [self.unfinished(), self.incomplete()]))

    def incomplete(self) -> str:
        """Finished runs missing a part the report reads: without history.jsonl a run is absent from the training
        curves and the matched-budget readings (which then average fewer seeds); without samples.png a baseline
        shows no reconstructions."""
        runs = self.results.runs
        if "missing_parts" not in runs:
            return ""
        rows = []
        for r in runs.itertuples():
            parts = [p for p in (r.missing_parts if isinstance(r.missing_parts, list) else [])
                     if p != "samples.png" or r.role == "baseline"]  # only baselines' samples are shown
            if parts:
                rows.append({"matrix": f"`{r.matrix}`", "variant": r.variant, "seed": str(r.seed),
                             "missing": ", ".join(parts),
                             "run folder": self.folder_link(self.shown(r.run_dir), r.run_dir)})
        if not rows:
            return ""
        return ("**Finished runs with parts missing.** Their metrics count everywhere; a run without history.jsonl is "
                "left out of the training curves and the matched-budget readings, which then average fewer seeds:\n\n"
                + _table(pd.DataFrame(rows)))

    def unfinished(self) -> str:
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
        fr = self.readings.get(matrix.matrix)
        matched = {m: b.budget for m, b in fr.budgets.items() if b.analysis is not None} if fr is not None else {}
        charts = plot_matrix(matrix, runs, histories, effects, self.files, self.slugs[matrix.matrix],
                             gflop_per_step=fr.gflop_per_step if fr is not None else None, matched=matched)
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

    def runs_json(self) -> list[dict]:
        """Every finished run's PSNR, and whether it collapsed."""
        out = []
        for m in self.results.matrices.itertuples():
            runs = self._runs(m.matrix)
            done = runs[runs["state"] == "done"]
            values = done[PSNR_COLUMN] if PSNR_COLUMN in done else [None] * len(done)
            limit = self.limits[m.matrix]
            for variant, seed, psnr in zip(done["variant"], done["seed"], values):
                psnr = _float(psnr)
                out.append({"matrix": m.matrix, "variant": variant, "seed": int(seed), "psnr_db": psnr,
                            "collapsed": None if limit is None or psnr is None else psnr < limit})
        return out

    def detectable_json(self) -> list[dict]:
        """Each matrix's smallest effect detected with 80% power, at its seeds and at 5 and 8."""
        out = []
        for m in self.results.matrices.itertuples():
            if m.kind == "factorial":
                fr = self.readings.get(m.matrix)
                analysis = fr.readings.get(ALL_RUNS) if fr is not None else None
                if analysis is None:
                    continue
                found = factorial_detectable(analysis)
                out.append({"matrix": m.matrix, "kind": m.kind, "quantity": "share",
                            "detectable_db": {g: {str(k): _float(v) for k, v in by.items()}
                                              for g, by in found["share"].items()}})
                continue
            found = matrix_detectable(self.effects[self.effects["matrix"] == m.matrix], len(m.seeds))
            if found is not None:
                out.append({"matrix": m.matrix, "kind": m.kind, "quantity": "effect", "family_size": found["m"],
                            "detectable_db": {str(k): _float(v) for k, v in found["detectable"].items()}})
        return out

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
                {"group": g, "effect_db": iv.mean, "ci_low_db": iv.low, "ci_high_db": iv.high, "confidence": iv.level,
                 "p_holm": _float(iv.p), "per_seed_db": values} for g, (iv, values) in self.group_loo[name].items()]
            if name in self.readings and self.readings[name] is not None:
                entry.update(factorial_json(self.readings[name], self.rates[name]))
            out.setdefault("factorials", []).append(entry)
            if "attribution" not in out:  # the first factorial is the one the gap comes from
                out.update(attribution=entry["attribution"], attribution_matrix=name,
                           attribution_gap_db=entry["gap_db"], main_effects=entry["main_effects"],
                           interactions=entry["interactions"])
        out["collapsed_runs"] = [{k: (self.shown(v) if k == "run_dir" else v) for k, v in r.items()}
                                 for r in self.collapsed()]
        out["runs"] = self.runs_json()
        out["collapse"] = [{"matrix": name, "variant": r.variant, "finished": int(r.finished),
                            "collapsed": int(r.collapsed), "rate": _float(r.rate), "ci_low": _float(r.low),
                            "ci_high": _float(r.high), "collapsed_seeds": list(r.collapsed_seeds)}
                           for name, rates in self.rates.items() for r in rates.itertuples()]
        out["collapse_limit_db"] = {name: limit for name, limit in self.limits.items()}
        out["mde_db"] = self.detectable_json()
        matrix = _first(m for m in matrices if m.baselines)
        og = self.baselines.get("original")
        out["proxy_regime"] = {"sides": proxy_regime(matrix.baselines) if matrix is not None else [],
                               "original_minus_bicubic_db": bicubic_distance(_mean(og["psnr"]) if og else None,
                                                                              self.references)}
        out["claims"] = self.claims
        out["jitter_robustness"] = self.jitter
        out["paper_cost"] = self.cost
        out["effects"] = [
            {"matrix": r.matrix, "kind": r.kind, "difference": r.difference, "claimed": r.claimed,
             "metric": r.metric, "effect_db": _float(r.mean), "ci_low_db": _float(r.low), "ci_high_db": _float(r.high),
             "p_holm": _float(r.p_holm), "sim_low_db": _float(r.sim_low), "sim_high_db": _float(r.sim_high),
             "sim_confidence": _float(r.sim_confidence), "n": int(r.n), "per_seed_db": r.values, "verdict": r.verdict,
             "level": r.level, "variant": r.variant, "reference": r.reference,
             "collapsed_seeds": r.collapsed_seeds if isinstance(r.collapsed_seeds, list) else [],
             "own_variance": bool(r.own_variance) if not _missing(r.own_variance) else False}
            for r in self.effects.itertuples()]
        return out

# ------------------------------------------------------------------------------------------ the budget




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
                   "effects than the intervals resolve may exist (each matrix's section gives the smallest effect it "
                   "detects with 80% power, at its seeds and at 5 and 8).")
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
    from ..experiment.config import field_paths

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






def _value(value) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_value(v) for v in value) or "none"
    return "none" if value is None else str(value)


def _alt(caption: str) -> str:
    return caption.replace("[", "(").replace("]", ")")




def _pm(mean, std, n, digits: int = 2) -> str:
    if _missing(mean):
        return MISSING
    return f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def _share(fraction: float) -> str:
    """A percentage that stays informative for tiny budgets (0.016%, not 0.0%)."""
    return f"{fraction:.1%}" if fraction >= 0.01 else f"{100 * fraction:.2g}%"






def _mean(values: dict) -> float | None:
    values = [v for v in values.values() if not _missing(v)]
    return math.fsum(values) / len(values) if values else None


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _first(items):
    return next(iter(items), None)




def _mean_ci(values: dict) -> str:
    interval = stats.t_interval(values)
    if interval.n == 0:
        return MISSING
    return f"{interval.mean:.2f}" + ("" if _missing(interval.low) else f" [{interval.low:.2f}, {interval.high:.2f}]")


def _mean_of(values: dict) -> str:
    mean = _mean(values)
    return MISSING if mean is None else f"{mean:.2f}"




def _interval(row, simultaneous: bool = False) -> str:
    """An effect row's Holm interval (the label's) or its simultaneous one (the severity words'), with its level."""
    low, high, level = (row.sim_low, row.sim_high, row.sim_confidence) if simultaneous else \
        (row.low, row.high, row.confidence)
    if _missing(low):
        return MISSING
    return f"[{low:+.2f}, {high:+.2f}] ({level:.3g})"


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
