"""The results report: load a RUNS_DIR, compute each difference's effect, write markdown with plots.

Kept light: pandas and matplotlib load only when ``write_report`` (or a submodule) is first used.
"""

from __future__ import annotations

__all__ = ["write_report"]


def __getattr__(name):
    # PEP 562: `from parity.report import write_report` imports the heavy module on first use only
    if name == "write_report":
        from .markdown import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
