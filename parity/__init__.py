"""MAMBA-GINR parity toolkit: the shared core (Mamba layer, coordinates) and the harness.

Kept light on purpose: importing ``parity`` loads nothing heavy; import submodules directly.

Imports sit at the top of each module, except where importing costs something that most callers never need: the
CLI imports each command's modules inside the command (start-up time), and optional or heavy packages (ray,
matplotlib, torchvision, scikit-image, mamba_ssm, mambapy, rich inside library code) are imported where used.
"""

__version__ = "0.1.0"
