"""Helpers for asserting parity in tests (ours and users').

- ``rel_err``, ``grad_err``: the golden tensors' error measures.
- ``assert_state_dicts_compatible``: same keys, same shapes.
- ``assert_models_match``: same outputs (and gradients) on the same inputs; a failure names the first
  submodule where the two models part ways (``where_models_part``, through the localiser).
- ``assert_config_matches``: same configuration, each difference named through the registry.
- ``golden_path``: the golden tensors shipped inside the package.

Failures are AssertionErrors whose message is a readable report (a table of the worst offenders).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path

import torch

from .evaluation.compare import as_inputs, fmt, markdown_table, model_calls, named_tensors, tensor_error, tensors_close
from .evaluation.diagnose import localise
from .experiment.config import ExperimentConfig, config_diff
from .experiment.differences import DIFFERENCES, IMPROVEMENTS

GOLDEN_DIR = Path(__file__).parent / "golden"
WORST_SHOWN = 10  # rows of the worst-mismatch table
KEYS_SHOWN = 20  # keys listed per section of a state-dict report


SCAN_INPUT_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def scan_inputs(batch=2, d_inner=6, d_state=4, length=33, seed=0, dtype=torch.float32, dt_range=(1e-3, 0.1),
                delta_scale=0.5):
    """Selective-scan inputs (``SCAN_INPUT_NAMES``) in the ranges a Mamba layer produces: the dt bias is
    softplus^-1 of a log-uniform dt, A is S4D-real (-1..-d_state, jittered per channel)."""
    gen = torch.Generator().manual_seed(seed)
    lo, hi = math.log(dt_range[0]), math.log(dt_range[1])
    dt = torch.exp(torch.rand(d_inner, generator=gen, dtype=torch.float64) * (hi - lo) + lo)
    return {
        "u": torch.randn(batch, d_inner, length, generator=gen, dtype=dtype),
        "delta": torch.randn(batch, d_inner, length, generator=gen, dtype=dtype) * delta_scale,
        "A": -torch.arange(1, d_state + 1, dtype=dtype).repeat(d_inner, 1)
             * (1 + 0.1 * torch.rand(d_inner, 1, generator=gen, dtype=dtype)),
        "B": torch.randn(batch, d_state, length, generator=gen, dtype=dtype),
        "C": torch.randn(batch, d_state, length, generator=gen, dtype=dtype),
        "D": torch.randn(d_inner, generator=gen, dtype=dtype),
        "z": torch.randn(batch, d_inner, length, generator=gen, dtype=dtype),
        "delta_bias": (dt + torch.log(-torch.expm1(-dt))).to(dtype),
    }


def rel_err(actual, expected) -> float:
    """max |actual - expected| / max |expected|: the golden tensors' tolerance measure."""
    actual, expected = torch.as_tensor(actual).double(), torch.as_tensor(expected).double()
    if actual.shape != expected.shape:
        raise AssertionError(f"shape {tuple(actual.shape)} != {tuple(expected.shape)}")
    return ((actual - expected).abs().max() / expected.abs().max().clamp_min(1e-30)).item()


def grad_err(actual, expected, zero: float = 1e-12) -> float:
    """rel_err, except for a gradient that is zero up to rounding (a parameter the loss cannot see):
    then both must be rounding-level, and the error is 0 when they are."""
    expected = torch.as_tensor(expected)
    if expected.abs().max() < zero:
        return 0.0 if torch.as_tensor(actual).abs().max() < zero else float("inf")
    return rel_err(actual, expected)


def golden_path(name: str) -> Path:
    """Path of a golden file shipped with the package (``original_small.pt``, ``notebook_small.pt``,
    ``lr_schedules.json``, ``README.md`` describing them)."""
    path = GOLDEN_DIR / name
    if not path.is_file():
        available = sorted(p.name for p in GOLDEN_DIR.iterdir()) if GOLDEN_DIR.is_dir() else []
        raise FileNotFoundError(f"no golden file {name!r} in {GOLDEN_DIR}: available are {', '.join(available)}")
    return path


