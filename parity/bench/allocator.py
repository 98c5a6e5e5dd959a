"""The allocator's effect, measured: the compiled scan's forward + backward and the notebook's training step,
each in two fresh processes, one on glibc's defaults and one keeping freed memory for reuse on transparent huge
pages (the tunables the ``parity`` command starts with, ``parity.runtime.allocator``). Same cases, same code; only
the environment differs."""

from __future__ import annotations

import os

from ..runtime.allocator import OPT_OUT, allocator_environment, without_malloc_settings
from .fresh import run_fresh

SETTINGS = {"glibc's defaults": False, "freed memory kept": True}


def setting_environment(kept: bool) -> dict | None:
    """This process's environment without malloc settings, then with ours (kept) or with the opt-out; None
    where ours cannot apply (not glibc)."""
    clean = without_malloc_settings(os.environ)
    return allocator_environment(clean) if kept else {**clean, OPT_OUT: "1"}


def compare_allocators(scan_shape=(16, 512, 512, 16), scan_repeats: int = 5, step_batch: int = 32,
                       step_repeats: int = 3) -> list[dict]:
    """One row per (case, setting): median, min and max seconds, page faults per run, peak RSS and the allocator
    the process reported (the step). scan_shape: (batch, L, d_inner, d_state); rows name it as the scan table
    does, (batch, d_inner, L, d_state)."""
    rows = []
    for setting, kept in SETTINGS.items():
        env = setting_environment(kept)
        if env is None:
            continue
        scan = run_fresh("parity.bench.scan", ["compiled", "--shape", *map(str, scan_shape),
                                               "--repeats", str(scan_repeats)], env=env)[0]
        rows.append({"case": f"compiled scan fwd+bwd {' x '.join(map(str, scan['shape']))}", "allocator": setting,
                     **{k: scan[k] for k in ("median_s", "min_s", "max_s", "runs", "page_faults")},
                     "peak_rss_mb": None, "process_allocator": None})
        step = run_fresh("parity.bench.step", ["notebook", "--batch", str(step_batch), "--repeats", str(step_repeats)],
                         env=env)
        rows.append({"case": f"notebook training step B={step_batch}", "allocator": setting,
                     **{k: step[k] for k in ("median_s", "min_s", "max_s", "page_faults", "peak_rss_mb")},
                     "runs": step_repeats, "process_allocator": step["allocator"]})
    return rows
