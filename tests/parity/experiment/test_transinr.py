"""Original trans-inr YAMLs: every key honoured, or refused by name; the trainers' own schedules.

The three CIFAR-10 LAINR experiments of ``trans-inr-master/cfgs`` (``imgrec_cifar10_mamba_lainr_fourier_bias``,
``..._bias_long``, ``..._bias_long_constant``) are written below with the sources' layout and values; they
differ in trainer (schedule), epochs, warm-up, learning rate and the hyponet's feature_dim.
"""

import math

import pytest
import yaml

from parity.core.errors import ParityError
from parity.experiment.config import apply_overrides, config_diff, original_baseline, to_yaml
from parity.experiment.configfile import load_yaml
from parity.experiment.schedule import lr_for_epoch

CIFAR_LAINR = """trainer: {trainer}
{warmup}
train_dataset:
  name: imgrec_dataset
  args:
    imageset:
      name: cifar_10
      args: {{root_path: /home/idies/.cache/, split: train}}
    resize: 32
  loader:
    batch_size: 16
    num_workers: 8

test_dataset:
  name: imgrec_dataset
  args:
    imageset:
      name: cifar_10
      args: {{root_path: /home/idies/.cache/, split: test}}
    resize: 32
  loader:
    batch_size: 16
    num_workers: 8

model:
  name: mamba_lainr_inr
  args:
    tokenizer:
      name: mamba_patch_tokenizer
      args: {{input_size: 32, patch_size: 2, dim: 256, pos_emb: 'fourier'}}
    hyponet:
      name: lainr_mlp_bias
      args: {{feature_dim: {feature_dim}, input_dim: 2, output_dim: 3, sigma_q: 16, \
sigma_ls: [128, 32], n_patches: 256}}
    mamba_encoder:
      name: mamba_encoder
      args: {{dim: 256, depth: 6, ff_dim: 1024}}
    type: 'equidistant'
    n_group: 1
    num_lp: 256

optimizer:
  name: adamw
  args: {{lr: {lr}}}
max_epoch: {max_epoch}

eval_epoch: 1
vis_epoch: 5
"""

# file stem -> (trainer, warmup_epochs line, feature_dim, lr as written, max_epoch)
SOURCES = {
    "imgrec_cifar10_mamba_lainr_fourier_bias": ("imgrec_trainer_lainr", "", 64, "5.e-4", 40),
    "imgrec_cifar10_mamba_lainr_fourier_bias_long": ("imgrec_trainer_lainr", "warmup_epochs: 40", 256, "5.e-4", 400),
    "imgrec_cifar10_mamba_lainr_fourier_bias_long_constant": ("imgrec_trainer_lainr_constant", "warmup_epochs: 10",
                                                              256, "1.e-4", 200),
}
BIAS, LONG, CONSTANT = SOURCES


def _text(stem: str) -> str:
    trainer, warmup, feature_dim, lr, max_epoch = SOURCES[stem]
    return CIFAR_LAINR.format(trainer=trainer, warmup=warmup, feature_dim=feature_dim, lr=lr, max_epoch=max_epoch)


def _data(stem: str = BIAS) -> dict:
    return yaml.safe_load(_text(stem))


