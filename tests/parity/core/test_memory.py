"""parity.core.memory: the peak during a block sees memory the block touched and let go again."""

from __future__ import annotations

import time

import torch

from parity.core.memory import PeakMemory, current_rss_mib, gpu_peak_mib, peak_rss_mib


def test_the_peak_of_a_block_sees_an_allocation_it_freed():
    with PeakMemory() as memory:
        ballast = torch.ones(64 * 2 ** 20)  # 256 MiB, written
        time.sleep(0.1)  # at least one sample while it is held
        del ballast
    assert memory.peak_mb - memory.start_mb > 200
    assert peak_rss_mib() >= memory.peak_mb * 0.99  # the high-water mark of the process is at least as high


def test_readings_are_positive_and_the_gpu_reading_is_none_off_cuda():
    assert current_rss_mib() > 0 and peak_rss_mib() >= current_rss_mib() * 0.99
    assert gpu_peak_mib("cpu") is None and gpu_peak_mib(None) is None
