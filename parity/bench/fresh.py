"""Run one benchmark case in a fresh Python process, so that its peak resident memory
(``ru_maxrss``) belongs to that case alone; the case prints one JSON line as its last output."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


def rss_mb() -> float:
    """Peak resident memory of this process so far, MiB: VmHWM of this address space on Linux.
    Not ru_maxrss: Linux keeps that across fork and exec, so a case started from a large parent
    (the suite, after the reference scan) would report the parent's peak as its own."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux, the fallback


def minor_faults() -> int:
    """Minor page faults of this process so far: first touches of memory it had not used, or had handed back."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def run_fresh(module: str, args: list[str], env: dict | None = None) -> dict:
    """``python -m module *args`` (in ``env``, or this process's environment) -> the JSON object it printed last."""
    done = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, check=False,
                          env=env)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark subprocess {module} failed: {done.stderr.strip().splitlines()[-1:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
