"""How many processes train into one results folder at once, so each can take its share of the cores.

Every process that trains runs of a folder holds a seat: an flock on OUT/.seats/<pid>. The kernel drops it
when the process dies, so counting the locked seat files counts the live trainers, whatever started them
(two `parity ablate` commands, the workers of `--jobs N`, a Ray worker on this node). Before each run a
process sets torch's threads to the cores divided by the seats taken, so two commands sharing an --out do
not oversubscribe the machine (on 2 cores two processes at 2 threads each ran cells about 10x slower).
An explicit OMP_NUM_THREADS is the user's choice and is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows: no seats, threads as torch chooses
    fcntl = None

SEATS = ".seats"


class Seat:
    """This process's seat at ``folder`` while it trains there (a context manager)."""

    def __init__(self, folder: Path):
        self.folder, self.fd, self.path = Path(folder) / SEATS, None, None

    def __enter__(self) -> Seat:
        if fcntl is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.path = self.folder / str(os.getpid())
            self.fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            self.path.unlink(missing_ok=True)
            os.close(self.fd)
            self.fd = None


def active_seats(folder: Path) -> int:
    """The live processes holding a seat at ``folder`` (stale seat files of dead processes are removed)."""
    seats = Path(folder) / SEATS
    if fcntl is None or not seats.is_dir():
        return 0
    live = 0
    for path in seats.iterdir():
        if path.name == str(os.getpid()):
            live += 1
            continue
        try:
            fd = os.open(path, os.O_RDWR)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            live += 1
        else:
            path.unlink(missing_ok=True)  # its process is gone
        finally:
            os.close(fd)
    return live


def fair_threads(folder: Path, cores: int | None = None) -> int | None:
    """Torch threads for this process: the cores shared equally among the seats at ``folder`` (at least 1);
    None when OMP_NUM_THREADS is set (the user chose)."""
    if os.environ.get("OMP_NUM_THREADS"):
        return None
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cores // max(1, active_seats(folder)))


def share_cores(folder: Path) -> None:
    """Set torch's threads to this process's fair share of the cores (see fair_threads)."""
    threads = fair_threads(folder)
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)


__all__ = ["SEATS", "Seat", "active_seats", "fair_threads", "share_cores"]
