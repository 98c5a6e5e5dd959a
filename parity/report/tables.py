"""Markdown table and number formatting shared by the report's writers (GitHub pipe tables)."""

from __future__ import annotations

import math

import pandas as pd

MISSING = "—"


def missing(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def cell(value) -> str:
    """A table cell that cannot break GitHub's pipe tables."""
    if missing(value):
        return MISSING
    return str(value).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def table(frame: pd.DataFrame) -> str:
    if frame.empty:
        return "None."
    # disable_numparse keeps strings like '+1.20' as written (tabulate would turn them into 1.2)
    return frame.apply(lambda column: column.map(cell)).to_markdown(index=False, disable_numparse=True)


def number(x, digits: int, signed: bool = False) -> str:
    return MISSING if missing(x) else (f"{x:+.{digits}f}" if signed else f"{x:.{digits}f}")


def as_float(x):
    """A JSON number: None for nan."""
    return None if missing(x) else float(x)


def ci(interval) -> str:
    """[low, high] of an Interval, signed, 2 decimals."""
    if interval is None or missing(interval.low):
        return "n/a (one seed)" if interval is not None and interval.n == 1 else MISSING
    return f"[{interval.low:+.2f}, {interval.high:+.2f}]"


def p_value(p) -> str:
    return MISSING if missing(p) else (f"{p:.2g}" if p >= 1e-4 else "<1e-4")


__all__ = ["MISSING", "as_float", "ci", "cell", "missing", "number", "p_value", "table"]
