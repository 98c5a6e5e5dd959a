"""The report's charts: small PNGs (about 800 x 500 px), written atomically.

Figures are built on matplotlib's Agg canvas directly, without pyplot: no global figure state and no
display needed, so reports can be written from any process (CI, a headless GPU box, a test).
Every function returns the PNG's path, or None when there is nothing to draw.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..core.store import atomic_save_figure
from ..experiment.differences import NOT_IN_SEED, SEVERITY_ORDER
from ..experiment.kinds import KINDS
from .effects import cumulative_chain
from .results import done_values, summarise

DPI = 100
WIDTH_IN, HEIGHT_IN = 8.0, 5.0
MAX_HEIGHT_IN = 11.0  # long effect charts grow, but stay readable on a page
SEVERITY_COLOURS = {"MASSIVE": "#7f0000", "CRITICAL": "#d7301f", "SEVERE": "#fc8d59", "MODERATE": "#fdd49e",
                    "MINOR": "#91cf60", NOT_IN_SEED: "#9e9e9e"}
UNKNOWN_COLOUR = "#4d4d4d"


def _figure(height: float = HEIGHT_IN):
    fig = Figure(figsize=(WIDTH_IN, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig: Figure, path: Path) -> Path:
    return atomic_save_figure(fig, path, DPI)


# ------------------------------------------------------------------------------------------ effects


def effects_chart(effects: pd.DataFrame, kind: str, path: Path, title: str) -> Path | None:
    """Each seed's paired effect as a dot, the mean as a bar coloured by the seed audit's claim, and the
    family-wise interval as a line where there is one (none at one seed)."""
    rows = effects[effects["n"] > 0]
    if rows.empty:
        return None
    height = min(max(HEIGHT_IN, 0.3 * len(rows) + 1.5), MAX_HEIGHT_IN)
    fig, ax = _figure(height)
    colours = [SEVERITY_COLOURS.get(c, UNKNOWN_COLOUR) for c in rows["claimed"]]
    positions = list(range(len(rows)))
    ax.barh(positions, rows["mean"], color=colours, edgecolor="#333333", linewidth=0.5, alpha=0.7)
    for y, row in zip(positions, rows.itertuples()):
        ax.scatter(list(row.values.values()), [y] * len(row.values), s=12, color="black", zorder=3)
        if pd.notna(row.low) and pd.notna(row.high):
            ax.plot([row.low, row.high], [y, y], color="black", linewidth=1.2, zorder=2)
    ax.set_yticks(positions, list(rows["difference"]), fontsize=8)
    ax.invert_yaxis()  # first difference on top, as in the table
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(KINDS[kind].axis if kind in KINDS else "effect (dB)")
    ax.set_title(title, fontsize=10)
    present = [s for s in SEVERITY_ORDER if s in set(rows["claimed"])]
    ax.legend(handles=[Patch(color=SEVERITY_COLOURS[s], label=f"seed: {s}") for s in present], fontsize=7,
              loc="best", title="claimed severity", title_fontsize=7)
    return _save(fig, path)


def attribution_waterfall(shares: list[tuple[str, float, float, float, dict]], start: float, path: Path,
                          title: str) -> Path | None:
    """From the notebook's PSNR to the original's, one step per group's Shapley share (bar), its 95%
    interval (line) and each seed's share (dots); the last bar is the original."""
    if not shares:
        return None
    fig, ax = _figure()
    level = start
    ax.bar(0, start, color="#9e9e9e", label="notebook")
    for i, (_name, share, low, high, per_seed) in enumerate(shares, start=1):
        colour = "#1b7837" if share >= 0 else "#b2182b"
        ax.bar(i, share, bottom=level, color=colour, alpha=0.8)
        centre = level + share  # the bar ends at the mean share; low/high are offsets from it
        ax.plot([i, i], [centre + low, centre + high], color="black", linewidth=1.2)
        ax.scatter([i] * len(per_seed), [level + v for v in per_seed.values()], s=10, color="black", zorder=3)
        ax.text(i + 0.42, centre, f"{share:+.2f}", ha="left", va="center", fontsize=8)
        level = centre
    ax.bar(len(shares) + 1, level, color="#2166ac", label="original")
    ax.set_xticks(range(len(shares) + 2), ["notebook", *[s[0] for s in shares], "original"], fontsize=8)
    ax.set_ylim(min(start, level) - 1.5, max(start, level) + 1.5)
    ax.set_ylabel("test PSNR (dB, per image)")
    ax.set_title(title, fontsize=10)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ training


