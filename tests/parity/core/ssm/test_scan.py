"""The fast selective scans (chunked PyTorch, compiled C kernel, parallel PyTorch) against the sequential reference:
outputs and every gradient."""

from __future__ import annotations

import pytest
import torch

from parity.core.ssm.chunked import auto_chunk_size, selective_scan_chunked
from parity.core.ssm.compiled import compiled_scan_status, selective_scan_compiled
from parity.core.ssm.parallel import linear_scan, selective_scan_parallel
from parity.core.ssm.scan import selective_scan, selective_scan_ref
from parity.testing import SCAN_INPUT_NAMES as NAMES
from parity.testing import rel_err
from parity.testing import scan_inputs as make_inputs

FAST = {"chunked": selective_scan_chunked, "compiled": selective_scan_compiled, "parallel": selective_scan_parallel}


@pytest.fixture(params=list(FAST))
def fast(request):
    """Each fast scan in turn; 'compiled' must really be the kernel here (CI has a C compiler)."""
    if request.param == "compiled":
        status = compiled_scan_status()
        assert status["compiled"], status["reason"]
    return FAST[request.param]


def run_both(inputs, use=NAMES, softplus=True, chunk_size=None, requires_grad=NAMES, fast=selective_scan_chunked):
    """Outputs and gradients of the reference and a fast scan on the same leaves and output gradient."""
    results = []
    grad_out = None
    for fn in (selective_scan_ref, fast):
        leaves = {k: (v.clone().requires_grad_(k in requires_grad) if k in use else None)
                  for k, v in inputs.items()}
        kwargs = {"chunk_size": chunk_size} if fn is selective_scan_chunked and chunk_size else {}
        out = fn(leaves["u"], leaves["delta"], leaves["A"], leaves["B"], leaves["C"], leaves["D"],
                 z=leaves["z"], delta_bias=leaves["delta_bias"], delta_softplus=softplus, **kwargs)
        if grad_out is None:
            grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=out.dtype)
        wanted = [k for k in NAMES if leaves[k] is not None and leaves[k].requires_grad]
        grads = torch.autograd.grad(out, [leaves[k] for k in wanted], grad_out) if wanted else ()
        results.append((out, dict(zip(wanted, grads))))
    return results


def assert_parity(results, fwd_tol=1e-5, grad_tol=1e-4):
    (ref_out, ref_grads), (out, grads) = results
    assert out.dtype == ref_out.dtype and out.shape == ref_out.shape
    assert rel_err(out, ref_out) <= fwd_tol
    assert grads.keys() == ref_grads.keys()
    for name in ref_grads:
        assert grads[name].shape == ref_grads[name].shape, name
        assert torch.isfinite(grads[name]).all(), name
        assert rel_err(grads[name], ref_grads[name]) <= grad_tol, name


@pytest.mark.parametrize("length", [1, 7, 8, 33, 97, 515])
def test_matches_reference_all_inputs(length, fast):
    assert_parity(run_both(make_inputs(length=length, seed=length), fast=fast))


@pytest.mark.parametrize("chunk_size", [1, 3, 5, 16, 200])
def test_chunk_size_does_not_change_result(chunk_size):
    # 97 is no multiple of any of them, so the last chunk is a partial one (or the only one).
    assert_parity(run_both(make_inputs(length=97, seed=3), chunk_size=chunk_size))


@pytest.mark.parametrize("use, softplus", [
    (("u", "delta", "A", "B", "C"), False),
    (("u", "delta", "A", "B", "C"), True),
    (("u", "delta", "A", "B", "C", "D"), False),
    (("u", "delta", "A", "B", "C", "z"), True),
    (("u", "delta", "A", "B", "C", "delta_bias"), False),
    (("u", "delta", "A", "B", "C", "D", "delta_bias"), True),
])
def test_optional_inputs(use, softplus, fast):
    inputs = make_inputs(length=41, seed=5)
    if not softplus:  # keep dt positive like a real layer would, so the scan decays
        inputs["delta"] = inputs["delta"].abs() * 0.1
        inputs["delta_bias"] = inputs["delta_bias"].exp()
    assert_parity(run_both(inputs, use=use, softplus=softplus, chunk_size=8, fast=fast))