def _sort_key(error: float) -> float:
    return math.inf if math.isnan(error) else error


# ---------------------------------------------------------------- state dicts

def _state_dict(x) -> Mapping:
    if isinstance(x, torch.nn.Module):
        return x.state_dict()
    if isinstance(x, Mapping):
        return x
    raise TypeError(f"expected a module or a state dict, got {type(x).__name__}")


def _shape(value) -> str:
    shape = getattr(value, "shape", None)
    return str(tuple(shape)) if shape is not None else type(value).__name__


def _key_section(title: str, lines: list[str]) -> list[str]:
    shown = lines[:KEYS_SHOWN]
    more = [f"  ... and {len(lines) - KEYS_SHOWN} more"] if len(lines) > KEYS_SHOWN else []
    return [f"{title}:", *shown, *more]


def assert_state_dicts_compatible(a, b) -> None:
    """a and b (modules or state dicts) have the same keys with the same shapes, i.e. b loads into a
    with ``strict=True``. Missing: in a, not in b; unexpected: in b, not in a."""
    sa, sb = _state_dict(a), _state_dict(b)
    missing = sorted(set(sa) - set(sb))
    unexpected = sorted(set(sb) - set(sa))
    misshaped = sorted(k for k in set(sa) & set(sb) if _shape(sa[k]) != _shape(sb[k]))
    if not (missing or unexpected or misshaped):
        return
    report = [f"state dicts are not compatible ({len(missing)} missing, {len(unexpected)} unexpected, "
              f"{len(misshaped)} mis-shaped; a has {len(sa)} keys, b has {len(sb)}):"]
    if missing:
        report += _key_section("missing (in a, not in b)", [f"  {k}  {_shape(sa[k])}" for k in missing])
    if unexpected:
        report += _key_section("unexpected (in b, not in a)", [f"  {k}  {_shape(sb[k])}" for k in unexpected])
    if misshaped:
        report += _key_section("mis-shaped", [f"  {k}  a {_shape(sa[k])}  b {_shape(sb[k])}" for k in misshaped])
    raise AssertionError("\n".join(report))


# ---------------------------------------------------------------- models

def _gradients(model: torch.nn.Module, output, loss_fn: Callable) -> dict[str, torch.Tensor]:
    """d loss_fn(output) / d parameter, by name; autograd.grad leaves the models' .grad alone, and a
    parameter the loss does not reach gets a zero gradient."""
    params = {name: p for name, p in model.named_parameters() if p.requires_grad}
    loss = loss_fn(output)
    if not isinstance(loss, torch.Tensor) or not loss.requires_grad:
        raise AssertionError("loss_fn(output) is not a tensor that requires grad: return a scalar computed "
                             "from the output, and do not run the models under torch.no_grad")
    grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
    return {name: torch.zeros_like(p) if g is None else g for (name, p), g in zip(params.items(), grads)}


def _run(model, call, inputs, loss_fn):
    """(named output tensors, named gradients or {}) of one model."""
    with torch.set_grad_enabled(loss_fn is not None):
        output = call(model, *inputs)
        grads = _gradients(model, output, loss_fn) if loss_fn is not None else {}
    named = named_tensors(output)
    return named, {f"grad {k}": v for k, v in grads.items()}


def _mismatches(a: dict, b: dict, rtol: float, atol: float) -> list[tuple[str, float, float, str]]:
    """(name, max abs err, rel err, note) for every entry that is absent on one side or not close."""
    rows = []
    for name in [*a, *(k for k in b if k not in a)]:
        if name not in a or name not in b:
            rows.append((name, math.inf, math.inf, "only in b" if name not in a else "only in a"))
        elif not tensors_close(a[name], b[name], rtol, atol):
            note = "" if a[name].shape == b[name].shape else \
                f"shape a {tuple(a[name].shape)} b {tuple(b[name].shape)}"
            rows.append((name, *tensor_error(a[name], b[name]), note))
    return rows


