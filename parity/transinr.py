"""Read an original trans-inr YAML (``cfgs/imgrec_*.yaml``) into our configuration."""

from __future__ import annotations

from pathlib import Path

from .config import ExperimentConfig, original_baseline, validate
from .errors import ParityError


def _args(spec: dict, name: str, where: str) -> dict:
    if not isinstance(spec, dict) or spec.get("name") != name or not isinstance(spec.get("args"), dict):
        found = spec.get("name") if isinstance(spec, dict) else None
        raise ParityError(f"{where} is {found!r}, not a {name!r} spec with args: only mamba_lainr_inr models "
                          "(mamba_patch_tokenizer, lainr_mlp_bias, mamba_encoder) can be read; for other models "
                          "use our YAML layout (base: original, then sections)")
    return spec["args"]


REFERENCE = "trans-inr-master/cfgs/imgrec_cifar10_mamba_lainr_fourier_bias.yaml"


def from_transinr_config(data: dict, source: str = "trans-inr config") -> ExperimentConfig:
    """The original baseline with the YAML's model, optimiser, epochs, batch size and data applied."""
    try:
        return _from_transinr_config(data, source)
    except ParityError:
        raise
    except KeyError as e:  # a key the trans-inr layout always has
        raise ParityError(f"{source} lacks the key {e.args[0]!r} of a trans-inr config: compare it with "
                          f"{REFERENCE}") from None
    except (TypeError, ValueError, AttributeError) as e:  # e.g. a number that is not one, a list for a mapping
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ParityError(f"{source} has a malformed entry ({reason}): compare it with {REFERENCE}") from None


def _from_transinr_config(data: dict, source: str) -> ExperimentConfig:
    cfg = original_baseline()
    cfg.name = Path(source).stem  # the run folder is named after it: the file's stem, never its path
    model = _args(data["model"], "mamba_lainr_inr", f"model in {source}")
    tok = _args(model.get("tokenizer"), "mamba_patch_tokenizer", f"model.args.tokenizer in {source}")
    hyp = _args(model.get("hyponet"), "lainr_mlp_bias", f"model.args.hyponet in {source}")
    enc = _args(model.get("mamba_encoder"), "mamba_encoder", f"model.args.mamba_encoder in {source}")
    m, t, d = cfg.model, cfg.train, cfg.data
    m.dim, m.depth = int(enc["dim"]), int(enc.get("depth", 6))
    m.ff_dim = int(enc["ff_dim"]) if enc.get("ff_dim") and int(enc["ff_dim"]) != 4 * m.dim else None
    m.decoder_width = m.dim  # the source ties the decoder width to the encoder dim
    m.patch_size = int(tok["patch_size"])
    m.pos_code = {"fourier": "fourier", "learned": "learned"}.get(tok.get("pos_emb", "learned"), "none")
    if m.pos_code == "learned":
        raise ParityError(f"{source}: pos_emb 'learned' is not among the registry's position codes (none, fourier): "
                          "set pos_emb: fourier in the tokenizer args")
    d.image_size = int(tok.get("input_size", 32))
    m.feature_dim, m.sigma_q = int(hyp["feature_dim"]), float(hyp["sigma_q"])
    m.sigma_ls = [float(s) for s in hyp["sigma_ls"]]
    m.num_lp, m.lp_type, m.n_group = int(model.get("num_lp", 128)), model.get("type", "equidistant"), int(model.get("n_group", 1))
    opt = data.get("optimizer", {"name": "adamw", "args": {}})
    if opt.get("name") != "adamw":
        raise ParityError(f"{source}: optimizer {opt.get('name')!r} is not supported: the harness trains with AdamW "
                          "(optimizer: {name: adamw, args: {lr: ...}})")
    t.lr = float(opt["args"]["lr"])
    t.weight_decay = float(opt["args"].get("weight_decay", 1e-2))
    t.epochs = int(data.get("max_epoch", t.epochs))
    t.warmup_epochs = int(data.get("warmup_epochs", 5))
    train_ds = data.get("train_dataset") or {}
    t.batch_size = int(train_ds.get("loader", {}).get("batch_size", t.batch_size))
    cfg.eval.batch_size = int((data.get("test_dataset") or {}).get("loader", {}).get("batch_size", t.batch_size))
    imageset = train_ds.get("args", {}).get("imageset", {})
    if imageset.get("name") == "cifar_10":
        d.dataset = "numbered-jpeg"
        d.root = imageset.get("args", {}).get("root_path")
        d.jpeg_quality = None  # the files are the JPEG copies themselves: no emulated round trip
    d.image_size = int(train_ds.get("args", {}).get("resize", d.image_size))
    return validate(cfg)
