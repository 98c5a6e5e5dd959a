"""Who trains a run folder: a claim per run (an flock on RUN/.lock), so that several commands, processes or
nodes can share one results folder, each run trained once; and whether a run failed during this command.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ..core.errors import ParityError
from .rundir import RunDir

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None


def claim(run_dir: Path, wait: bool = False):
    """Claim a run for this process: a handle for ``release``, or None when another live process holds
    it (``wait``: block until it lets go). An flock on RUN/.lock: the kernel drops it when its process
    dies, however it dies, so there are no stale locks, no pid reuse, and no window in which a killed
    process leaves a half-written lock. The file is never deleted: unlinking a locked path would let a
    third process lock a new file while a second still waits on the old one."""
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    if fcntl is None:
        return _claim_by_pid_file(lock, wait)
    fd = os.open(lock, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        os.close(fd)
        return None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())  # for people (and the waiting message): who holds it
    return fd


def release(run_dir: Path, handle) -> None:
    if fcntl is None:
        (run_dir / ".lock").unlink(missing_ok=True)
    else:
        os.close(handle)  # closing the descriptor drops the flock


def holder(run_dir: Path) -> str:
    try:
        pid = (run_dir / ".lock").read_text().strip()
    except OSError:
        pid = ""
    return f"process {pid}" if pid else "another process"


def _claim_by_pid_file(lock: Path, wait: bool):
    """Without fcntl (Windows): a lock file created exclusively, holding the owner's pid; locks of dead
    processes are taken over."""
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            os.write(fd, str(os.getpid()).encode())
            os.close(fd)
            return True
        except FileExistsError:
            try:
                pid = int(lock.read_text() or 0)
                os.kill(pid, 0)
                if pid == os.getpid():
                    return True
            except (ValueError, ProcessLookupError, FileNotFoundError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            except (PermissionError, OSError):
                pass
        if not wait:
            return None
        time.sleep(0.5)


def failed_since(run_dir: Path, started: float) -> bool:
    """Failed during this command (by this or a concurrent process): not retried before it ends.
    Failures from earlier commands are retried, as a rerun always has."""
    run = RunDir(run_dir)
    try:
        return run.status_file.stat().st_mtime >= started and run.status().get("state") == "failed"
    except (OSError, ParityError):
        return False


__all__ = ["claim", "failed_since", "holder", "release"]
