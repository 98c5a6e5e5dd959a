"""The CUDA-free Mamba layer has mamba_ssm's names, shapes, defaults and block semantics."""

import math

import pytest
import torch

from parity.core.ssm import BiMamba, BiMambaEncoder, Block, Mamba, feedforward
from parity.testing import rel_err


def test_mixer_parameters_follow_mamba_ssm_defaults():
    torch.manual_seed(0)
    m = Mamba(d_model=64)
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert shapes == {"A_log": (128, 16), "D": (128,), "in_proj.weight": (256, 64), "conv1d.weight": (128, 1, 4),
                      "conv1d.bias": (128,), "x_proj.weight": (4 + 32, 128), "dt_proj.weight": (128, 4),
                      "dt_proj.bias": (128,), "out_proj.weight": (64, 128)}
    assert torch.equal(m.A_log, torch.log(torch.arange(1, 17.0)).expand(128, -1))
    assert torch.equal(m.D, torch.ones(128))
    bound = m.dt_rank ** -0.5
    assert m.dt_proj.weight.abs().max() <= bound
    dt = torch.nn.functional.softplus(m.dt_proj.bias)  # softplus(bias) is the initial step, in [1e-3, 0.1]
    assert dt.min() >= 1e-3 * (1 - 1e-4) and dt.max() <= 0.1 * (1 + 1e-4)
    assert m.dt_rank == math.ceil(64 / 16)


def test_same_seed_same_initial_weights():
    torch.manual_seed(3)
    a = BiMambaEncoder(dim=32, depth=2, ff_dim=64).state_dict()
    torch.manual_seed(3)
    b = BiMambaEncoder(dim=32, depth=2, ff_dim=64).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bimamba_is_mean_of_forward_and_flipped_reverse():
    torch.manual_seed(0)
    mixer = BiMamba(16)
    x = torch.randn(2, 9, 16)
    expected = (mixer.f_mamba(x) + mixer.r_mamba(x.flip(1)).flip(1)) / 2
    assert torch.equal(mixer(x), expected)


def test_block_returns_mlp_output_and_residual():
    torch.manual_seed(0)
    block = Block(16, mixer_cls=BiMamba, mlp_cls=lambda d: feedforward(d, 32))
    x, res = torch.randn(2, 5, 16), torch.randn(2, 5, 16)
    hidden, residual = block(x, residual=res)
    r1 = x + res
    mixed = block.mixer(block.norm(r1))
    r2 = mixed + r1
    assert torch.allclose(residual, r2)
    assert torch.allclose(hidden, block.mlp(block.norm2(r2)))


def test_encoder_drops_the_last_residual_unless_asked():
    torch.manual_seed(0)
    enc = BiMambaEncoder(dim=16, depth=2)
    x = torch.randn(1, 7, 16)
    plain = enc(x)
    enc.add_final_residual = True
    assert rel_err(enc(x) - plain, plain) > 0.01  # the improvement toggle really adds something


def mixer_run(mixer, x, scan):
    """Output and every gradient (input, parameters) of ``mixer`` on ``scan``."""
    mixer.scan = scan
    mixer.zero_grad()
    leaf = x.clone().requires_grad_()
    out = mixer(leaf)
    out.backward(torch.randn(out.shape, generator=torch.Generator().manual_seed(1)))
    return out.detach(), leaf.grad, {n: p.grad.clone() for n, p in mixer.named_parameters()}


@pytest.mark.parametrize("d_model, d_state, length, batch", [(64, 16, 33, 3), (24, 5, 20, 2), (40, 16, 1, 1)])
def test_fused_mixer_matches_the_unfused_one(d_model, d_state, length, batch):
    """On 'compiled' the mixer runs conv, x_proj, dt_proj and the scan as one node (fused.py); the unfused path on
    the chunked scan gives the same output and gradients. d_inner 48 and 80 leave channels outside the groups of
    4 on some thread splits; d_state 5 goes through padded copies of B and C."""
    torch.manual_seed(0)
    mixer = Mamba(d_model, d_state=d_state)
    with torch.no_grad():  # a non-trivial gate and skip
        mixer.D.uniform_(-1, 1)
        mixer.conv1d.bias.uniform_(-0.5, 0.5)
    x = torch.randn(batch, length, d_model, generator=torch.Generator().manual_seed(2))
    fused_out, fused_gx, fused_grads = mixer_run(mixer, x, "compiled")
    out, gx, grads = mixer_run(mixer, x, "chunked")
    assert rel_err(fused_out, out) <= 1e-5
    assert rel_err(fused_gx, gx) <= 1e-4
    assert fused_grads.keys() == grads.keys()
    for name in grads:
        assert rel_err(fused_grads[name], grads[name]) <= 1e-4, name


def test_each_kernel_call_of_the_fused_mixer_is_a_profiler_range():
    """A profile of the fused mixer shows each compiled kernel call as its own parity:: range (what
    parity.bench.step splits a step's time by): one scan each way, the conv forward twice (backward recomputes
    x) and once backward; unprofiled, the same calls give the same numbers."""
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    mixer = Mamba(32, d_state=8)
    x = torch.randn(2, 17, 32, generator=torch.Generator().manual_seed(2))
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        profiled = mixer_run(mixer, x, "compiled")
    calls = {e.key: e.count for e in prof.key_averages() if e.key.startswith("parity::")}
    assert calls == {"parity::scan_forward": 1, "parity::scan_backward": 1, "parity::conv_forward": 2,
                     "parity::conv_backward": 1}
    plain = mixer_run(mixer, x, "compiled")
    assert torch.equal(profiled[0], plain[0]) and torch.equal(profiled[1], plain[1])


def test_fused_mixer_without_grad_matches():
    torch.manual_seed(0)
    mixer = Mamba(32)
    x = torch.randn(2, 17, 32)
    with torch.no_grad():
        fused = mixer(x)
        mixer.scan = "chunked"
        plain = mixer(x)
    assert fused.grad_fn is None
    assert rel_err(fused, plain) <= 1e-5


@pytest.mark.parametrize("variant", ["native", "avx2", "scalar"])
@pytest.mark.parametrize("length", [1, 19, 40])
def test_reversed_mixer_is_the_flipped_one(variant, length, kernel_build):
    """reverse=True (BiMamba's backward mixer) reads x and writes its output backwards in time inside the kernels;
    it must equal flipping the input and the output, gradients included, on every kernel build. out_scale halves
    the output exactly."""
    kernel_build(variant)
    torch.manual_seed(0)
    mixer = Mamba(24)  # d_inner 48: channel groups and, on 3 threads, single channels
    with torch.no_grad():
        mixer.D.uniform_(-1, 1)
    x = torch.randn(2, length, 24, generator=torch.Generator().manual_seed(length))
    g = torch.randn(2, length, 24, generator=torch.Generator().manual_seed(5))
    results = []
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        for reverse in (True, False):
            mixer.zero_grad()
            leaf = x.clone().requires_grad_()
            out = mixer(leaf, reverse=True, out_scale=0.5) if reverse else mixer(leaf.flip(1)).flip(1) * 0.5
            out.backward(g)
            results.append([out.detach(), leaf.grad, *[p.grad.clone() for p in mixer.parameters()]])
    finally:
        torch.set_num_threads(before)
    for reversed_, flipped in zip(*results):
        assert rel_err(reversed_, flipped) <= 1e-6
