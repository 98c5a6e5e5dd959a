"""Read an original trans-inr YAML (``cfgs/imgrec_*.yaml``) into our configuration.

Every key of such a file is read by name; nothing is dropped silently. A key is either honoured
(it sets a field of our configuration), accepted because it cannot change what is trained (listed
below), or refused with a one-line error that names it. Keys this reader does not know are refused,
with the closest known name where there is one.

Top level
    ``trainer`` (required)   the schedule: ``imgrec_trainer_lainr`` -> train.lr_horizon 'end' (warm-up,
                             cosine to 1e-8 at the last epoch); ``imgrec_trainer_lainr_constant`` ->
                             'constant' (warm-up, lr held until 95% of the epochs, then cosine to 1e-8
                             at the last epoch). Other trainers (``_ddp``, ``_sr``, ``imgrec_trainer``
                             ...) train another model or loss, or hold until 90%: refused.
    ``max_epoch`` (required) train.epochs
    ``warmup_epochs``        train.warmup_epochs (the trainers' default when absent: 5)
    ``optimizer`` (required) ``adamw`` only; ``args.lr`` -> train.lr, ``args.weight_decay`` -> train.weight_decay
                             (AdamW's default when absent: 0.01). The harness builds ``AdamW(lr, weight_decay)``,
                             so any other AdamW argument (betas, eps, amsgrad, maximize, foreach, capturable,
                             differentiable, fused) is refused unless it equals torch's default.
    ``model`` (required)     below
    ``train_dataset`` (required), ``test_dataset``: below
    accepted, no effect on training: ``eval_epoch``, ``vis_epoch``, ``save_epoch`` (how often the source
        evaluates, draws and saves; the harness evaluates on its own schedule), ``start_epoch`` (the
        source's trainers overwrite it: 1, or the resumed checkpoint's epoch + 1)
    refused unless null: ``resume_from`` (continues from a trans-inr checkpoint), ``eval_model``
        (evaluates a checkpoint instead of training)

``model``: ``name: mamba_lainr_inr``; ``args``:
    ``num_lp``, ``type``, ``n_group``: model.num_lp (default 128), model.lp_type (default equidistant),
        model.n_group (default 1)
    ``latent_token_len``: accepted (the source stores it and never reads it)
    ``tokenizer`` (``mamba_patch_tokenizer``): ``input_size`` -> data.image_size (must equal the datasets'
        ``resize``), ``patch_size`` -> model.patch_size, ``pos_emb: fourier`` -> model.pos_code 'fourier'
        ('learned', the source's default, and any other value are refused), ``dim``: the source replaces
        it with the encoder's dim, so it is accepted when equal to it and refused otherwise;
        ``padding`` (0), ``img_channels`` (3), ``pos_emb_dim`` (32): refused unless the default
    ``hyponet`` (``lainr_mlp_bias``): ``feature_dim``, ``sigma_q``, ``sigma_ls`` -> model fields;
        ``input_dim`` (2), ``output_dim`` (3): refused otherwise; ``n_patches``: must equal
        (input_size / patch_size)^2, which the harness derives; ``hidden_dim``: replaced by the encoder's dim
        in the source (accepted when equal, refused otherwise); ``context_dim``: never read by the source
        (accepted when null or equal to the encoder's dim, refused otherwise)
    ``mamba_encoder`` (``mamba_encoder``): ``dim`` (required) -> model.dim (and the decoder width the source
        ties to it), ``depth`` (default 6), ``ff_dim`` (default, and when 0 or null, 4 * dim);
        ``dropout``: refused unless 0

``train_dataset`` / ``test_dataset``: ``name: imgrec_dataset``; ``args``: ``imageset``
    (``name: cifar_10``, ``args: {root_path -> data.root, split: train | test}``) and ``resize`` (the same for
    both, -> data.image_size); ``loader``: ``batch_size`` -> train.batch_size / eval.batch_size,
    ``num_workers`` accepted (loading speed only). The CIFAR-10 copies are the numbered JPEG files
    themselves (data.dataset numbered-jpeg, no emulated JPEG round trip).
"""

from __future__ import annotations

from pathlib import Path

from ..core.errors import ParityError, did_you_mean, first_line
from .config import ExperimentConfig, original_baseline, validate

