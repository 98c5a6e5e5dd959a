"""What every selective scan does around its recurrence, in one place: the step sizes going in,
dt = softplus(delta + delta_bias), and the D skip and silu(z) gate coming out, (y + D u) silu(z). The
recurrence itself is each implementation's own. Callers cast their inputs first; these keep the dtypes
they are given."""

from __future__ import annotations

import torch.nn.functional as F
from einops import rearrange


def step_sizes(delta, delta_bias=None, delta_softplus: bool = False):
    """dt (batch, d_inner, L) from delta (batch, d_inner, L) and delta_bias (d_inner,) or None."""
    if delta_bias is not None:
        delta = delta + rearrange(delta_bias, "d -> d 1")
    return F.softplus(delta) if delta_softplus else delta


def skip_and_gate(y, u, D=None, z=None):
    """The scan's output from its core output y (batch, d_inner, L): plus D u (D (d_inner,) or None), times
    silu(z) (z like u, or None)."""
    out = y if D is None else y + u * rearrange(D, "d -> d 1")
    return out if z is None else out * F.silu(z)