def assert_models_match(a, b, inputs, rtol: float = 1e-5, atol: float = 1e-6, loss_fn: Callable | None = None,
                        call=None) -> None:
    """Run a and b on the same inputs and compare their outputs (tensors, or tuples/dicts of tensors)
    elementwise, |a - b| <= atol + rtol |b|. ``inputs``: a tuple of positional arguments; ``call``:
    ``call(model, *inputs)`` where the model is not simply ``model(*inputs)``, or a pair (call_a,
    call_b). With ``loss_fn`` (output -> scalar) every parameter's gradient is compared too, by name.
    The models run as they are (train/eval mode untouched)."""
    call_a, call_b = model_calls(call)
    inputs = as_inputs(inputs)
    out_a, grad_a = _run(a, call_a, inputs, loss_fn)
    out_b, grad_b = _run(b, call_b, inputs, loss_fn)
    if not out_a and not out_b:
        raise AssertionError("neither model returned a tensor: pass call=... that returns the output to compare")
    compared = {**out_a, **grad_a}
    rows = _mismatches(compared, {**out_b, **grad_b}, rtol, atol)
    if rows:
        report = _mismatch_report(rows, len(set(compared) | set(out_b) | set(grad_b)), rtol, atol)
        raise AssertionError(report + where_models_part(a, b, inputs, call, rtol, atol))


def where_models_part(a, b, inputs, call=None, rtol: float = 1e-5, atol: float = 1e-6) -> str:
    """The localiser's sentence naming the first submodule where a and b part ways (a line to append to
    a failure), when their module names pair up; '' for models built differently."""
    names_a = {name for name, _ in a.named_modules() if name}
    if not names_a or names_a != {name for name, _ in b.named_modules() if name}:
        return ""
    return f"\nwhere: {localise(a, b, inputs, call=call, rtol=rtol, atol=atol).summary()}"


def _mismatch_report(rows, total: int, rtol: float, atol: float) -> str:
    # Outputs before gradients (a changed output is the headline), each worst first.
    worst = sorted(rows, key=lambda r: (not r[0].startswith("grad "), _sort_key(r[2]), _sort_key(r[1])),
                   reverse=True)[:WORST_SHOWN]
    table = markdown_table(["name", "max abs err", "rel err", "note"],
                           [[name, fmt(err), fmt(rel), note] for name, err, rel, note in worst])
    more = f"\n({len(worst)} of {len(rows)} shown: outputs first, then the worst gradients)" \
        if len(rows) > len(worst) else ""
    return (f"models differ: {len(rows)} of {total} compared tensors beyond rtol={rtol:g}, atol={atol:g} "
            f"(rel err = max abs err / max |b|):\n{table}{more}")


# ---------------------------------------------------------------- configurations

def _registry_names(path: str) -> str:
    """'<id>: <title>' of the registry entries that set ``path``, or 'not a registered difference'."""
    names = [f"{d.id}: {d.title}" for d in DIFFERENCES if path in d.fields]
    names += [f"{i.id} (improvement): {i.title}" for i in IMPROVEMENTS if path in i.fields]
    return "; ".join(names) or "not a registered difference"


def _as_config(cfg):
    if isinstance(cfg, ExperimentConfig):
        return cfg
    if isinstance(cfg, str):
        from .experiment.differences import named_config

        return named_config(cfg)
    raise TypeError(f"expected an ExperimentConfig or a baseline name, got {type(cfg).__name__}")


def assert_config_matches(cfg, baseline) -> None:
    """cfg equals baseline in every field (the name aside). Both are ExperimentConfigs or names
    ('notebook', 'original', or a variant such as 'notebook+coords'). A failure lists each differing
    field with the registry entry that sets it (difference id and title)."""
    cfg, baseline = _as_config(cfg), _as_config(baseline)
    diff = config_diff(cfg, baseline)
    if not diff:
        return
    rows = [[path, repr(ours), repr(theirs), _registry_names(path)] for path, (ours, theirs) in diff.items()]
    table = markdown_table(["field", cfg.name, baseline.name, "registry"], rows)
    raise AssertionError(f"configuration {cfg.name!r} differs from {baseline.name!r} in {len(diff)} "
                         f"field{'s' if len(diff) > 1 else ''}:\n{table}")
