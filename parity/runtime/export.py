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

from ..core.checkpoints import RUN_MODEL, load_state_dict_strict, read_checkpoint
from ..core.errors import ParityError
from ..core.store import atomic_torch_save, write_json
from ..experiment.build import build_model, notebook_kwargs, transinr_spec
from ..experiment.configfile import load_yaml
from .rundir import RunDir

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


class TransInrConverter:
    """To trans-inr's checkpoint dict, for an original-decoder run."""

    fmt, decoder = "transinr", "lainr"
    source, architecture, target = "trans-inr", "original", "trans-inr"  # how refusals name it

    def harness_only(self, cfg) -> list[str]:
        return harness_only_transinr(transinr_spec(cfg.model, cfg.data.image_size))

    def write(self, out: Path, model, cfg, run_dir: Path, step: int) -> None:
        import original_port

        original_port.save_checkpoint(out, model, transinr_spec(cfg.model, cfg.data.image_size), epoch=step,
                                      cfg={"parity_config": cfg.to_dict()})


class NotebookConverter:
    """To the notebook's bare state dict, for a notebook-decoder run, with its class's arguments beside it."""

    fmt, decoder = "notebook", "notebook"
    source, architecture, target = "the notebook's class", "notebook", "the notebook"  # how refusals name it

    def harness_only(self, cfg) -> list[str]:
        return harness_only_notebook(notebook_kwargs(cfg.model, cfg.data.image_size))

    def write(self, out: Path, model, cfg, run_dir: Path, step: int) -> None:
        # the notebook's format is a bare state dict; what builds the class it loads into goes beside it
        atomic_torch_save(out, {k: v.detach().clone() for k, v in model.state_dict().items()})
        write_json(kwargs_file(out), {"class": "notebook_port.MambaGINR_CIFAR",
                                      "kwargs": notebook_kwargs(cfg.model, cfg.data.image_size), "run": str(run_dir),
                                      "step": step})


CONVERTERS = {c.fmt: c for c in (TransInrConverter(), NotebookConverter())}
FORMATS = tuple(CONVERTERS)


def export_run(run_dir, fmt: str, out) -> Path:
    """Write ``run_dir``'s latest weights (its checkpoint.pt) as ``fmt`` to ``out``; returns ``out``."""
    run_dir, out = Path(run_dir), Path(out)
    if fmt not in CONVERTERS:
        raise ParityError(f"unknown export format {fmt!r}: choose one of {', '.join(FORMATS)}")
    converter = CONVERTERS[fmt]
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
    if not isinstance(state, dict) or not isinstance(state.get(RUN_MODEL), dict):
        raise ParityError(f"{run.checkpoint} is not a parity run checkpoint: its 'model' state dict is missing")
    if cfg.model.decoder != converter.decoder:
        other = next(c.fmt for c in CONVERTERS.values() if c.decoder == cfg.model.decoder)
        raise ParityError(f"{run_dir} is a {cfg.model.decoder}-decoder run ({cfg.name}): {converter.source} builds "
                          f"only its own decoder; export it with --format {other}")
    extra = converter.harness_only(cfg)
    if extra:
        raise ParityError(f"{cfg.name} mixes in settings {converter.source} cannot build ({', '.join(extra)}): only "
                          f"runs whose model is the {converter.architecture}'s architecture export to "
                          f"{converter.target}")
    model = build_model(cfg)  # the port's own class, as the source builds it (the checks above)
    load_state_dict_strict(model, state[RUN_MODEL], source=f"checkpoint {run.checkpoint}")
    converter.write(out, model, cfg, run_dir, int(state.get("step", 0)))
    return out


def kwargs_file(out) -> Path:
    """Beside a notebook export: the constructor arguments its state dict loads into (``<out>.json``)."""
    out = Path(out)
    return out.with_name(out.name + ".json")


__all__ = ["CONVERTERS", "FORMATS", "NotebookConverter", "TransInrConverter", "export_run", "harness_only_notebook",
           "harness_only_transinr", "kwargs_file"]