REFERENCE = "trans-inr-master/cfgs/imgrec_cifar10_mamba_lainr_fourier_bias.yaml"

# trainer -> train.lr_horizon (both trainers: warm-up, default 5 epochs; min_lr 1e-8)
TRAINERS = {"imgrec_trainer_lainr": "end", "imgrec_trainer_lainr_constant": "constant"}
DEFAULT_WARMUP = 5  # the trainers' fallback when the config has no warmup_epochs
DEFAULT_NUM_LP = 128  # mamba_lainr_inr's default

TOP_HONOURED = ("trainer", "model", "optimizer", "max_epoch", "warmup_epochs", "train_dataset", "test_dataset")
TOP_COSMETIC = ("eval_epoch", "vis_epoch", "save_epoch", "start_epoch")
TOP_NULL_ONLY = {
    "resume_from": "it continues training from a trans-inr checkpoint, which the harness does not load: remove it "
                   "(a parity run resumes with `parity train --resume RUN/checkpoint.pt`)",
    "eval_model": "it evaluates a checkpoint instead of training: remove it (compare checkpoints with "
                  "`parity diff-models`)",
}
TOP_KEYS = TOP_HONOURED + TOP_COSMETIC + tuple(TOP_NULL_ONLY)
# Keys only a trans-inr config has at its top level: how load_yaml tells one without a model from ours.
TRANSINR_ONLY = ("trainer", "max_epoch", "warmup_epochs", "optimizer", "train_dataset", "test_dataset",
                 "eval_epoch", "vis_epoch", "save_epoch", "resume_from", "start_epoch", "eval_model")
OUR_ONLY = ("base", "data", "train", "eval")

MODEL_KEYS = ("tokenizer", "hyponet", "mamba_encoder", "num_lp", "type", "n_group", "latent_token_len")
TOKENIZER_KEYS = ("input_size", "patch_size", "dim", "pos_emb", "padding", "img_channels", "pos_emb_dim")
HYPONET_KEYS = ("feature_dim", "input_dim", "output_dim", "sigma_q", "sigma_ls", "n_patches", "hidden_dim",
                "context_dim")
ENCODER_KEYS = ("dim", "depth", "ff_dim", "dropout")
# torch.optim.AdamW's own defaults: the harness's AdamW(params, lr, weight_decay) keeps every one of them.
ADAMW_DEFAULTS = {"betas": (0.9, 0.999), "eps": 1e-8, "amsgrad": False, "maximize": False, "foreach": None,
                  "capturable": False, "differentiable": False, "fused": None}
OPTIMIZER_KEYS = ("lr", "weight_decay", *ADAMW_DEFAULTS)
DATASET_KEYS = ("name", "args", "loader")
DATASET_ARGS = ("imageset", "resize")
IMAGESET_ARGS = ("root_path", "split")
LOADER_KEYS = ("batch_size", "num_workers")


def is_transinr_config(data) -> bool:
    """A trans-inr config: a ``model`` spec with a ``name``, or trans-inr top-level keys (``trainer``,
    ``max_epoch``, ...) and none of our layout's (``base``, ``data``, ``train``, ``eval``)."""
    if not isinstance(data, dict):
        return False
    model = data.get("model")
    if isinstance(model, dict) and "name" in model:
        return True
    return any(k in data for k in TRANSINR_ONLY) and not any(k in data for k in OUR_ONLY)


def from_transinr_config(data: dict, source: str = "trans-inr config") -> ExperimentConfig:
    """The original baseline with every key of the YAML applied (see the module docstring)."""
    try:
        return _from_transinr_config(data, source)
    except ParityError:
        raise
    except KeyError as e:  # a key the trans-inr layout always has
        raise ParityError(f"{source} lacks the key {e.args[0]!r} of a trans-inr config: compare it with "
                          f"{REFERENCE}") from None
    except (TypeError, ValueError, AttributeError) as e:  # e.g. a number that is not one, a list for a mapping
        reason = first_line(e)
        raise ParityError(f"{source} has a malformed entry ({reason}): compare it with {REFERENCE}") from None


# ---------------------------------------------------------------- small readers with one-line errors

