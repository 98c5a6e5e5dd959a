"""Migration back to the sources: a run's weights in the format its source loads.

- ``transinr``: the trans-inr checkpoint dict (``{'model': {'name', 'args', 'sd'}, 'epoch', 'cfg'}``) that
  ``trans-inr-master``'s trainers write and ``original_port.load_checkpoint`` reads, for an original-decoder run;
- ``notebook``: the notebook's bare ``state_dict`` of ``MambaGINR_CIFAR``, for a notebook run, with the class's
  constructor arguments beside it (``<out>.json``): a bare state dict loads only into a model built first.

A mixed variant that neither source can build (a harness toggle away from the source's behaviour) is
refused with the reason: the exported file would load into nothing the user has.
"""

from __future__ import annotations

import inspect
from pathlib import Path

from ..core.errors import ParityError
from ..core.store import write_json
from ..spec.build import build_model, notebook_kwargs, transinr_spec

FORMATS = ("transinr", "notebook")
# What trans-inr's own classes take: the harness adds arguments only where a configuration differs from them.
TRANSINR_KEYS = {
    "args": {"tokenizer", "hyponet", "mamba_encoder", "type", "n_group", "num_lp"},
    "tokenizer": {"input_size", "patch_size", "dim", "pos_emb"},
    "hyponet": {"feature_dim", "input_dim", "output_dim", "sigma_q", "sigma_ls", "n_patches"},
    "mamba_encoder": {"dim", "depth", "ff_dim"},
}


# Read only by the log-spaced features: with the notebook's Gaussian ones they build nothing.
LOGSPACE_ONLY = ("fourier_dim", "sigma_q", "sigma_hypo")


def harness_only_transinr(spec: dict) -> list[str]:
    """The spec's arguments that trans-inr's classes do not take (harness toggles), as 'where.key'."""
    args = spec["args"]
    extra = [f"args.{k}" for k in args if k not in TRANSINR_KEYS["args"]]
    for part in ("tokenizer", "hyponet", "mamba_encoder"):
        extra += [f"{part}.{k}" for k in args[part]["args"] if k not in TRANSINR_KEYS[part]]
    return extra


def harness_only_notebook(kwargs: dict) -> list[str]:
    """Keyword-only arguments of the notebook port that differ from the notebook's own behaviour."""
    from notebook_port import MambaGINR_CIFAR

    params = inspect.signature(MambaGINR_CIFAR.__init__).parameters
    unused = LOGSPACE_ONLY if kwargs.get("fourier", "gaussian") == "gaussian" else ()
    return [f"{k}={v!r}" for k, v in kwargs.items()
            if params[k].kind is inspect.Parameter.KEYWORD_ONLY and v != params[k].default and k not in unused]


def export_run(run_dir, fmt: str, out) -> Path:
    """Write ``run_dir``'s latest weights (its checkpoint.pt) as ``fmt`` to ``out``; returns ``out``."""
    from ..core.checkpoints import load_state_dict_strict, read_checkpoint
    from ..core.store import atomic_torch_save
    from ..spec.configfile import load_yaml

    run_dir, out = Path(run_dir), Path(out)
    if fmt not in FORMATS:
        raise ParityError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    from .rundir import RunDir

    run = RunDir(run_dir)
    own = {f.resolve() for f in (run.config, run.checkpoint, run.metrics_file, run.status_file, run.history_file,
                                 run.samples)}
    if out.resolve() in own or kwargs_file(out).resolve() in own:
        raise ParityError(f"--out {out} is one of the run's own files: pass a path outside {run_dir} (or another "
                          "name), so the export never writes over the run")
    if not run.config.is_file() or not run.checkpoint.is_file():
        raise ParityError(f"{run_dir} is not a run folder with config.yaml and checkpoint.pt: pass a folder that "
                          "`parity train` or `parity ablate` wrote (…/<variant>/seed-<k>)")
    cfg = load_yaml(run.config)
    state = read_checkpoint(run.checkpoint)
    if not isinstance(state, dict) or not isinstance(state.get("model"), dict):
        raise ParityError(f"{run.checkpoint} is not a parity run checkpoint: its 'model' state dict is missing")
    m, size = cfg.model, cfg.data.image_size
    source, other = ("trans-inr", "notebook") if fmt == "transinr" else ("the notebook's class", "transinr")
    if m.decoder != ("lainr" if fmt == "transinr" else "notebook"):
        raise ParityError(f"{run_dir} is a {m.decoder}-decoder run ({cfg.name}): {source} builds only its own "
                          f"decoder; export it with --format {other}")
    spec = transinr_spec(m, size) if fmt == "transinr" else None
    extra = harness_only_transinr(spec) if fmt == "transinr" else harness_only_notebook(notebook_kwargs(m, size))
    if extra:
        raise ParityError(f"{cfg.name} mixes in settings {source} cannot build ({', '.join(extra)}): only runs whose "
                          f"model is the {'original' if fmt == 'transinr' else 'notebook'}'s architecture export "
                          f"to {'trans-inr' if fmt == 'transinr' else 'the notebook'}")
    model = build_model(cfg)  # the port's own class, as the source builds it (the checks above)
    load_state_dict_strict(model, state["model"], source=f"checkpoint {run.checkpoint}")
    if fmt == "transinr":
        import original_port

        original_port.save_checkpoint(out, model, spec, epoch=int(state.get("step", 0)),
                                      cfg={"parity_config": cfg.to_dict()})
    else:
        # the notebook's format is a bare state dict; what builds the class it loads into goes beside it
        atomic_torch_save(out, {k: v.detach().clone() for k, v in model.state_dict().items()})
        write_json(kwargs_file(out), {"class": "notebook_port.MambaGINR_CIFAR",
                                      "kwargs": notebook_kwargs(m, size), "run": str(run_dir), "step": state.get("step")})
    return out


def kwargs_file(out) -> Path:
    """Beside a notebook export: the constructor arguments its state dict loads into (``<out>.json``)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


__all__ = ["FORMATS", "export_run", "harness_only_notebook", "harness_only_transinr", "kwargs_file"]
