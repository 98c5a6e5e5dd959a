"""The report's values as text, beside ``tables`` (which holds the pipe tables and the plain number, interval
and p-value cells these build on): a mean with its spread or interval, a percentage, an effect row's
intervals and seeds, a count, a run's failure, a configuration value, alt text and a sentence's capital."""

from __future__ import annotations

from . import stats
from .results import seed_mean
from .tables import MISSING, missing


def mean_pm_std(mean, std, n, digits: int = 2) -> str:
    """'mean ± std' over n runs; the mean alone for one run (its std says nothing)."""
    if missing(mean):
        return MISSING
    return f"{mean:.{digits}f}" if n <= 1 else f"{mean:.{digits}f} ± {std:.{digits}f}"


def share_percent(fraction: float) -> str:
    """A percentage that stays informative for tiny budgets (0.016%, not 0.0%)."""
    return f"{fraction:.1%}" if fraction >= 0.01 else f"{100 * fraction:.2g}%"


def mean_with_ci(values: dict) -> str:
    """The mean of {seed: value} with its 95% t interval, unsigned, 2 decimals (no interval with one seed)."""
    interval = stats.t_interval(values)
    if interval.n == 0:
        return MISSING
    return f"{interval.mean:.2f}" + ("" if missing(interval.low) else f" [{interval.low:.2f}, {interval.high:.2f}]")


def mean_text(values: dict) -> str:
    """The mean of {seed: value}, 2 decimals."""
    mean = seed_mean(values)
    return MISSING if mean is None else f"{mean:.2f}"


def interval_text(row, simultaneous: bool = False) -> str:
    """An effect row's Holm interval (the label's) or its simultaneous one (the severity words'), with its level."""
    low, high, level = (row.sim_low, row.sim_high, row.sim_confidence) if simultaneous else \
        (row.low, row.high, row.confidence)
    if missing(low):
        return MISSING
    return f"[{low:+.2f}, {high:+.2f}] ({level:.3g})"


def seeds_text(row) -> str:
    """An effect row's seed count and per-seed effects, naming the seeds left unpaired."""
    if not row.n:
        return "0"
    shown = ", ".join(f"{v:+.2f}" for v in row.values.values())
    unpaired = f"; seed {', '.join(map(str, row.seeds_missing))} unpaired" if row.seeds_missing else ""
    return f"{int(row.n)}: {shown}{unpaired}"


def count_text(x) -> str:
    """A whole number with thousands separators."""
    return MISSING if missing(x) else f"{int(round(x)):,}"


def failure_reason(row) -> str:
    """Why a run did not finish: its error or state, the step it reached and its last losses."""
    fallback = "still running, or killed while running" if row.state == "running" else row.state
    reason = row.error if isinstance(row.error, str) and row.error else fallback
    if row.state in ("failed", "running") and not missing(row.step) and f"at step {int(row.step)}" not in reason:
        total = "" if missing(row.total_steps) else f"/{int(row.total_steps)}"
        reason += f" (at step {int(row.step)}{total})"
    if isinstance(row.losses, list) and row.losses:
        reason += "; last losses " + ", ".join(f"{x:.3g}" if isinstance(x, (int, float)) else str(x)
                                               for x in row.losses[-3:])
    return reason


def setting_value(value) -> str:
    """A configuration value: a list comma-separated, None (or an empty list) as 'none'."""
    if isinstance(value, (list, tuple)):
        return ", ".join(setting_value(v) for v in value) or "none"
    return "none" if value is None else str(value)


def alt_text(caption: str) -> str:
    """A caption safe inside an image's [alt text] (no square brackets)."""
    return caption.replace("[", "(").replace("]", ")")


def capitalised(text: str) -> str:
    """The text with its first letter upper-case (the rest as written)."""
    return text[:1].upper() + text[1:]


__all__ = ["alt_text", "capitalised", "count_text", "failure_reason", "interval_text", "mean_pm_std", "mean_text",
           "mean_with_ci", "seeds_text", "setting_value", "share_percent"]