class _Reader:
    def __init__(self, source: str):
        self.source = source

    def fail(self, message: str) -> ParityError:
        return ParityError(f"{self.source}: {message}")

    def mapping(self, value, where: str) -> dict:
        if not isinstance(value, dict):
            raise self.fail(f"{where} must be a mapping of key: value, got {type(value).__name__}: compare it "
                            f"with {REFERENCE}")
        return value

    def need(self, mapping: dict, key: str, where: str = ""):
        """``mapping[key]``; a missing key is named with its path (``where`` empty: the top level)."""
        if key not in mapping:
            raise ParityError(f"{self.source} lacks the key {where + '.' if where else ''}{key} of a trans-inr "
                              f"config (the source requires it): compare it with {REFERENCE}")
        return mapping[key]

    def known(self, mapping: dict, keys, where: str = "") -> None:
        """Refuse every key of ``mapping`` not in ``keys``, naming them all."""
        unknown = [k for k in mapping if k not in keys]
        if unknown:
            names = ", ".join(f"{where}.{k}" if where else str(k) for k in unknown)
            near = did_you_mean(str(unknown[0]), [str(k) for k in keys])
            raise self.fail(f"unknown key{'s' if len(unknown) > 1 else ''} {names}{near}: not honoured by the "
                            "harness, so refused rather than ignored; remove it, or write the experiment in our "
                            "YAML layout (base: original, then sections)")

    def integer(self, value, where: str) -> int:
        if isinstance(value, bool) or not (isinstance(value, int) or (isinstance(value, float) and value.is_integer())):
            raise self.fail(f"{where} must be an integer, got {value!r}")
        return int(value)

    def number(self, value, where: str) -> float:
        if isinstance(value, str):  # YAML 1.1 reads '5e-4' (no dot) as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.fail(f"{where} must be a number, got {value!r}")
        return float(value)

    def spec(self, value, name: str, where: str, *, model: bool = False) -> dict:
        """``{name: NAME, args: {...}}``; the args mapping. Other names are refused."""
        found = value.get("name") if isinstance(value, dict) else None
        if found != name or not isinstance(value.get("args"), dict):
            if model:
                raise self.fail(f"{where} is {found!r}, not a {name!r} spec with args: only mamba_lainr_inr models "
                                "(mamba_patch_tokenizer, lainr_mlp_bias, mamba_encoder) can be read; for other "
                                "models use our YAML layout (base: original, then sections)")
            raise self.fail(f"{where} is {found!r}, not a {name!r} spec with args: this reader builds only "
                            f"{name} here (the harness ports no other)")
        self.known(value, ("name", "args"), where)
        return value["args"]


def _adamw_default(r: _Reader, key: str, value) -> bool:
    """Whether an optimizer argument equals torch.optim.AdamW's default (YAML lists for tuples)."""
    default = ADAMW_DEFAULTS[key]
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and len(value) == len(default) and \
            all(r.number(v, f"optimizer.args.{key}") == x for v, x in zip(value, default, strict=True))
    if isinstance(default, bool) or default is None:
        return value is default
    return r.number(value, f"optimizer.args.{key}") == default


def _optional_equal(r: _Reader, args: dict, key: str, expected, where: str, why: str) -> None:
    """A key the harness cannot set: accepted when absent or equal to ``expected``, refused otherwise."""
    if key in args and args[key] != expected:
        raise r.fail(f"{where}.{key}={args[key]!r} is not honoured ({why}): set it to {expected!r} or remove it")


# ---------------------------------------------------------------- the reader

_TOK = "model.args.tokenizer.args"
_HYP = "model.args.hyponet.args"
_ENC = "model.args.mamba_encoder.args"


def _from_transinr_config(data: dict, source: str) -> ExperimentConfig:
    r = _Reader(source)
    _refuse_without_model(r, data)
    cfg = original_baseline()
    cfg.name = Path(source).stem  # the run folder is named after it: the file's stem, never its path
    model = _model_args(r, data)
    image_size, n_patches = _read_model(r, model, cfg.model)
    _read_schedule(r, data, cfg.train)
    _read_optimizer(r, data, cfg.train)
    _read_data(r, data, cfg, image_size, n_patches)
    return validate(cfg)