def _load(tmp_path, data: dict, name: str = "imgrec_case.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return load_yaml(path)


def _refused(tmp_path, data: dict, *words: str) -> str:
    with pytest.raises(ParityError) as info:
        _load(tmp_path, data)
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


# ---------------------------------------------------------------- the three CIFAR LAINR experiments

@pytest.mark.parametrize("where", ["absolute", "spaces", "relative"])
@pytest.mark.parametrize("stem", list(SOURCES))
def test_cifar_lainr_yamls_load_from_any_path(stem, where, tmp_path, monkeypatch):
    folder = {"absolute": tmp_path / "cfgs", "spaces": tmp_path / "my configs" / "trans inr",
              "relative": tmp_path / "rel"}[where]
    folder.mkdir(parents=True)
    path = folder / f"{stem}.yaml"
    path.write_text(_text(stem))
    if where == "relative":
        monkeypatch.chdir(tmp_path)
        path = path.relative_to(tmp_path)
    cfg = load_yaml(path if where == "relative" else path.resolve())
    trainer, _, feature_dim, _, max_epoch = SOURCES[stem]
    assert cfg.name == stem
    assert cfg.train.lr_horizon == {"imgrec_trainer_lainr": "end", "imgrec_trainer_lainr_constant": "constant"}[trainer]
    assert cfg.train.epochs == max_epoch and cfg.model.feature_dim == feature_dim
    assert (cfg.train.batch_size, cfg.eval.batch_size, cfg.data.image_size, cfg.data.root) == \
        (16, 16, 32, "/home/idies/.cache/")
    assert cfg.data.dataset == "numbered-jpeg" and cfg.data.jpeg_quality is None
    # everything else is the original baseline (the first file is the baseline's own experiment)
    expected = {"data.dataset", "data.root", "data.jpeg_quality"}
    if stem != BIAS:
        expected |= {"model.feature_dim", "train.epochs", "train.warmup_epochs"}
    if stem == CONSTANT:
        expected |= {"train.lr", "train.lr_horizon"}
    assert set(config_diff(cfg, original_baseline())) == expected


def test_bias_uses_the_default_warm_up_and_cosine_to_the_last_epoch(tmp_path):
    t = _load(tmp_path, _data(BIAS)).train
    assert (t.lr, t.warmup_epochs, t.epochs, t.min_lr) == (5e-4, 5, 40, 1e-8)
    assert lr_for_epoch(t, 1) == pytest.approx(2e-4)  # 5e-4 * 2 / 5
    assert lr_for_epoch(t, 4) == pytest.approx(5e-4)  # the warm-up reaches base_lr at epoch 4
    assert lr_for_epoch(t, 5) == pytest.approx(5e-4)  # cosine start
    assert lr_for_epoch(t, 40) == pytest.approx(1e-8, abs=1e-15)


def test_bias_long_warms_up_for_40_of_400_epochs(tmp_path):
    t = _load(tmp_path, _data(LONG)).train
    assert (t.lr, t.warmup_epochs, t.epochs, t.lr_horizon) == (5e-4, 40, 400, "end")
    assert lr_for_epoch(t, 1) == pytest.approx(2.5e-5)  # 5e-4 * 2 / 40
    assert lr_for_epoch(t, 220) == pytest.approx(1e-8 + (5e-4 - 1e-8) / 2)  # half way: (220 - 40) / 360
    assert lr_for_epoch(t, 400) == pytest.approx(1e-8, abs=1e-15)


def test_constant_trainer_holds_the_lr_until_95_percent_of_the_epochs(tmp_path):
    t = _load(tmp_path, _data(CONSTANT)).train
    assert (t.lr, t.warmup_epochs, t.epochs, t.lr_horizon, t.min_lr) == (1e-4, 10, 200, "constant", 1e-8)
    assert lr_for_epoch(t, 1) == pytest.approx(2e-5)  # 1e-4 * 2 / 10
    assert lr_for_epoch(t, 150) == 1e-4  # the issue: cosine decay gave 1.6e-5 here
    assert all(lr_for_epoch(t, e) == 1e-4 for e in range(10, 190))
    assert lr_for_epoch(t, 190) == pytest.approx(1e-4)  # 190.0 = 0.95 * 200: the half cosine starts at base_lr
    assert lr_for_epoch(t, 195) == pytest.approx(1e-8 + (1e-4 - 1e-8) * (1 + math.cos(math.pi / 2)) / 2)
    assert lr_for_epoch(t, 200) == pytest.approx(1e-8, abs=1e-15)
    lrs = [lr_for_epoch(t, e) for e in range(190, 201)]
    assert all(a > b for a, b in zip(lrs, lrs[1:]))


def test_constant_schedule_survives_the_run_folder_round_trip(tmp_path):
    cfg = _load(tmp_path, _data(CONSTANT))
    saved = tmp_path / "run" / "config.yaml"  # what a run folder holds and --resume reads back
    saved.parent.mkdir()
    saved.write_text(to_yaml(cfg))
    assert config_diff(load_yaml(saved), cfg) == {}


def test_constant_is_a_valid_lr_horizon(tmp_path):
    cfg = apply_overrides(original_baseline(), ["train.lr_horizon=constant", "train.epochs=20",
                                                "train.warmup_epochs=2"])
    assert [lr_for_epoch(cfg.train, e) for e in (1, 18, 19)] == pytest.approx([5e-4] * 3)  # 19 = 0.95 * 20
    assert lr_for_epoch(cfg.train, 20) == pytest.approx(1e-8, abs=1e-15)
    with pytest.raises(ParityError, match="is not one of tmax, end, constant"):
        apply_overrides(original_baseline(), ["train.lr_horizon=steady"])


# ---------------------------------------------------------------- refused by name

@pytest.mark.parametrize("key,value", [("betas", [0.9, 0.99]), ("eps", 1e-6), ("amsgrad", True), ("fused", True),
                                       ("maximize", True)])
def test_optimizer_arguments_the_harness_cannot_set_are_refused(key, value, tmp_path):
    data = _data()
    data["optimizer"]["args"][key] = value
    _refused(tmp_path, data, f"optimizer.args.{key}", "not honoured")


def test_optimizer_arguments_equal_to_torch_defaults_are_accepted(tmp_path):
    data = _data()
    data["optimizer"]["args"].update(betas=[0.9, 0.999], eps=1e-8, amsgrad=False, weight_decay=0.05)
    cfg = _load(tmp_path, data)
    assert (cfg.train.lr, cfg.train.weight_decay) == (5e-4, 0.05)


@pytest.mark.parametrize("edit,words", [
    (lambda d: d.update(use_amp=True), ("use_amp", "unknown key")),
    (lambda d: d.update(max_epochs=10), ("max_epochs", "did you mean 'max_epoch'")),
    (lambda d: d["model"]["args"].update(lp_init_std=0.02), ("model.args.lp_init_std",)),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(stride=2), ("model.args.tokenizer.args.stride",)),
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(depth=3), ("model.args.hyponet.args.depth",)),
    (lambda d: d["model"]["args"]["mamba_encoder"].update(sd=None), ("model.args.mamba_encoder.sd",)),
    (lambda d: d["train_dataset"]["args"].update(downsample_ratio=2), ("train_dataset.args.downsample_ratio",)),
    (lambda d: d["test_dataset"]["loader"].update(pin_memory=True), ("test_dataset.loader.pin_memory",)),
    (lambda d: d["optimizer"]["args"].update(momentum=0.9), ("optimizer.args.momentum",)),
])
def test_unknown_keys_are_refused_by_name(edit, words, tmp_path):
    data = _data()
    edit(data)
    _refused(tmp_path, data, *words)


