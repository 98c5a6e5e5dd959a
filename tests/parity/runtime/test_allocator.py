"""The allocator the parity command runs with: freed tensors are reused without page faults, the program is
started again once with glibc's tunables, and the user's own choice is left alone. Processes under test are
fresh interpreters: glibc reads its tunables only at start."""

import json
import os
import platform
import subprocess
import sys

import pytest

from parity.runtime.allocator import (
    ENV,
    OPT_OUT,
    TUNABLES,
    allocator_environment,
    transparent_huge_pages,
    without_malloc_settings,
)

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc's malloc only")

# a training-like pattern: two 16 MB tensors made and freed, over and over; page faults per round
ROUNDS = r"""
import json, os, resource, torch
faults = []
for _ in range(6):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a, b = torch.ones(4_000_000), torch.ones(4_000_000)
    del a, b
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps(faults))
"""
PAGES = 2 * 4_000_000 * 4 // 4096  # pages the two tensors span


def _faults(env: dict) -> list[int]:
    done = subprocess.run([sys.executable, "-c", ROUNDS], capture_output=True, text=True, check=True, env=env)
    return json.loads(done.stdout.strip().splitlines()[-1])


@glibc
def test_freed_memory_is_reused_without_page_faults():
    kept = _faults(allocator_environment(without_malloc_settings(os.environ)))
    assert sum(kept[1:]) < 0.02 * PAGES  # from the second round on, every block is reused
    # glibc's defaults hand the memory back every round
    assert sum(_faults(without_malloc_settings(os.environ))[1:]) > 2 * PAGES


# a 64 MB tensor, touched; then the process's memory on transparent huge pages, in kB
HUGE = r"""
import torch
x = torch.ones(16_000_000)
print(next(int(line.split()[1]) for line in open("/proc/self/smaps_rollup") if line.startswith("AnonHugePages")))
"""


def _huge_kb(env: dict) -> int:
    done = subprocess.run([sys.executable, "-c", HUGE], capture_output=True, text=True, check=True, env=env)
    return int(done.stdout.strip().splitlines()[-1])


@glibc
@pytest.mark.skipif(transparent_huge_pages() not in ("always", "madvise")
                    or tuple(map(int, platform.libc_ver()[1].split(".")[:2] or (0, 0))) < (2, 35),
                    reason="needs transparent huge pages and glibc 2.35 or later (glibc.malloc.hugetlb)")
def test_large_tensors_sit_on_transparent_huge_pages():
    assert _huge_kb(allocator_environment(without_malloc_settings(os.environ))) >= 32 * 1024  # half the tensor at least
    if transparent_huge_pages() == "madvise":  # only what asks for them gets them
        assert _huge_kb(without_malloc_settings(os.environ)) < 32 * 1024


@glibc
def test_the_program_is_started_again_once_with_the_tunables():
    script = ("import os, sys; from parity.runtime.allocator import relaunch_with_allocator, allocator_state; "
              "print('start', os.getpid(), flush=True); relaunch_with_allocator(); "
              "print('run', os.getpid(), allocator_state())")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                          env=without_malloc_settings(os.environ))
    lines = done.stdout.splitlines()
    assert [line.split()[0] for line in lines] == ["start", "start", "run"]  # once again, then on
    assert len({line.split()[1] for line in lines}) == 1  # the same process (exec)
    assert lines[-1].split(maxsplit=2)[2].startswith("glibc, freed memory kept for reuse")


def test_tunables_join_the_users_other_ones():
    env = allocator_environment({"GLIBC_TUNABLES": "glibc.cpu.hwcaps=-AVX512F", "HOME": "/x"})
    if platform.libc_ver()[0] != "glibc":
        assert env is None
        return
    assert env["HOME"] == "/x"
    items = env[ENV].split(":")
    assert items[0] == "glibc.cpu.hwcaps=-AVX512F" and set(items[1:]) == {f"{k}={v}" for k, v in TUNABLES.items()}
    assert allocator_environment(env) is None  # in force: no second relaunch


@pytest.mark.parametrize("env", [{OPT_OUT: "1"}, {"MALLOC_TOP_PAD_": "65536"},
                                 {ENV: "glibc.malloc.tcache_count=7"}])
def test_the_users_choice_is_left_alone(env):
    assert allocator_environment(env) is None