@pytest.mark.parametrize("requires_grad", [("u",), ("A",), ("delta_bias",), ("B", "C"), ("z", "D"), ()])
def test_only_some_inputs_require_grad(requires_grad, fast):
    results = run_both(make_inputs(length=19, seed=7), requires_grad=requires_grad, chunk_size=4, fast=fast)
    assert_parity(results)
    assert set(results[1][1]) == set(requires_grad)


def test_large_delta_is_stable(fast):
    # dt up to ~30 with A down to -17.6: exp(dt*A) underflows to 0, which must stay harmless.
    inputs = make_inputs(length=97, seed=11, dt_range=(1.0, 30.0), delta_scale=3.0)
    results = run_both(inputs, chunk_size=16, fast=fast)
    assert torch.isfinite(results[1][0]).all()
    assert_parity(results)
    inputs["delta"] = inputs["delta"].abs() * 10  # no softplus, raw large delta
    assert_parity(run_both(inputs, use=("u", "delta", "A", "B", "C", "D"), softplus=False, chunk_size=16, fast=fast))


def test_long_sequence_with_slow_decay_is_stable(fast):
    # dt ~ 1e-3 keeps the state alive over the whole sequence; exp(-cumsum) tricks overflow here.
    inputs = make_inputs(batch=1, d_inner=4, d_state=4, length=2000, seed=13, dt_range=(1e-4, 1e-3))
    assert_parity(run_both(inputs, chunk_size=64, fast=fast))


def test_batch_dimension_and_default_chunking(fast):
    inputs = make_inputs(batch=5, d_inner=16, d_state=8, length=70, seed=17)
    assert_parity(run_both(inputs, fast=fast))


def test_no_grad_forward_matches_and_builds_no_graph():
    inputs = {k: v.requires_grad_() for k, v in make_inputs(length=50, seed=19).items()}
    args = [inputs[k] for k in NAMES[:6]]
    kwargs = {"z": inputs["z"], "delta_bias": inputs["delta_bias"], "delta_softplus": True}
    with_grad = selective_scan_chunked(*args, **kwargs)
    with torch.no_grad():
        without = selective_scan_chunked(*args, **kwargs, chunk_size=7)
    assert with_grad.grad_fn is not None and without.grad_fn is None
    assert rel_err(without, with_grad) <= 1e-6
    assert rel_err(without, selective_scan_ref(*args, **kwargs).detach()) <= 1e-5


def test_output_dtype_follows_u():
    inputs = make_inputs(length=20, seed=23)
    half = {k: v.to(torch.bfloat16) for k, v in inputs.items()}
    args = [half[k] for k in NAMES[:6]]
    out = selective_scan_chunked(*args, z=half["z"], delta_bias=half["delta_bias"], delta_softplus=True)
    ref = selective_scan_ref(*args, z=half["z"], delta_bias=half["delta_bias"], delta_softplus=True)
    assert out.dtype == torch.bfloat16
    assert rel_err(out, ref) <= 1e-2  # both compute in float32; only the final rounding may differ


@pytest.mark.parametrize("impl", list(FAST))
def test_dispatcher_uses_the_chosen_scan(impl):
    inputs = make_inputs(length=12, seed=29)
    args = [inputs[k] for k in NAMES[:6]]
    kwargs = {"z": inputs["z"], "delta_bias": inputs["delta_bias"], "delta_softplus": True}
    dispatched = selective_scan(*args, **kwargs, impl=impl)
    assert torch.equal(dispatched, FAST[impl](*args, **kwargs))