@pytest.mark.parametrize("edit,words", [
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(output_dim=4), ("output_dim=4", "set it to 3")),
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(input_dim=3), ("input_dim=3",)),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(dim=128), ("tokenizer.args.dim=128", "replaces it")),
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(hidden_dim=128), ("hidden_dim=128", "replaces it")),
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(context_dim=64), ("context_dim=64",)),
    (lambda d: d["model"]["args"]["hyponet"]["args"].update(n_patches=64), ("n_patches=64", "set it to 256")),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(padding=1), ("padding=1",)),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(pos_emb_dim=16), ("pos_emb_dim=16",)),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(pos_emb="sine"), ("pos_emb='sine'",)),
    (lambda d: d["model"]["args"]["tokenizer"]["args"].update(input_size=64), ("input_size=64", "resize=32")),
    (lambda d: d["model"]["args"]["mamba_encoder"]["args"].update(dropout=0.1), ("dropout=0.1",)),
    (lambda d: d["model"]["args"]["hyponet"].update(name="lainr_mlp_bias_init"), ("lainr_mlp_bias_init",)),
    (lambda d: d.update(trainer="imgrec_trainer_lainr_sr"), ("imgrec_trainer_lainr_sr", "not supported")),
    (lambda d: d.pop("trainer"), ("lacks the key trainer",)),
    (lambda d: d.pop("max_epoch"), ("lacks the key max_epoch",)),
    (lambda d: d.update(resume_from="save/x/epoch-last.pth"), ("resume_from",)),
    (lambda d: d.update(eval_model="save/x/epoch-last.pth"), ("eval_model",)),
    (lambda d: d["optimizer"].update(name="adam"), ("optimizer 'adam'",)),
    (lambda d: d["test_dataset"]["args"]["imageset"]["args"].update(split="val"), ("split is 'val'",)),
    (lambda d: d["test_dataset"]["args"].update(resize=64), ("test_dataset.args.resize=64",)),
    (lambda d: d["train_dataset"]["args"]["imageset"].update(name="celeba"), ("'celeba'",)),
])
def test_keys_the_harness_cannot_honour_are_refused(edit, words, tmp_path):
    data = _data()
    edit(data)
    _refused(tmp_path, data, *words)


