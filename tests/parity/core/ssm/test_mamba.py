"""The CUDA-free Mamba layer has mamba_ssm's names, shapes, defaults and block semantics."""

import math

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