def _refuse_without_model(r: _Reader, data) -> None:
    """Nothing; refuses a file that is no mapping or has no model section (nothing to train)."""
    r.mapping(data, "the file")
    if data.get("model") is None:
        what = f" (trainer {data['trainer']!r})" if isinstance(data.get("trainer"), str) else ""
        evaluates = ", it only evaluates eval_model" if data.get("eval_model") is not None else ""
        raise r.fail(f"this trans-inr config{what} has no model section{evaluates}: there is nothing to train; "
                     "pass an experiment YAML with model: {name: mamba_lainr_inr, args: ...}, e.g. "
                     f"{REFERENCE}")


def _model_args(r: _Reader, data: dict) -> dict:
    """The ``mamba_lainr_inr`` model's args, once the top-level keys are known and the null-only ones null."""
    model = r.spec(data["model"], "mamba_lainr_inr", "model", model=True)
    r.known(data, TOP_KEYS)
    for key, why in TOP_NULL_ONLY.items():
        if data.get(key) is not None:
            raise r.fail(f"{key}={data[key]!r} is refused: {why}")
    return model


def _read_model(r: _Reader, model: dict, m) -> tuple[int, int]:
    """The tokenizer's input_size and the hyponet's n_patches, checked later against the data; sets ``m``."""
    r.known(model, MODEL_KEYS, "model.args")
    tok = r.spec(r.need(model, "tokenizer", "model.args"), "mamba_patch_tokenizer", "model.args.tokenizer")
    hyp = r.spec(r.need(model, "hyponet", "model.args"), "lainr_mlp_bias", "model.args.hyponet")
    enc = r.spec(r.need(model, "mamba_encoder", "model.args"), "mamba_encoder", "model.args.mamba_encoder")
    r.known(tok, TOKENIZER_KEYS, _TOK)
    r.known(hyp, HYPONET_KEYS, _HYP)
    r.known(enc, ENCODER_KEYS, _ENC)

    _read_encoder(r, enc, m)
    image_size = _read_tokenizer(r, tok, m)
    n_patches = _read_hyponet(r, hyp, m)
    m.num_lp = r.integer(model.get("num_lp", DEFAULT_NUM_LP), "model.args.num_lp")
    m.lp_type = model.get("type", "equidistant")
    m.n_group = r.integer(model.get("n_group", 1), "model.args.n_group")
    return image_size, n_patches


def _read_encoder(r: _Reader, enc: dict, m) -> None:
    """Nothing; sets the model's dim, depth, ff_dim and decoder width from the mamba_encoder args."""
    m.dim = r.integer(r.need(enc, "dim", _ENC), f"{_ENC}.dim")
    m.depth = r.integer(enc.get("depth", 6), f"{_ENC}.depth")
    ff_dim = enc.get("ff_dim")
    ff_dim = r.integer(ff_dim, f"{_ENC}.ff_dim") if ff_dim else 4 * m.dim  # the source: falsy -> 4 * dim
    m.ff_dim = ff_dim if ff_dim != 4 * m.dim else None
    if enc.get("dropout", 0) != 0:
        raise r.fail(f"{_ENC}.dropout={enc['dropout']!r} is not honoured (the harness's encoder has no "
                     "dropout): set it to 0 or remove it")
    m.decoder_width = m.dim  # the source ties the decoder width to the encoder dim


def _read_tokenizer(r: _Reader, tok: dict, m) -> int:
    """The tokenizer's input_size; sets the model's patch size and position code (needs ``m.dim`` set)."""
    _optional_equal(r, tok, "dim", m.dim, _TOK, f"the source replaces it with {_ENC}.dim={m.dim}")
    _optional_equal(r, tok, "padding", 0, _TOK, "the harness's tokenizer does not pad")
    _optional_equal(r, tok, "img_channels", 3, _TOK, "the harness reads RGB images")
    _optional_equal(r, tok, "pos_emb_dim", 32, _TOK, "the harness's Fourier position code is 32 wide")
    image_size = r.integer(r.need(tok, "input_size", _TOK), f"{_TOK}.input_size")
    m.patch_size = r.integer(r.need(tok, "patch_size", _TOK), f"{_TOK}.patch_size")
    pos_emb = tok.get("pos_emb", "learned")
    if pos_emb == "learned":
        raise r.fail(f"{_TOK}.pos_emb 'learned' (the source's default) is not among the registry's position "
                     "codes (none, fourier): set pos_emb: fourier in the tokenizer args")
    if pos_emb != "fourier":
        raise r.fail(f"{_TOK}.pos_emb={pos_emb!r}: the source treats every value but 'learned' as the "
                     "Fourier code; write pos_emb: fourier")
    m.pos_code = "fourier"
    return image_size


