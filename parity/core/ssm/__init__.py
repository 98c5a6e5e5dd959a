"""A Mamba layer that runs without CUDA: mixer, Block, bidirectional encoder and scans."""

from .mamba import BiMamba, BiMambaEncoder, Block, Mamba, feedforward, set_scan, use_scan
from .scan import DEFAULT_SCAN, SCAN_IMPLS, selective_scan, selective_scan_ref

__all__ = ["Mamba", "BiMamba", "Block", "BiMambaEncoder", "feedforward", "selective_scan",
           "selective_scan_ref", "set_scan", "use_scan", "DEFAULT_SCAN", "SCAN_IMPLS"]