def _variant_colours(count: int) -> list:
    """Distinct colours: tab10 for up to 10 lines, tab20 beyond (repeating after 20; _draw_curves dashes those)."""
    from matplotlib import colormaps

    palette = colormaps["tab20"].colors if count > 10 else colormaps["tab10"].colors
    return [palette[i % len(palette)] for i in range(count)]


def _mean_curves(histories: pd.DataFrame, variants: list[dict]) -> list[tuple[dict, pd.Series]]:
    """(variant, its mean test PSNR over finished seeds per step) for every variant with a logged evaluation."""
    logged = histories[histories["state"] == "done"].dropna(subset=["test_psnr"])
    if logged.empty:
        return []
    curves = logged.groupby(["variant", "step"])["test_psnr"].mean()
    present = set(curves.index.get_level_values(0))
    return [(v, curves.loc[v["id"]]) for v in variants if v["id"] in present]


def _draw_curves(ax, drawn: list[tuple[dict, pd.Series]], scale: dict[str, float] | None = None) -> None:
    """One labelled line per variant (baselines bold); x is the step, times scale[variant] when given."""
    for i, ((variant, curve), colour) in enumerate(zip(drawn, _variant_colours(len(drawn)))):
        bold = variant.get("role") == "baseline"
        x = curve.index * (scale[variant["id"]] if scale else 1.0)
        colour = "black" if bold and i else colour  # the second bold line (the original) apart from the palette
        ax.plot(x, curve.values, color=colour, linewidth=2.2 if bold else 1.0, zorder=3 if bold else 2,
                linestyle="-" if i < 20 else "--", label=variant.get("label") or variant["id"])
    # outside the axes: with 16 variants an inside legend hides the curves
    ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=1 if len(drawn) <= 18 else 2)


