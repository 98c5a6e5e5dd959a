"""The core the two ports stand on: the CUDA-free Mamba layer (``ssm``), coordinate grids, Fourier
features, and the plumbing they need (checkpoint loading, atomic writes, one-line errors). Nothing
here imports the ports or the harness."""