def _read_hyponet(r: _Reader, hyp: dict, m) -> int:
    """The hyponet's n_patches; sets the model's feature_dim, sigma_q and sigma_ls (needs ``m.dim`` set)."""
    _optional_equal(r, hyp, "hidden_dim", m.dim, _HYP, f"the source replaces it with {_ENC}.dim={m.dim}")
    if hyp.get("context_dim") not in (None, m.dim):
        raise r.fail(f"{_HYP}.context_dim={hyp['context_dim']!r} is not honoured (the source never reads it: "
                     f"its cross-attention reads the tokens at {_ENC}.dim={m.dim}): remove it")
    if r.integer(r.need(hyp, "input_dim", _HYP), f"{_HYP}.input_dim") != 2:
        raise r.fail(f"{_HYP}.input_dim={hyp['input_dim']!r} is not honoured (images have 2-D "
                     "coordinates): set it to 2")
    if r.integer(r.need(hyp, "output_dim", _HYP), f"{_HYP}.output_dim") != 3:
        raise r.fail(f"{_HYP}.output_dim={hyp['output_dim']!r} is not honoured (the harness reconstructs RGB "
                     "images): set it to 3")
    m.feature_dim = r.integer(r.need(hyp, "feature_dim", _HYP), f"{_HYP}.feature_dim")
    m.sigma_q = r.number(r.need(hyp, "sigma_q", _HYP), f"{_HYP}.sigma_q")
    sigma_ls = r.need(hyp, "sigma_ls", _HYP)
    if not isinstance(sigma_ls, list):
        raise r.fail(f"{_HYP}.sigma_ls must be a list of numbers, got {sigma_ls!r}")
    m.sigma_ls = [r.number(s, f"{_HYP}.sigma_ls") for s in sigma_ls]
    return r.integer(r.need(hyp, "n_patches", _HYP), f"{_HYP}.n_patches")


def _read_schedule(r: _Reader, data: dict, t) -> None:
    """Nothing; sets the training's lr horizon (from the trainer), epochs and warm-up epochs."""
    trainer = r.need(data, "trainer")
    if not isinstance(trainer, str) or trainer not in TRAINERS:
        shown = trainer.get("name") if isinstance(trainer, dict) else trainer
        raise r.fail(f"trainer {shown!r} is not supported{did_you_mean(str(shown), TRAINERS)}: the harness "
                     f"reproduces {' and '.join(TRAINERS)} only (the others train another step, model or "
                     "schedule); write trainer: NAME")
    t.lr_horizon = TRAINERS[trainer]
    t.epochs = r.integer(r.need(data, "max_epoch"), "max_epoch")
    t.warmup_epochs = r.integer(data.get("warmup_epochs", DEFAULT_WARMUP), "warmup_epochs")


def _read_optimizer(r: _Reader, data: dict, t) -> None:
    """Nothing; sets the training's lr and weight decay, refusing any other AdamW argument off its default."""
    opt = r.mapping(r.need(data, "optimizer"), "optimizer")
    r.known(opt, ("name", "args"), "optimizer")
    if opt.get("name") != "adamw":
        raise r.fail(f"optimizer {opt.get('name')!r} is not supported: the harness trains with AdamW "
                     "(optimizer: {name: adamw, args: {lr: ...}})")
    opt_args = r.mapping(r.need(opt, "args", "optimizer"), "optimizer.args")
    r.known(opt_args, OPTIMIZER_KEYS, "optimizer.args")
    for key, default in ADAMW_DEFAULTS.items():
        if key in opt_args and not _adamw_default(r, key, opt_args[key]):
            raise r.fail(f"optimizer.args.{key}={opt_args[key]!r} is not honoured: the harness builds AdamW(params, "
                         f"lr, weight_decay) with torch's {key}={default!r}; set it to that or remove it")
    t.lr = r.number(r.need(opt_args, "lr", "optimizer.args"), "optimizer.args.lr")
    t.weight_decay = r.number(opt_args.get("weight_decay", 1e-2), "optimizer.args.weight_decay")


