"""The learning-rate pilot's report: every (side, multiplier) on the validation images, the rule that picks
one rate a side, and the validation curves. Reads what ``parity.runtime.pilot`` trained.

The rule, the same for both sides: among the multipliers whose every seed ends above each image's own mean
colour on the validation images (so no seed collapsed to one colour or stayed on the colour plateau), the
one with the highest mean validation PSNR; the smaller multiplier on a tie. No multiplier passing: none is
chosen, and the report says so.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from ..core.errors import ParityError
from ..core.store import atomic_save_figure, atomic_write_text, read_json, write_json
from ..runtime.pilot import PILOT_FILE, SIDES
from ..runtime.rundir import RunDir
from .stats import t_interval

RULE = ("among the multipliers whose every seed ends above each image's own mean colour on the validation images "
        "(none collapsed, none on the colour plateau), the highest mean validation PSNR; the smaller multiplier on a "
        "tie")


def pilot_runs(folder: Path) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """(pilot.json, one row per run: side, multiplier, lr, seed, state, psnr; one row per history line)."""
    manifest = read_json(folder / PILOT_FILE)
    if not isinstance(manifest, dict) or "variants" not in manifest:
        raise ParityError(f"{folder / PILOT_FILE} is missing or has no variants: run `parity pilot` first")
    rows, curves = [], []
    for v in manifest["variants"]:
        for seed in manifest["seeds"]:
            run = RunDir(folder / v["id"] / f"seed-{seed}")
            metrics = run.finished_metrics() if run.is_done() else None
            psnr = metrics["test"]["psnr"] if metrics else math.nan
            rows.append({**v, "seed": seed, "state": "done" if metrics else run.status().get("state", "missing"),
                         "psnr": psnr})
            if run.history_file.is_file():
                for line in run.history_file.read_text().splitlines():
                    h = json.loads(line)
                    curves.append({"id": v["id"], "seed": seed, "step": h["step"], "psnr": h["test_psnr"]})
    return manifest, pd.DataFrame(rows), pd.DataFrame(curves, columns=["id", "seed", "step", "psnr"])


def pilot_table(runs: pd.DataFrame, references: dict | None) -> pd.DataFrame:
    """One row per (side, multiplier): per-seed and mean validation PSNR, seeds above the colour plateau,
    and whether the rule chose it."""
    plateau = (references or {}).get("per_image_mean_colour_db", math.inf)
    out = []
    for (side, m), g in runs.groupby(["side", "multiplier"], sort=False):
        done = g[g["state"] == "done"]
        interval = t_interval(list(done["psnr"]))
        out.append({"side": side, "multiplier": m, "lr": g["lr"].iloc[0], "seeds": len(g), "finished": len(done),
                    "per_seed": list(done["psnr"].round(2)), "mean_db": done["psnr"].mean(),
                    "ci_low_db": interval.low, "ci_high_db": interval.high,
                    "above_plateau": int((done["psnr"] > plateau).sum()),
                    "eligible": len(done) == len(g) and bool((done["psnr"] > plateau).all())})
    table = pd.DataFrame(out)
    table["chosen"] = False
    for side in SIDES:
        eligible = table[(table["side"] == side) & table["eligible"]].sort_values(["mean_db", "multiplier"],
                                                                                 ascending=[False, True])
        if not eligible.empty:
            table.loc[eligible.index[0], "chosen"] = True
    return table


def chosen_rates(table: pd.DataFrame) -> dict[str, dict | None]:
    """{side: {'multiplier', 'lr', 'mean_db'} or None when no multiplier passed the rule}."""
    out = {}
    for side in SIDES:
        row = table[(table["side"] == side) & table["chosen"]]
        out[side] = None if row.empty else {k: float(row[k].iloc[0]) for k in
                                            ("multiplier", "lr", "mean_db", "ci_low_db", "ci_high_db")}
    return out


def curves_plot(curves: pd.DataFrame, variants: list[dict], path: Path) -> Path | None:
    """Validation PSNR against step, one labelled line per (side, multiplier), the mean over seeds."""
    if curves.empty:
        return None
    fig = Figure(figsize=(8.0, 5.0), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    for v in variants:
        mean = curves[curves["id"] == v["id"]].groupby("step")["psnr"].mean()
        if not mean.empty:
            ax.plot(mean.index, mean.values, label=f"{v['side']} lr {v['lr']:.2g} (x{v['multiplier']:g})",
                    linestyle="-" if v["side"] == "original" else "--")
    ax.set_xlabel("optimiser step")
    ax.set_ylabel("validation PSNR (dB, per image; mean over seeds)")
    ax.set_title("learning-rate pilot: validation curves")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return atomic_save_figure(fig, path, 100)


def write_pilot_report(folder, out=None) -> Path:
    """report.md (or ``out``) and the same numbers as .json, with the curves as a PNG beside it."""
    folder = Path(folder)
    manifest, runs, curves = pilot_runs(folder)
    refs = manifest.get("references")
    table = pilot_table(runs, refs)
    chosen = chosen_rates(table)
    path = Path(out) if out else folder / "report.md"
    files = path.with_name(path.stem + "_files")
    plot = curves_plot(curves, manifest["variants"], files / "pilot-curves.png")
    shown = table.assign(lr=table["lr"].map(lambda x: f"{x:.3g}"), mean_db=table["mean_db"].map(lambda x: f"{x:.2f}"),
                         interval=[f"[{lo:.2f}, {hi:.2f}]" for lo, hi in zip(table["ci_low_db"], table["ci_high_db"])],
                         per_seed=table["per_seed"].map(lambda v: ", ".join(f"{x:.2f}" for x in v)),
                         chosen=table["chosen"].map(lambda c: "**chosen**" if c else ""))
    shown = shown[["side", "multiplier", "lr", "per_seed", "mean_db", "interval", "above_plateau", "finished",
                   "chosen"]]
    lines = [f"# Learning-rate pilot: `{manifest['preset']}`", "",
             "Each baseline at multiples of its source's learning rate, scored on validation images carved from the "
             "training images (`data.eval_split=validation`: the training images after the first "
             "`data.train_subset`), never on the test images. Regenerate:", "", "```bash", manifest["command"],
             f"parity pilot --report-only --preset {manifest['preset']} --out {folder.parent} --report {path}",
             "```", "", f"**Rule** (the same for both sides): {RULE}.", ""]
    if refs:
        lines += [f"Trivial predictors on the {refs['images']} validation images: one constant colour "
                  f"{refs['constant_colour_db']:.2f} dB, each image's own mean colour "
                  f"{refs['per_image_mean_colour_db']:.2f} dB"
                  + (f", bicubic x2 {refs['bicubic_x2_db']:.2f} dB." if "bicubic_x2_db" in refs else "."), ""]
    for side in SIDES:
        c = chosen[side]
        lines.append(f"- **{side}**: " + (f"lr {c['lr']:.3g} (x{c['multiplier']:g} the source's), "
                                          f"{c['mean_db']:.2f} dB on validation (95% interval "
                                          f"[{c['ci_low_db']:.2f}, {c['ci_high_db']:.2f}])" if c else
                                          "no multiplier passed the rule: widen the grid"))
    lines += ["", "Final validation PSNR per seed (dB, per image), its mean and the mean's 95% t interval over the "
              "seeds (wide at 2 seeds: the rule reads the mean, the interval says how near a tie is); "
              "`above_plateau`: seeds above each image's mean colour.", "", shown.to_markdown(index=False), ""]
    if plot:
        lines += [f"![validation curves]({files.name}/{plot.name})", ""]
    atomic_write_text(path, "\n".join(lines))
    write_json(path.with_suffix(".json"), {"preset": manifest["preset"], "command": manifest["command"],
                                           "rule": RULE, "references": refs, "chosen": chosen,
                                           "runs": runs.to_dict(orient="records")})
    return path


__all__ = ["RULE", "chosen_rates", "pilot_runs", "pilot_table", "write_pilot_report"]
