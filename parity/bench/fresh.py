"""Run one benchmark case in a fresh Python process, so that its peak resident memory
(``ru_maxrss``) belongs to that case alone; the case prints one JSON line as its last output."""

from __future__ import annotations

import json
import resource
import subprocess
import sys


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