def _read_data(r: _Reader, data: dict, cfg: ExperimentConfig, image_size: int, n_patches: int) -> None:
    """Nothing; sets the data section and both batch sizes, checked against ``image_size`` and ``n_patches``."""
    m, t, d = cfg.model, cfg.train, cfg.data
    train = _dataset(r, r.need(data, "train_dataset"), "train_dataset", "train")
    t.batch_size = train["batch_size"]
    d.image_size = train["resize"]
    if image_size != d.image_size:
        raise r.fail(f"{_TOK}.input_size={image_size} differs from train_dataset.args.resize={d.image_size}: "
                     "the tokenizer's patch grid would not fit the images; make them equal")
    if m.patch_size < 1:
        raise r.fail(f"{_TOK}.patch_size must be at least 1, got {m.patch_size}")
    grid = image_size // m.patch_size
    if n_patches != grid * grid:
        raise r.fail(f"{_HYP}.n_patches={n_patches} is not honoured: the harness derives the decoder's patch "
                     f"grid from input_size / patch_size ({grid} x {grid} = {grid * grid}); set it to {grid * grid}")
    d.dataset = "numbered-jpeg"
    d.root = train["root"]
    d.jpeg_quality = None  # the files are the JPEG copies themselves: no emulated round trip
    cfg.eval.batch_size = t.batch_size
    if data.get("test_dataset") is not None:
        test = _dataset(r, data["test_dataset"], "test_dataset", "test")
        if test["resize"] != d.image_size:
            raise r.fail(f"test_dataset.args.resize={test['resize']} differs from train_dataset.args.resize="
                         f"{d.image_size}: the harness evaluates at the training size; make them equal")
        if test["root"] is not None and d.root is not None and test["root"] != d.root:
            raise r.fail(f"test_dataset root_path {test['root']!r} differs from train_dataset's {d.root!r}: the "
                         "numbered split reads both from one folder; make them equal")
        d.root = d.root if d.root is not None else test["root"]
        cfg.eval.batch_size = test["batch_size"]


def _dataset(r: _Reader, spec, where: str, split: str) -> dict:
    """An ``imgrec_dataset`` over ``cifar_10``: {'resize', 'root', 'batch_size'}."""
    spec = r.mapping(spec, where)
    r.known(spec, DATASET_KEYS, where)
    if spec.get("name") != "imgrec_dataset":
        raise r.fail(f"{where}.name is {spec.get('name')!r}: only imgrec_dataset (Resize + CenterCrop of an "
                     "image set) is read; for other data use our YAML layout (data.dataset)")
    args = r.mapping(r.need(spec, "args", where), f"{where}.args")
    r.known(args, DATASET_ARGS, f"{where}.args")
    imageset = r.mapping(r.need(args, "imageset", f"{where}.args"), f"{where}.args.imageset")
    r.known(imageset, ("name", "args"), f"{where}.args.imageset")
    if imageset.get("name") != "cifar_10":
        raise r.fail(f"{where}.args.imageset.name is {imageset.get('name')!r}: only cifar_10 (the numbered JPEG "
                     "copies) is read; for other image sets use our YAML layout (data.dataset: imagefolder)")
    image_args = r.mapping(imageset.get("args") or {}, f"{where}.args.imageset.args")
    r.known(image_args, IMAGESET_ARGS, f"{where}.args.imageset.args")
    found = image_args.get("split", split)
    if found != split:
        raise r.fail(f"{where}.args.imageset.args.split is {found!r}: the harness trains on 'train' and evaluates "
                     "on 'test' (the numbered split); set it to " + repr(split))
    root = image_args.get("root_path")
    loader = r.mapping(r.need(spec, "loader", where), f"{where}.loader")
    r.known(loader, LOADER_KEYS, f"{where}.loader")
    return {"resize": r.integer(r.need(args, "resize", f"{where}.args"), f"{where}.args.resize"),
            "root": None if root is None else str(root),
            "batch_size": r.integer(r.need(loader, "batch_size", f"{where}.loader"), f"{where}.loader.batch_size")}
