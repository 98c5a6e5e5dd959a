"""Runs that share the machine: seats (how many processes train into one folder), each process's share of the
cores, and `--jobs N` worker processes that end with the same runs, bit for bit, as one process."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from parity.core.errors import ParityError
from parity.runtime.executors import LocalExecutor, make_executor, run_matrix
from parity.runtime.seats import Seat, active_seats, fair_threads

from .test_matrix import TINY

HOLD = textwrap.dedent("""
    import sys, time
    from parity.runtime.seats import Seat
    with Seat(sys.argv[1]):
        print("seated", flush=True)
        time.sleep(60)
""")


def test_seats_count_live_processes_and_forget_dead_ones(tmp_path, monkeypatch):
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    other = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert other.stdout.readline().strip() == "seated"
        assert active_seats(tmp_path) == 1
        with Seat(tmp_path):
            assert active_seats(tmp_path) == 2
            assert fair_threads(tmp_path, cores=8) == 4 and fair_threads(tmp_path, cores=1) == 1
        assert active_seats(tmp_path) == 1
    finally:
        other.kill()
        other.wait()
    assert active_seats(tmp_path) == 0  # the dead process's seat file is found unlocked and removed
    assert not any((tmp_path / ".seats").iterdir())
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert fair_threads(tmp_path, cores=8) is None  # the user's explicit choice is left alone


def run_records(folder):
    out = {}
    for metrics in sorted(folder.glob("*/seed-*/metrics.json")):
        m = json.loads(metrics.read_text())
        out[metrics.parent.relative_to(folder).as_posix()] = (m["test"]["psnr"], m["steps"])
    return out


@pytest.fixture
def one_thread(monkeypatch):
    """One torch thread here and in every worker (which reads OMP_NUM_THREADS when it starts; this process's torch
    was started already): float sums then reduce in the same order everywhere, so numbers can match bit for bit."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_jobs_two_trains_every_run_once_and_matches_one_process(tmp_path, one_thread):
    only = ["notebook+depth", "notebook+lr", "notebook+warmup"]
    one = run_matrix("one-at-a-time", "smoke", 2, tmp_path / "one", TINY, only=only)
    two = run_matrix("one-at-a-time", "smoke", 2, tmp_path / "two", TINY, only=only,
                     executor=make_executor("local", jobs=2))
    assert run_records(one) == run_records(two) and len(run_records(two)) == 8
    for status in two.glob("*/seed-*/status.json"):
        assert json.loads(status.read_text())["state"] == "done"
    assert not any((tmp_path / "two" / ".seats").iterdir())  # every worker gave its seat back


def test_jobs_refused_where_they_mean_nothing():
    with pytest.raises(ParityError, match="--jobs must be at least 1"):
        LocalExecutor(0)
    with pytest.raises(ParityError, match="--jobs is for --executor local"):
        make_executor("ray", jobs=2)
