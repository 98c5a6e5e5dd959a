"""The markdown report of a RUNS_DIR: setting, per-matrix results and effects with verdicts on the seed
audit, the differences it missed, improvements, defects, what did not run, plots, and what the budget
cannot show. Every table names the run folders its numbers come from (relative links)."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from urllib.parse import quote

import pandas as pd

from ..config import notebook_baseline, original_baseline
from ..differences import DEFECTS, IMPROVEMENTS, NOT_IN_SEED
from ..store import atomic_write_bytes, atomic_write_text
from .effects import (MEANING, MISSED, NOISE_FLOOR_DB, NOISE_STD_MULTIPLE, NOT_MEASURABLE, compute_effects,
                      thresholds_text)
from .plots import plot_matrix
from .results import Results, load_results, variant_summary

# The sources' data sizes: torchvision's official CIFAR-10 split (notebook) and the original's
# numbered-JPEG index ranges (train 1-49999, test 55000-59999).
SOURCE_TRAIN_IMAGES = {"official": 50_000, "numbered": 49_999}
SOURCE_TEST_IMAGES = {"official": 10_000, "numbered": 5_000}
MISSING = "—"


# ------------------------------------------------------------------------------------------ entry point


def write_report(runs_dir, out=None) -> Path:
    """Write the report of ``runs_dir`` to ``out`` (default reports/<runs folder name>.md under the
    current directory), plots and sample images to the sibling folder <out stem>_files/."""
    runs_dir = Path(runs_dir)
    results = load_results(runs_dir)
    default_out = out is None
    out = (Path("reports") / f"{runs_dir.resolve().name}.md" if default_out else Path(out)).resolve()
    files = out.parent / f"{out.stem}_files"
    effects = compute_effects(results)
    doc = Document(results, effects, out, files, regenerate=_regenerate(results, runs_dir, out, default_out))
    atomic_write_text(out, doc.render())
    return out


class Document:
    """Builds the report's sections; holds what they share (results, effects, where files go)."""

    def __init__(self, results: Results, effects: pd.DataFrame, out: Path, files: Path, regenerate: list[str]):
        self.results, self.effects, self.out, self.files = results, effects, out, files
        self.regenerate = regenerate
        self.slugs = _slugs(list(results.matrices["matrix"]))

    def render(self) -> str:
        sections = [self.header(), self.setting(), self.reading(), *self.matrix_sections(), self.missed(),
                    self.improvements(), self.defects(), self.not_run(), self.plots(), self.budget()]
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

    def setting(self) -> str:
        columns = {}
        for matrix in self.results.matrices.itertuples():
            columns[matrix.matrix] = _setting_column(matrix, self.link(self.shown(matrix.dir), matrix.dir))
        frame = pd.DataFrame(columns)
        frame.index.name = "field"
        frame = frame.fillna(MISSING).reset_index()
        return "## Setting\n\n" + _table(frame) + self.presets()

    def presets(self) -> str:
        """Why each preset's budget is what it is: its description from the registry of presets."""
        from ..matrix import PRESETS

        names = [p for p in dict.fromkeys(self.results.matrices["preset"]) if p in PRESETS]
        return "".join(f"\n\n**Preset `{p}`** (`parity/matrix.py`): {PRESETS[p].description}." for p in names)

    def reading(self) -> str:
        meanings = "\n".join(f"- **{kind}**: {text}." for kind, text in MEANING.items()
                             if kind in set(self.results.matrices["kind"]))
        return ("## How to read the effects\n\n"
                f"Effects are paired by seed, then summarised over seeds (mean ± sample std [min, max]).\n\n"
                f"{meanings}\n\n{thresholds_text()}")

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
        return (f"## {matrix.kind}: `{matrix.matrix}`\n\n{source}\n\n"
                f"### Results\n\n{self.results_table(summary)}\n\n"
                f"### Effects\n\n{MEANING[matrix.kind]}.\n\n{self.effects_table(effects, matrix)}")

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
            item.update({"difference": f"`{row.difference}`", "title": row.title, "claimed": row.claimed or MISSING,
                         "effect (dB) mean ± std [min, max]": _effect(row), "n": _n(row),
                         "verdict": row.verdict, "threshold": _threshold(row),
                         "compared": self._compared(row, folders)})
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

    def missed(self) -> str:
        missed = self.effects[self.effects["verdict"] == MISSED]
        tried = self.effects[(self.effects["claimed"] == NOT_IN_SEED) & (self.effects["n"] > 0)]
        head = ("## Differences the seed audit missed\n\n"
                "Entries the seed audit does not mention, with a measurable effect (the sign says which side "
                "helps).")
        if missed.empty:
            return f"{head}\n\nNone at this budget ({len(tried)} such effects were measured, none above the noise)."
        rows = [{"matrix": f"`{r.matrix}`", "kind": r.kind, "difference": f"`{r.difference}`", "title": r.title,
                 "effect (dB) mean ± std [min, max]": _effect(r), "n": _n(r)} for r in missed.itertuples()]
        return f"{head}\n\n{_table(pd.DataFrame(rows))}"

    def improvements(self) -> str:
        rows = []
        measured = self.effects[self.effects["kind"] == "improvements"]
        for imp in IMPROVEMENTS:
            mine = measured[measured["difference"] == imp.id]
            rows.append({"fix": f"`{imp.id}`", "what it changes": imp.title,
                         "sets": ", ".join(f"`{k}={v}`" for k, v in imp.sets.items()),
                         "requires": ", ".join(f"`{k}={v}`" for k, v in imp.requires.items()) or MISSING,
                         "addresses": imp.fixes, "seed claim": imp.seed,
                         "measured (dB)": "; ".join(f"{_effect(r)} → {r.verdict} (`{r.matrix}`)"
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
            key = json.dumps([matrix.setting, len(matrix.seeds)], sort_keys=True, default=str)
            groups.setdefault(key, []).append(matrix)
        paragraphs = []
        for matrices in groups.values():
            text = " ".join(budget_limits(matrices[0].setting, len(matrices[0].seeds)))
            prefix = f"**{', '.join(f'`{m.matrix}`' for m in matrices)}**: " if len(groups) > 1 else ""
            paragraphs.append(prefix + text)
        if "paper" not in set(self.results.matrices["preset"]):
            paragraphs.append("No run of the `paper` preset (the sources' full protocols on all of CIFAR-10, a GPU "
                              "job) is in this report, so no GPU run backs any number here.")
        return "## What this budget cannot show\n\n" + "\n\n".join(paragraphs)


# ------------------------------------------------------------------------------------------ the budget


def source_steps(side: str) -> int:
    """Optimiser steps of a source's full protocol (epochs x batches per epoch)."""
    cfg = notebook_baseline() if side == "notebook" else original_baseline()
    images = SOURCE_TRAIN_IMAGES[cfg.data.split]
    per_epoch = images // cfg.train.batch_size if cfg.data.drop_last else math.ceil(images / cfg.train.batch_size)
    return per_epoch * cfg.train.epochs


def budget_limits(setting: dict, seeds: int) -> list[str]:
    """Sentences on what the setting's budget leaves out, compared with the sources' protocols."""
    nb, og = notebook_baseline(), original_baseline()
    out = _data_limits(setting)
    out += _schedule_limits(setting, (nb.train.epochs, og.train.epochs))
    if seeds == 1:
        out.append(f"With one seed the spread between seeds is unknown: only effects above {NOISE_FLOOR_DB:g} dB "
                   "count, and a single run's luck is not separated from a difference's effect.")
    else:
        out.append(f"With {seeds} seeds, effects within max({NOISE_STD_MULTIPLE:g} × std, {NOISE_FLOOR_DB:g} dB) are "
                   f"reported as '{NOT_MEASURABLE}'; smaller effects than that may exist.")
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
        out.append(f"Images are {size}×{size} px, not CIFAR-10's 32×32: patch and LP counts scale differently.")
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


# ------------------------------------------------------------------------------------------ helpers


def _regenerate(results: Results, runs_dir: Path, out: Path, default_out: bool) -> list[str]:
    commands = [c for c in dict.fromkeys(results.matrices["command"]) if isinstance(c, str) and c]
    report = f"parity report {_shell_path(runs_dir)}"
    if not default_out:
        report += f" --out {_shell_path(out)}"
    return [*commands, report]


def _shell_path(path: Path) -> str:
    """Relative to the current directory when below it (what the reader types), else absolute."""
    path = Path(path).resolve()
    try:
        return path.relative_to(Path.cwd()).as_posix() or "."
    except ValueError:
        return path.as_posix()


def _setting_column(matrix, folder_link: str) -> dict:
    env = matrix.environment or {}
    column = {"kind": matrix.kind, "preset": matrix.preset, "seeds": ", ".join(str(s) for s in matrix.seeds)}
    column.update({f"setting: {k}": _value(v) for k, v in (matrix.setting or {}).items()})
    column.update({"hardware": f"{env.get('machine', '?')}, {env.get('threads', '?')} threads of "
                               f"{env.get('cpu_count', '?')} CPUs",
                   "versions": f"torch {env.get('torch', '?')}, python {env.get('python', '?')}, "
                               f"parity {env.get('parity', '?')}",
                   "created": matrix.created, "run folder": folder_link})
    return {k: _cell(v) for k, v in column.items()}


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


def _number(x, digits: int) -> str:
    return MISSING if _missing(x) else f"{x:.{digits}f}"


def _count(x) -> str:
    return MISSING if _missing(x) else f"{int(round(x)):,}"


def _effect(row) -> str:
    if not row.n:
        return MISSING
    return f"{row.mean:+.2f} ± {row.std:.2f} [{row.min:+.2f}, {row.max:+.2f}]"


def _n(row) -> str:
    total = int(row.n) + len(row.seeds_missing)
    if not row.seeds_missing or not row.n:
        return f"{int(row.n)}"
    seeds = ", ".join(str(s) for s in row.seeds_missing)
    return f"{int(row.n)} of {total} (seed {seeds} unpaired)"


def _threshold(row) -> str:
    return MISSING if _missing(row.threshold) else f"{row.threshold:.2f} dB ({row.basis})"


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


__all__ = ["budget_limits", "source_steps", "write_report"]