def curves_figure(histories: pd.DataFrame, variants: list[dict], title: str, scale: dict[str, float] | None = None,
                  matched: float | None = None) -> Figure | None:
    """Test PSNR against step (or against step x scale[variant], e.g. training GFLOP), one labelled line per
    variant (mean over its finished seeds, as in the tables; baselines bold) with a legend, and the matched
    budget as a dotted line where there is one. None when nothing was logged."""
    drawn = [(v, c) for v, c in _mean_curves(histories, variants) if scale is None or v["id"] in scale]
    if not drawn:
        return None
    fig, ax = _figure()
    _draw_curves(ax, drawn, scale)
    if matched:
        ax.axvline(matched, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step" if scale is None else "training compute (GFLOP, matrix products and convolutions)")
    ax.set_ylabel("test PSNR (dB, per image)")
    ax.set_title(title, fontsize=10)
    return fig


def training_curves(histories: pd.DataFrame, variants: list[dict], path: Path, title: str,
                    matched_step: float | None = None) -> Path | None:
    """curves_figure against step."""
    fig = curves_figure(histories, variants, title, matched=matched_step)
    return None if fig is None else _save(fig, path)


def compute_curves(histories: pd.DataFrame, variants: list[dict], gflop_per_step: dict[str, float], path: Path,
                   title: str, matched_gflop: float | None = None) -> Path | None:
    """curves_figure against training compute: where the variants stand at equal compute."""
    fig = curves_figure(histories, variants, title, scale=gflop_per_step, matched=matched_gflop)
    return None if fig is None else _save(fig, path)


def staircase(runs: pd.DataFrame, variants: list[dict], path: Path, title: str) -> Path | None:
    """PSNR after each added difference (cumulative matrices), with the other baselines as lines."""
    chain = [v for v in cumulative_chain(variants) if not v.get("skipped")]
    points = [(v.get("label") or v["id"], summarise(done_values(runs, v["id"], "test.psnr"))) for v in chain]
    points = [(label, s) for label, s in points if s["n"] > 0]
    if not points:
        return None
    fig, ax = _figure()
    xs = range(len(points))
    ax.errorbar(xs, [s["mean"] for _, s in points], yerr=[s["std"] for _, s in points], drawstyle="steps-mid",
                marker="o", capsize=3, linewidth=1.5, label="cumulative")
    in_chain = {v["id"] for v in chain}
    for other in variants:
        if other.get("role") == "baseline" and other["id"] not in in_chain:
            stats = summarise(done_values(runs, other["id"], "test.psnr"))
            if stats["n"]:
                ax.axhline(stats["mean"], linestyle="--", color="grey", label=other.get("label") or other["id"])
    ax.set_xticks(list(xs), [label for label, _ in points], rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("test PSNR (dB, per image)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ evaluations


def _mean_curve(runs: pd.DataFrame, variant: str, *keys: str) -> dict[float, float]:
    """{x: mean over finished seeds} of metrics[keys...] = {str(x): value}."""
    per_x: dict[float, list[float]] = {}
    rows = runs[(runs["variant"] == variant) & (runs["state"] == "done")]
    for metrics in rows["metrics"]:
        tree = metrics
        for key in keys:
            tree = tree.get(key) if isinstance(tree, dict) else None
        for x, value in (tree or {}).items():
            if value is not None:
                per_x.setdefault(float(x), []).append(float(value))
    return {x: sum(v) / len(v) for x, v in sorted(per_x.items())}


def jitter_curves(runs: pd.DataFrame, variants: list[dict], path: Path, title: str) -> Path | None:
    """PSNR against the std of the coordinate jitter, for the baselines and any jitter variant."""
    chosen = [v for v in variants if v.get("role") == "baseline" or "jitter" in v["id"].lower()]
    fig, ax = _figure()
    drawn = False
    for variant in chosen:
        label = variant.get("label") or variant["id"]
        for mode, style in (("same", "-"), ("decoupled", "--")):
            curve = _mean_curve(runs, variant["id"], "jitter", mode)
            if curve:
                ax.plot(list(curve), list(curve.values()), style, marker="o", label=f"{label} ({mode})")
                drawn = True
    if not drawn:
        return None
    ax.set_xlabel("jitter std (coordinate units)")
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def jitter_robustness_chart(pairs: list[dict], path: Path) -> Path | None:
    """PSNR against the test jitter std for runs trained with and without jitter (``jitter.robustness``), one
    line a variant with its 95% seed interval as a band; a dashed line where collapsed seeds are left out."""
    fig, ax = _figure()
    drawn = False
    for pair in pairs:
        for side, style in (("with", "-"), ("without", "--")):
            points = [(r["std"], r[f"psnr_{side}"]) for r in pair["stds"] if r[f"psnr_{side}"]["mean_db"] is not None]
            if not points:
                continue
            x = [p for p, _ in points]
            mean = [v["mean_db"] for _, v in points]
            low = [v["ci_low_db"] if v["ci_low_db"] is not None else v["mean_db"] for _, v in points]
            high = [v["ci_high_db"] if v["ci_high_db"] is not None else v["mean_db"] for _, v in points]
            line, = ax.plot(x, mean, style, marker="o", label=f"{pair[side]} ({points[0][1]['seeds']} seeds)")
            ax.fill_between(x, low, high, color=line.get_color(), alpha=0.15)
            drawn = True
    if not drawn:
        return None
    ax.set_xscale("symlog", linthresh=0.005)
    ax.set_xlabel("test jitter std (coordinate units; symlog)")
    ax.set_ylabel("PSNR per image (dB)")
    ax.set_title("PSNR under coordinate jitter, trained with (solid) and without (dashed) jitter", fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


def _sr_values(runs: pd.DataFrame, variant: str) -> dict[str, float]:
    """Bar label -> mean PSNR: the notebook protocol per output size, then the true protocol and bicubic."""
    rows = runs[(runs["variant"] == variant) & (runs["state"] == "done")]
    bars: dict[str, list[float]] = {}
    for metrics in rows["metrics"]:
        for size, scores in sorted((metrics.get("sr_notebook") or {}).items(), key=lambda kv: int(kv[0])):
            bars.setdefault(f"notebook {size} px", []).append(scores.get("psnr"))
        true = metrics.get("sr_true") or {}
        factor = true.get("factor", 2)
        if true.get("psnr") is not None:
            bars.setdefault(f"true ×{factor}", []).append(true["psnr"])
        if true.get("bicubic_psnr") is not None:
            bars.setdefault(f"bicubic ×{factor}", []).append(true["bicubic_psnr"])
    return {k: sum(v) / len(v) for k, v in bars.items() if all(x is not None for x in v)}


def super_resolution_bars(runs: pd.DataFrame, variants: list[dict], path: Path, title: str) -> Path | None:
    """Grouped bars: the notebook's SR protocol against the true protocol, for each baseline."""
    baselines = [v for v in variants if v.get("role") == "baseline"]
    values = {v.get("label") or v["id"]: _sr_values(runs, v["id"]) for v in baselines}
    values = {k: v for k, v in values.items() if v}
    if not values:
        return None
    groups = list(dict.fromkeys(g for bars in values.values() for g in bars))
    fig, ax = _figure()
    width = 0.8 / len(values)
    for i, (label, bars) in enumerate(values.items()):
        xs = [g + i * width for g in range(len(groups))]
        drawn = ax.bar(xs, [bars.get(g, float("nan")) for g in groups], width=width, label=label)
        ax.bar_label(drawn, fmt="%.2f", fontsize=7)  # bars start at 0 dB: the labels carry the differences
    ax.set_xticks([g + width * (len(values) - 1) / 2 for g in range(len(groups))], groups, fontsize=8)
    ax.set_ylabel("PSNR (dB)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7)
    return _save(fig, path)


# ------------------------------------------------------------------------------------------ per matrix


def plot_matrix(matrix, runs: pd.DataFrame, histories: pd.DataFrame, effects: pd.DataFrame, folder: Path,
                slug: str, gflop_per_step: dict[str, float] | None = None, matched: dict | None = None
                ) -> list[tuple[Path, str]]:
    """Every chart one matrix supports, as (png path, caption). ``gflop_per_step`` (a factorial's, when counted)
    adds PSNR against training compute; ``matched`` {"steps", "flops"} marks the matched budgets."""
    name, kind = matrix.matrix, matrix.kind
    full = len(matrix.groups or ())
    # a factorial's full cell is the original: drawn bold like the notebook's corner
    variants = [{**v, "role": "baseline"} if full and len(v.get("groups") or ()) == full else v
                for v in matrix.variants]
    matched = matched or {}
    charts = [
        (effects_chart, (effects, kind), {}, "effects",
         f"Effect per difference, {kind} (dots: seeds; line: Holm interval)"),
        (training_curves, (histories, variants), {"matched_step": matched.get("steps")}, "training",
         f"Test PSNR during training, {kind} (one line per variant: mean over finished seeds; bold: baselines"
         f"{'; dotted: the matched step' if matched.get('steps') else ''})"),
        (jitter_curves, (runs, variants), {}, "jitter", "PSNR against coordinate jitter (dashed: decoupled)"),
        (super_resolution_bars, (runs, variants), {}, "sr", "Super-resolution: notebook protocol vs true protocol"),
    ]
    if gflop_per_step:
        caption = (f"Test PSNR against training compute, {kind} (one line per variant"
                   f"{'; dotted: the matched compute' if matched.get('flops') else ''})")
        options = {"matched_gflop": matched.get("flops")}
        charts.insert(2, (compute_curves, (histories, variants, gflop_per_step), options, "compute", caption))
    if kind == "cumulative":
        charts.insert(1, (staircase, (runs, variants), {}, "staircase", "PSNR after each added difference"))
    out = []
    for draw, args, options, stem, caption in charts:
        title = caption.split(" (")[0]  # the chart's title stays short; the caption below it says the rest
        path = draw(*args, folder / f"{stem}-{slug}.png", f"{title} ({name})", **options)
        if path is not None:
            out.append((path, f"{caption}. Runs: {name}"))
    return out


__all__ = ["SEVERITY_COLOURS", "attribution_waterfall", "compute_curves", "curves_figure", "effects_chart",
           "jitter_curves", "plot_matrix", "staircase", "super_resolution_bars", "training_curves"]
