"""The markdown report of a RUNS_DIR, answer first: the gap between the baselines, the regime they are in
against trivial predictors, the attribution of the gap to groups of differences; then the evaluation-side
differences, each matrix's effects with family-wise intervals and verdicts on the seed audit, the setting,
improvements, defects, what did not run, plots, and what the budget cannot show. Every table names the run
folders its numbers come from (relative links). Beside it, <report>.json holds the same numbers for tools.

This module holds the entry point and the Document skeleton (what the sections share, the links, the header);
the sections are in ``answer``, ``budget``, ``matrix_sections``, ``registry_sections``, ``run_sections``,
``seed_sections`` and ``report_json``, their fixed prose in ``prose``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..core.store import atomic_write_text
from ..experiment.differences import REGISTRY
from . import answer, budget, matrix_sections, prose, registry_sections, report_json, run_sections, stats
from .answer import find_baselines
from .budget import budget_limits, budget_setting, preset_changes, regime_sentence
from .claims import claim_readings
from .collapse import collapse_limit, collapse_rates
from .cost import paper_cost
from .effects import compute_effects, factorial, first_references, group_leave_one_out
from .format import alt_text
from .jitter import robustness
from .plots import jitter_robustness_chart
from .readings import read_factorial
from .regime import source_steps
from .results import Results, load_results
from .seed_sections import cost_section, jitter_section
from .tables import cell

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


# ------------------------------------------------------------------------------------------ the document


class Document:
    """Builds the report's sections; holds what they share (results, effects, where files go). The sections
    are functions of the section modules taking the Document; its methods of the same names call them."""

    def __init__(self, results: Results, effects: pd.DataFrame, out: Path, files: Path, regenerate: list[str],
                 groups: tuple[str, ...] | None = None):
        self.results, self.effects, self.out, self.files = results, effects, out, files
        self.regenerate = regenerate
        self.slugs = matrix_sections.slugs(list(results.matrices["matrix"]))
        self.baselines = find_baselines(results)
        self.references = first_references(results)
        self.limits = {m.matrix: collapse_limit(m.references or self.references)
                       for m in results.matrices.itertuples()}
        self.factorials = {m.matrix: factorial(m, self.matrix_runs(m.matrix), groups)
                           for m in results.matrices.itertuples() if m.kind == "factorial"}
        self.group_loo = {name: group_leave_one_out(analysis)
                          for name, (analysis, _) in self.factorials.items() if analysis is not None}
        self.readings = {name: read_factorial(self.matrix(name), self.matrix_runs(name),
                                              self.matrix_histories(name), self.limits[name], groups)
                         for name, (analysis, _) in self.factorials.items() if analysis is not None}
        self.rates = {m.matrix: collapse_rates(self.matrix_runs(m.matrix), m.variants, self.limits[m.matrix])
                      for m in results.matrices.itertuples()}
        self.claims = claim_readings(effects, results.histories, results.runs)
        self.jitter = robustness(results.runs, effects)
        self.cost = paper_cost(list(results.matrices.itertuples())) if not results.matrices.empty else None

    def matrix_runs(self, name: str) -> pd.DataFrame:
        """The runs of one matrix."""
        return self.results.runs[self.results.runs["matrix"] == name]

    def matrix_histories(self, name: str) -> pd.DataFrame:
        """The training histories of one matrix's runs."""
        return self.results.histories[self.results.histories["matrix"] == name]

    def matrix(self, name: str):
        """One matrix's row of ``results.matrices``."""
        return next(m for m in self.results.matrices.itertuples() if m.matrix == name)

    def baselines_matrix(self):
        """The first matrix that recorded its baselines' configurations (None when none did)."""
        return next((m for m in self.results.matrices.itertuples() if m.baselines), None)

    def render(self) -> str:
        sections = [self.header(), self.answer(), self.jitter_section(), self.evaluation_side(),
                    *self.matrix_sections(), self.setting(), self.reading(), self.improvements(), self.defects(),
                    self.not_run(), self.plots(), self.budget(), self.cost_section()]
        return "\n\n".join(s.strip("\n") for s in sections if s) + "\n"

    # ---------------------------------------------------------------------------------- links

    def link(self, text: str, target: Path, folder: bool = True) -> str:
        """A markdown link relative to the report (works on GitHub and locally)."""
        relative = Path(os.path.relpath(Path(target).resolve(), self.out.parent)).as_posix()
        return f"[{cell(text)}]({quote(relative + ('/' if folder else ''), safe='/._-~+')})"

    def folder_link(self, text: str, target: Path | None) -> str:
        """A link when the folder exists (skipped and never-started variants have none)."""
        if target is None or not Path(target).is_dir():
            return cell(text)
        return self.link(text, target)

    def shown(self, target: Path) -> str:
        """A run folder as the reader should find it: relative to the folder that holds RUNS_DIR."""
        return Path(os.path.relpath(Path(target).resolve(), self.results.root.resolve().parent)).as_posix()

    def file_link(self, path: Path) -> str:
        """The address of a file in the report's files folder, relative to the report."""
        return quote(Path(os.path.relpath(path, self.out.parent)).as_posix(), safe="/._-~+")

    def figure(self, path: Path, caption: str) -> str:
        """A chart in the report with its caption under it."""
        return prose.FIGURE.format(alt=alt_text(caption), file=self.file_link(path), caption=caption)

    # ---------------------------------------------------------------------------------- top

    def header(self) -> str:
        # named for the report when it is written elsewhere (reports/<study>.md), else for its runs folder
        name = self.out.stem if self.out.name != "report.md" else self.results.root.resolve().name
        return prose.HEADER.format(name=name, commands="\n".join(self.regenerate))

    def answer(self) -> str:
        return answer.answer_section(self)

    def gap(self) -> stats.Interval | None:
        return answer.gap(self)

    def gap_origin(self, gap: stats.Interval) -> str:
        return answer.gap_origin(self, gap)

    def gap_source(self) -> stats.FactorialAnalysis | None:
        return answer.gap_source(self)

    def regime(self) -> str:
        return budget.regime_text(self)

    def collapsed(self) -> list[dict]:
        return answer.collapsed(self)

    def collapsed_text(self) -> str:
        return answer.collapsed_text(self)

    def rates_table(self, collapsed: dict) -> str:
        return answer.rates_table(self, collapsed)

    def proxy(self) -> str:
        return budget.proxy_text(self)

    def attribution(self) -> str:
        return answer.attribution(self)

    def stability(self, done: dict) -> str:
        return answer.stability(done)

    def group_claims(self) -> str:
        return answer.group_claims(self)

    # ---------------------------------------------------------------------------------- the seed audit's terms

    def jitter_section(self) -> str:
        chart = None
        if self.jitter:
            path = jitter_robustness_chart(self.jitter, self.files / "jitter-robustness.png")
            if path is not None:
                chart = self.figure(path, prose.JITTER_CAPTION)
        train_std = float(REGISTRY["jitter-train"].sets["train.jitter_std"])
        return jitter_section(self.jitter, train_std, chart)

    def cost_section(self) -> str:
        seeds = max((len(m.seeds) for m in self.results.matrices.itertuples()), default=3)
        return cost_section(self.cost, seeds)

    # ---------------------------------------------------------------------------------- per matrix

    def matrix_sections(self) -> list[str]:
        return [self.matrix_section(m) for m in self.results.matrices.itertuples()]

    def matrix_section(self, matrix) -> str:
        return matrix_sections.matrix_section(self, matrix)

    def factorial_tables(self, matrix) -> str:
        return matrix_sections.factorial_tables(self, matrix)

    def results_table(self, summary: pd.DataFrame) -> str:
        return matrix_sections.results_table(self, summary)

    def effects_table(self, effects: pd.DataFrame, matrix) -> str:
        return matrix_sections.effects_table(self, effects, matrix)

    def detectable_text(self, effects: pd.DataFrame, matrix) -> str:
        return matrix_sections.detectable_text(effects, matrix)

    def plots(self) -> str:
        return matrix_sections.plots_section(self)

    def matrix_plots(self, matrix) -> list[str]:
        return matrix_sections.matrix_plots(self, matrix)

    def samples(self, matrix) -> list[str]:
        return matrix_sections.samples(self, matrix)

    # ---------------------------------------------------------------------------------- across matrices

    def evaluation_side(self) -> str:
        return registry_sections.evaluation_side(self)

    def setting(self) -> str:
        return budget.setting_section(self)

    def reading(self) -> str:
        return registry_sections.reading(self)

    def improvements(self) -> str:
        return registry_sections.improvements(self)

    def defects(self) -> str:
        return registry_sections.defects()

    def not_run(self) -> str:
        return run_sections.not_run(self)

    def incomplete(self) -> str:
        return run_sections.incomplete(self)

    def unfinished(self) -> str:
        return run_sections.unfinished(self)

    def budget(self) -> str:
        return budget.budget_section(self)

    # ---------------------------------------------------------------------------------- JSON

    def runs_json(self) -> list[dict]:
        return report_json.runs_json(self)

    def detectable_json(self) -> list[dict]:
        return report_json.detectable_json(self)

    def summary(self) -> dict:
        """The report's numbers for tools (a stable contract: see the README)."""
        return report_json.summary(self)


# importable from here as before the sections moved out
__all__ = ["Document", "budget_limits", "budget_setting", "find_baselines", "preset_changes", "regime_sentence",
           "source_steps", "write_report"]
