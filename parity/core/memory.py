"""This process's memory: its resident size now, its peak so far, and the peak during a block.

One owner for the three readings the trainer, the dry-run estimate, the evaluation stages and the
benchmarks take (Linux's /proc; ``ru_maxrss`` where /proc is missing).
"""

from __future__ import annotations

import os
import resource
import threading

import torch


def _maxrss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mib() -> float:
    """Resident memory of this process now, MiB."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2 ** 20
    except OSError:  # not Linux: the lifetime peak is the best there is
        return _maxrss_mib()


def peak_rss_mib() -> float:
    """Peak resident memory of this address space so far, MiB: VmHWM on Linux. Not ru_maxrss: Linux keeps
    that across fork and exec, so a process started from a large parent would report the parent's peak."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return _maxrss_mib()


def gpu_peak_mib(device: torch.device | str | None) -> float | None:
    """Peak allocated CUDA memory on ``device`` since the last reset, MiB; None off CUDA."""
    device = torch.device(device) if device is not None else None
    if device is None or device.type != "cuda":
        return None
    return torch.cuda.max_memory_allocated(device) / 2 ** 20


class PeakMemory:
    """Peak resident memory of this process during a block, sampled every 20 ms (neither VmHWM nor ru_maxrss
    can be reset between the runs of one matrix or the stages of one evaluation)."""

    def __init__(self, interval: float = 0.02):
        self.interval, self.peak_mb, self.start_mb = interval, 0.0, 0.0
        self._stop = threading.Event()

    def _watch(self):
        while not self._stop.wait(self.interval):
            self.peak_mb = max(self.peak_mb, current_rss_mib())

    def __enter__(self):
        self.start_mb = self.peak_mb = current_rss_mib()
        self._stop.clear()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, current_rss_mib())


__all__ = ["PeakMemory", "current_rss_mib", "gpu_peak_mib", "peak_rss_mib"]