def test_compiled_threads_split_channels_without_changing_results():
    inputs = {k: v.requires_grad_() for k, v in make_inputs(batch=3, d_inner=13, length=40, seed=37).items()}
    args = [inputs[k] for k in NAMES[:6]]
    kwargs = {"z": inputs["z"], "delta_bias": inputs["delta_bias"], "delta_softplus": True}
    before = torch.get_num_threads()
    results = []
    try:
        for threads in (1, 3):  # 3 ranges of 13 channels (4, 4, 5: groups and a single one): partial gB/gC sums
            torch.set_num_threads(threads)
            out = selective_scan_compiled(*args, **kwargs)
            results.append([out, *torch.autograd.grad(out.sum(), list(inputs.values()))])
    finally:
        torch.set_num_threads(before)
    for one, three in zip(*results):
        assert rel_err(three, one) <= 1e-6


def test_compiled_falls_back_to_chunked_for_float64():
    inputs = make_inputs(length=9, seed=41, dtype=torch.float64)
    args = [inputs[k] for k in NAMES[:6]]
    out = selective_scan_compiled(*args, z=inputs["z"], delta_bias=inputs["delta_bias"], delta_softplus=True)
    assert out.dtype == torch.float64
    assert torch.equal(out, selective_scan_chunked(*args, z=inputs["z"], delta_bias=inputs["delta_bias"],
                                                   delta_softplus=True))


def test_auto_chunk_size_and_bad_arguments():
    assert auto_chunk_size(16, 512, 16) == 8
    assert 8 <= auto_chunk_size(1, 1, 1) <= 64
    inputs = make_inputs(length=4)
    with pytest.raises(ValueError):
        selective_scan_chunked(*[inputs[k] for k in NAMES[:5]], chunk_size=0)


@pytest.mark.parametrize("scan", [lambda *a, **k: selective_scan_chunked(*a, **k, chunk_size=4),
                                  selective_scan_parallel],
                         ids=["chunked", "parallel"])
