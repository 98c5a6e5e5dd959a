"""A Mamba layer that runs without CUDA: mixer, Block, bidirectional encoder and scans."""

from .mamba import BiMamba, BiMambaEncoder, Block, Mamba, feedforward
from .scan import SCAN_IMPLS, get_default_scan, selective_scan, selective_scan_ref, set_default_scan

__all__ = ["Mamba", "BiMamba", "Block", "BiMambaEncoder", "feedforward", "selective_scan",
           "selective_scan_ref", "set_default_scan", "get_default_scan", "SCAN_IMPLS"]
