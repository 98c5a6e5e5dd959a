"""How the processes of the ``parity`` command treat freed memory.

glibc's malloc hands large freed blocks back to the operating system (blocks above its mmap threshold are
unmapped on free; free memory at the heap's top beyond its trim threshold is trimmed). Training allocates
and frees tensors of the same sizes every step, so each step takes them back as fresh pages, and the first
touch of every 4 KiB page is a page fault: about 1 us each on this VM, some 15 ms of the compiled scan's 49 ms
forward + backward (12,256 faults) and 100,000 faults or more in each of the original's training steps.

Keeping freed memory (higher thresholds) is not enough on its own: torch asks for 64-byte aligned blocks, glibc
carves each from a slightly larger one, and the small pieces it cuts off sit in its per-thread cache (tcache)
and fast bins, where they do not merge back. A freed block then stays a few bytes too small for the same request
next step, and the heap grows instead: with the thresholds alone, a decoding run's peak went from 0.78 to 1.8 GiB
in some runs. With the cache and the fast bins off as well, the pieces merge back at once and every block is
reused. ``parity bench`` measures both settings side by side (``reports/benchmarks.md``, *The allocator*): the
scan's forward + backward 49 -> 34 ms and 12,256 -> 0 page faults a run, the notebook's step 34,755 -> 6,147
page faults and 1.41 -> 1.32 GiB at its peak. Measured once each besides: decoding 32 images at 256x256 10.6 ->
6.5 s; the original's step peak 2.64 -> 2.31 GiB.

The heap is also asked for transparent huge pages (``glibc.malloc.hugetlb=1``: glibc 2.35 or later madvises it;
older ones ignore the setting, and so does a system whose huge pages are off): with 2 MiB pages instead of 4 KiB
ones, the kernels' reads and writes that stride across a tensor (the scan's time-major output, a line every
d_inner floats) and the matrix products miss the TLB far less. Measured in A/B pairs of fresh processes: the
original's training step at B=16 2.70-2.89 -> 2.47-2.69 s, the notebook's at B=32 0.78 -> 0.74-0.76 s, the compiled
scan's forward + backward about 10% faster; peak RSS unchanged (2.15 and 2.16 GiB after one original step).

glibc reads these settings (its tunables) only when a process starts, so ``relaunch_with_allocator`` starts the
program once more with them in ``GLIBC_TUNABLES``; the processes it starts in turn (benchmark cases, Ray
workers) inherit them. Where the user has set any of glibc's malloc tunables or ``MALLOC_*_`` variables, or
``PARITY_SYSTEM_MALLOC=1``, nothing is changed.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Mapping
from pathlib import Path

TUNABLES = {
    "glibc.malloc.tcache_count": 0,  # freed small pieces merge back at once instead of waiting in a cache
    "glibc.malloc.mxfast": 0,  # ... or in the fast bins
    "glibc.malloc.trim_threshold": 2**31 - 1,  # free memory kept at the heap's top (the most glibc takes)
    "glibc.malloc.mmap_threshold": 1 << 30,  # blocks below 1 GiB come from the heap, reused rather than unmapped
    "glibc.malloc.hugetlb": 1,  # ... on transparent huge pages where the system offers them (madvise)
}
OPT_OUT = "PARITY_SYSTEM_MALLOC"
ENV = "GLIBC_TUNABLES"


def _tunables(env: Mapping[str, str]) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in env.get(ENV, "").split(":") if "=" in item)
    return {name: value for name, value in pairs}


def _opted_out(env: Mapping[str, str]) -> bool:
    return env.get(OPT_OUT, "") not in ("", "0")


def _glibc() -> bool:
    return platform.libc_ver()[0] == "glibc"


def _ours_in_force(env: Mapping[str, str]) -> bool:
    return all(_tunables(env).get(k) == str(v) for k, v in TUNABLES.items())


def _users_settings(env: Mapping[str, str]) -> list[str]:
    """The user's own malloc settings in ``env``: glibc malloc tunables other than ours, MALLOC_*_ variables."""
    own = [k for k, v in _tunables(env).items() if k.startswith("glibc.malloc.") and str(TUNABLES.get(k)) != v]
    return own + sorted(k for k in env if k.startswith("MALLOC_") and k.endswith("_"))


def without_malloc_settings(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without any malloc setting (ours, the user's, the opt-out): glibc's defaults."""
    return {k: v for k, v in env.items() if k not in (ENV, OPT_OUT) and not k.startswith("MALLOC_")}


def allocator_environment(env: Mapping[str, str]) -> dict[str, str] | None:
    """``env`` with our tunables added to ``GLIBC_TUNABLES`` (other tunables there kept), or None where
    nothing is to change: they are in force already, the user opted out or has malloc settings of their
    own, or the C library is not glibc."""
    if _opted_out(env) or _users_settings(env) or not _glibc():
        return None
    if _ours_in_force(env):
        return None
    merged = {**_tunables(env), **{k: str(v) for k, v in TUNABLES.items()}}
    return {**env, ENV: ":".join(f"{k}={v}" for k, v in merged.items())}


def relaunch_with_allocator() -> None:
    """Start this program again, in this process (exec: same pid, same open files), with the allocator's
    tunables, which glibc reads only at start; returns at once where ``allocator_environment`` has nothing
    to change (the relaunched program among them) or the exec fails."""
    env = allocator_environment(os.environ)
    if env is None or not getattr(sys, "orig_argv", None):
        return
    try:
        os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
    except OSError:  # e.g. no permission to run the interpreter again: go on with glibc's defaults
        return


def transparent_huge_pages() -> str | None:
    """The system's transparent huge page mode (always, madvise or never), None where it does not say."""
    try:
        text = Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return None
    return next((word[1:-1] for word in text.split() if word.startswith("[")), None)


def allocator_state() -> str:
    """One line for reports: the allocator settings this process started with."""
    if _opted_out(os.environ):
        return f"glibc's defaults ({OPT_OUT}={os.environ[OPT_OUT]})"
    if not _glibc():
        return "the system's allocator (not glibc)"
    if _ours_in_force(os.environ):
        pages = ("on transparent huge pages" if transparent_huge_pages() in ("always", "madvise")
                 else "on 4 KiB pages (transparent huge pages are off here)")
        return ("glibc, freed memory kept for reuse (tcache and fast bins off, trim threshold 2 GiB, "
                f"mmap threshold 1 GiB), {pages}")
    user = _users_settings(os.environ)
    return f"the user's settings ({', '.join(user)})" if user else "glibc's defaults"