def test_the_fourth_bias_file_with_its_init_hyponet_is_refused(tmp_path):
    """``imgrec_cifar10_mamba_lainr_fourier_bias_init_long_constant.yaml``: the constant schedule, but the
    ``lainr_mlp_bias_init`` hyponet (with H and W), which the harness does not port."""
    data = _data(CONSTANT)
    data["model"]["args"]["hyponet"] = {"name": "lainr_mlp_bias_init", "args": {
        "feature_dim": 256, "input_dim": 2, "output_dim": 3, "sigma_q": 16, "sigma_ls": [128, 32], "n_patches": 256,
        "H": 32, "W": 32}}
    _refused(tmp_path, data, "model.args.hyponet", "lainr_mlp_bias_init")


def test_keys_that_cannot_change_training_are_accepted(tmp_path):
    data = _data()
    data.update(save_epoch=10, start_epoch=3, resume_from=None, eval_model=None)
    data["model"]["args"].update(latent_token_len=64)
    data["model"]["args"]["hyponet"]["args"].update(hidden_dim=256, context_dim=None)
    data["model"]["args"]["tokenizer"]["args"].update(padding=0, img_channels=3, pos_emb_dim=32)
    data["model"]["args"]["mamba_encoder"]["args"].update(dropout=0.0)
    assert config_diff(_load(tmp_path, data), _load(tmp_path, _data(), "plain.yaml")) == {}


def test_num_lp_type_and_depth_are_honoured(tmp_path):
    data = _data()
    data["model"]["args"].update(num_lp=64, type="n_group", n_group=4)
    data["model"]["args"]["mamba_encoder"]["args"].update(depth=2, ff_dim=512)
    m = _load(tmp_path, data).model
    assert (m.num_lp, m.lp_type, m.n_group, m.depth, m.ff_dim) == (64, "n_group", 4, 2, 512)


# ---------------------------------------------------------------- YAMLs with no model

@pytest.mark.parametrize("text", [
    "trainer: imgrec_trainer_lainr_constant\nmax_epoch: 200\nwarmup_epochs: 10\n",
    "trainer: nvs_evaluator\ntest_dataset: {name: learnit_shapenet}\neval_model: save/cars/epoch-last.pth\n",
    "trainer: imgrec_trainer_lainr\nmodel: null\n",
])
def test_a_yaml_without_a_model_says_so(text, tmp_path):
    path = tmp_path / "no model.yaml"
    path.write_text(text)
    with pytest.raises(ParityError, match="has no model") as info:
        load_yaml(path)
    assert "\n" not in str(info.value) and "unknown section" not in str(info.value)


def test_our_layout_with_a_stray_trainer_section_is_still_ours(tmp_path):
    path = tmp_path / "ours.yaml"
    path.write_text("base: notebook\ntrainer:\n  lr: 0.001\n")
    with pytest.raises(ParityError, match="unknown section 'trainer'"):
        load_yaml(path)
