"""keep_freed_memory: freed tensors are reused without page faults; the user's own choice is left alone.
Each case runs in a fresh interpreter, since the setting is the process's."""

import json
import os
import platform
import subprocess
import sys

import pytest

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# steady state of a training-like pattern: two 16 MB tensors made and freed, over and over
CYCLES = r"""
import json, os, resource, sys, torch
from parity.runtime.allocator import keep_freed_memory
state = keep_freed_memory() if sys.argv[1] == "keep" else "not called"
faults = []
for _ in range(8):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a, b = torch.ones(4_000_000), torch.ones(4_000_000)
    del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"state": state, "faults": faults,
                  "env": {k: v for k, v in os.environ.items() if k.startswith("MALLOC_")}}))
"""
PAGES = 2 * 4_000_000 * 4 // 4096  # pages the two tensors span


def _run(mode: str, **env) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k != "PARITY_SYSTEM_MALLOC"}
    done = subprocess.run([sys.executable, "-c", CYCLES, mode], capture_output=True, text=True, check=True,
                          env={**clean, **env})
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_reused_without_page_faults():
    kept, default = _run("keep"), _run("default")
    assert kept["state"].startswith("glibc, freed memory kept")
    assert sum(kept["faults"][-3:]) < 0.02 * PAGES
    assert sum(default["faults"][-3:]) > 2 * PAGES  # glibc's defaults hand the memory back every time


@glibc
def test_processes_started_after_it_keep_freed_memory_too():
    kept = _run("keep")
    assert set(kept["env"]) == {"MALLOC_TRIM_THRESHOLD_", "MALLOC_MMAP_THRESHOLD_"}
    child = _run("default", **kept["env"])  # glibc reads the variables at start
    assert sum(child["faults"][-3:]) < 0.02 * PAGES
    assert _run("keep", **kept["env"])["state"].startswith("glibc, freed memory kept")  # ours, not the user's


def test_the_users_choice_is_left_alone():
    opted_out = _run("keep", PARITY_SYSTEM_MALLOC="1")
    assert opted_out["state"] == "system defaults (PARITY_SYSTEM_MALLOC=1)" and opted_out["env"] == {}
    own = _run("keep", MALLOC_TOP_PAD_="65536")
    assert own["state"] == "the user's settings (MALLOC_TOP_PAD_)" and own["env"] == {"MALLOC_TOP_PAD_": "65536"}