def test_gradcheck_float64(scan):
    inputs = make_inputs(batch=1, d_inner=2, d_state=3, length=6, seed=31, dtype=torch.float64)
    leaves = [inputs[k].requires_grad_() for k in NAMES]

    def fn(u, delta, A, B, C, D, z, delta_bias):
        return scan(u, delta, A, B, C, D, z=z, delta_bias=delta_bias, delta_softplus=True)

    assert torch.autograd.gradcheck(fn, leaves, eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("length", [1, 2, 3, 8, 13, 64, 100])
def test_linear_scan_is_the_sequential_recurrence(length, reverse):
    """Every length, powers of two or padded, either direction: x_t = a_t x_{t-1} + b_t from zero along dim 0
    (reversed: x_t = a_t x_{t+1} + b_t), in float64."""
    gen = torch.Generator().manual_seed(length)
    a = torch.rand(length, 2, 3, 4, generator=gen, dtype=torch.float64)
    b = torch.randn(length, 2, 3, 4, generator=gen, dtype=torch.float64)
    x, expected = torch.zeros(2, 3, 4, dtype=torch.float64), [None] * length
    for t in (reversed(range(length)) if reverse else range(length)):
        x = a[t] * x + b[t]
        expected[t] = x
    assert torch.allclose(linear_scan(a, b, reverse), torch.stack(expected), rtol=0, atol=1e-12)


def test_compiled_without_a_working_compiler_falls_back_and_says_why(monkeypatch, tmp_path):
    from parity.core.ssm import compiled

    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    monkeypatch.setenv("PARITY_CACHE", str(tmp_path / "cache"))  # nothing cached: it must try to build
    compiled._library.cache_clear()
    try:
        status = compiled.compiled_scan_status()
        assert not status["compiled"] and "chunked" in status["reason"]
        inputs = make_inputs(length=11, seed=43)
        args = [inputs[k] for k in NAMES[:6]]
        kwargs = {"z": inputs["z"], "delta_bias": inputs["delta_bias"], "delta_softplus": True}
        assert torch.equal(selective_scan_compiled(*args, **kwargs), selective_scan_chunked(*args, **kwargs))
    finally:
        compiled._library.cache_clear()  # the next caller builds (or finds) the real kernel again


def test_loading_the_kernel_keeps_subnormal_floats():
    """A library linked with -ffast-math would switch the process to flush-to-zero on load."""
    assert compiled_scan_status()["compiled"]
    tiny = torch.tensor([1e-39], dtype=torch.float32)  # subnormal in float32
    assert (tiny * 1.0).item() > 0 and (tiny / 2).item() > 0


# The compiled kernel's shapes that take other code paths than the usual one: channels go through it in groups
# of 4 (13 and 37 leave single channels over), d_state is padded to the vector width (5: one vector of zero
# padding, 16: exact on AVX-512, 17 and 40: two and three vectors, the last through the wide-state path),
# L not a multiple of the width leaves a partial block of time steps.
KERNEL_SHAPES = [(13, 5, 37), (37, 16, 20), (13, 17, 33), (6, 40, 9)]
KERNEL_INPUTS = {
    "all": (NAMES, True),
    "bare": (("u", "delta", "A", "B", "C"), False),
    "gate only": (("u", "delta", "A", "B", "C", "z"), False),
    "bias and D": (("u", "delta", "A", "B", "C", "D", "delta_bias"), True),
}


@pytest.mark.parametrize("variant", ["native", "avx2", "scalar"])
@pytest.mark.parametrize("d_inner, d_state, length", KERNEL_SHAPES)
@pytest.mark.parametrize("inputs", list(KERNEL_INPUTS))
def test_compiled_kernel_paths_match_reference(variant, d_inner, d_state, length, inputs, kernel_build):
    kernel_build(variant)
    fn = selective_scan_compiled
    use, softplus = KERNEL_INPUTS[inputs]
    data = make_inputs(batch=2, d_inner=d_inner, d_state=d_state, length=length, seed=d_inner + d_state + length)
    if not softplus:  # keep dt positive like a real layer would, so the scan decays
        data["delta"] = data["delta"].abs() * 0.1
        data["delta_bias"] = data["delta_bias"].exp()
    assert_parity(run_both(data, use=use, softplus=softplus, fast=fn))


@pytest.mark.parametrize("variant", ["avx2", "scalar"])
def test_other_kernel_builds_agree_with_the_native_one(variant, kernel_build):
    """Every build computes the same function: the plain-C one (no explicit vectors) and the AVX2 one against the
    native build, with three threads' channel ranges and gradients included."""
    inputs = make_inputs(batch=3, d_inner=11, d_state=16, length=45, seed=47)
    results = {}
    for v in ("native", variant):
        kernel_build(v)
        fn = selective_scan_compiled
        leaves = {k: x.clone().requires_grad_() for k, x in inputs.items()}
        args = [leaves[k] for k in NAMES[:6]]
        before = torch.get_num_threads()
        torch.set_num_threads(3)
        try:
            out = fn(*args, z=leaves["z"], delta_bias=leaves["delta_bias"], delta_softplus=True)
            results[v] = [out, *torch.autograd.grad(out.sum(), list(leaves.values()))]
        finally:
            torch.set_num_threads(before)
    for native, other in zip(results["native"], results[variant]):
        assert rel_err(other, native) <= 1e-5


def test_timed_kernel_build_computes_the_same_and_times_every_phase(kernel_build):
    """The phases build (parity.bench.scan.bench_scan_phases) only adds clock reads: outputs and gradients
    bit-identical to the native build's; after a forward + backward every phase has taken time, and reading
    the timers starts them from zero. Other builds have no timers and say so."""
    import ctypes

    from parity.core.ssm.compiled import kernel_library

    inputs = make_inputs(batch=2, d_inner=9, d_state=16, length=40, seed=59)
    results, timers = {}, {}
    for variant in ("native", "phases"):
        kernel_build(variant)
        lib = kernel_library()
        seconds = (ctypes.c_double * 7)()
        lib.scan_phase_seconds(seconds)
        leaves = {k: x.clone().requires_grad_() for k, x in inputs.items()}
        out = selective_scan_compiled(*[leaves[k] for k in NAMES[:6]], z=leaves["z"], delta_bias=leaves["delta_bias"],
                                      delta_softplus=True)
        results[variant] = [out, *torch.autograd.grad(out.sum(), list(leaves.values()))]
        timers[variant] = (lib.scan_phase_seconds(seconds), list(seconds))
        lib.scan_phase_seconds(seconds)
        timers[variant] += (list(seconds),)
    for native, timed in zip(results["native"], results["phases"]):
        assert torch.equal(native, timed)
    assert timers["native"][0] == 0 and timers["native"][1] == [0.0] * 7
    built, seconds, after_read = timers["phases"]
    assert built == 1 and all(s > 0 for s in seconds) and after_read == [0.0] * 7


def test_compiled_kernel_handles_extreme_decays():
    """exp(dt A) from underflow (dt A far below -87: zero, subnormal) to exactly 1 (dt = 0) stays finite and
    matches the reference."""
    data = make_inputs(batch=1, d_inner=9, d_state=16, length=30, seed=53)
    data["A"] = data["A"] * torch.logspace(-3, 3, 9).unsqueeze(1)  # A from about -1e-3 to -1.8e4
    data["delta"] = data["delta"].abs()
    data["delta"][..., 5] = 0.0
    results = run_both(data, use=("u", "delta", "A", "B", "C", "D"), softplus=False, fast=selective_scan_compiled)
    assert all(torch.isfinite(g).all() for g in results[1][1].values())
    assert_parity(results)


def kernel_call(data, g, time_major: bool, reverse: bool = False):
    """run_scan_forward and run_scan_backward on ``data`` with out and g in rows (batch, d_inner, L) or time-major
    (batch, L, d_inner) memory, as the fused mixer has them; g given as (batch, d_inner, L). Returns out, then every
    gradient, all as (batch, d_inner, L)."""
    from einops import rearrange

    from parity.core.ssm.compiled import kernel_library, padded_state, run_scan_backward, run_scan_forward

    u, delta, A, B, C, D, z, bias = (data[k] for k in NAMES)
    width = kernel_library().scan_lanes()
    A_p = padded_state(A, width)
    Bt, Ct = (padded_state(rearrange(t, "b n l -> b l n"), width) for t in (B, C))

    def layout(t):
        return rearrange(rearrange(t, "b d l -> b l d").contiguous(), "b l d -> b d l") if time_major else t.clone()

    out, g = layout(torch.empty_like(u)), layout(g)
    run_scan_forward(u, delta, A_p, Bt, Ct, D, z, bias, True, out, reverse)
    grads = ([torch.empty_like(u) for _ in range(3)]
             + [torch.empty_like(A_p), torch.empty_like(bias), torch.empty_like(D)])
    gB, gC = torch.empty_like(B), torch.empty_like(C)
    run_scan_backward(u, delta, A_p, Bt, Ct, D, z, bias, True, g, *grads[:3], *grads[3:], gB, gC, reverse)
    return [out.contiguous(), *grads, gB, gC]


@pytest.mark.parametrize("d_inner, length, threads", [(40, 37, 1), (40, 37, 2), (64, 16, 2), (21, 5, 1), (128, 33, 2)])
def test_time_major_out_and_g_match_the_rows_layout_bit_for_bit(d_inner, length, threads):
    """The fused mixer's layout (out and g time-major: read and written 16 channels at a time through a staging
    buffer on AVX-512, the rest of a thread's channels 4 or 1 at a time) gives the rows layout's numbers exactly,
    and so does a reversed call (out and z backwards in time) against the rows layout on flipped z, out and g."""
    data = make_inputs(batch=3, d_inner=d_inner, d_state=16, length=length, seed=61)
    g = torch.randn(3, d_inner, length, generator=torch.Generator().manual_seed(62))
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rows = kernel_call(data, g, time_major=False)
        for got, want in zip(kernel_call(data, g, time_major=True), rows):
            assert torch.equal(got, want)
        flipped = {**data, "z": data["z"].flip(-1)}
        rows = kernel_call(flipped, g.flip(-1), time_major=False)
        reverse = kernel_call(data, g, time_major=True, reverse=True)
        rows[0], rows[3] = rows[0].flip(-1), rows[3].flip(-1)  # out and gz run backwards in time
        for got, want in zip(reverse, rows):
            assert torch.equal(got, want)
    finally:
        torch.set_num_threads(before)
