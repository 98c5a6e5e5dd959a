"""MAMBA-GINR parity toolkit: the shared core (Mamba layer, coordinates) and the harness.

Kept light on purpose: importing ``parity`` loads nothing heavy; import submodules directly.
"""

__version__ = "0.1.0"
