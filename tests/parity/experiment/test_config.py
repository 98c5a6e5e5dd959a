"""The typed configuration: baselines, YAML round trip, --set parsing and one-line errors."""

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from parity.core.errors import ParityError
from parity.experiment.config import (
    apply_overrides,
    baseline,
    config_diff,
    field_paths,
    from_dict,
    get_field,
    notebook_baseline,
    original_baseline,
    to_yaml,
    validate,
)
from parity.experiment.configfile import load_yaml


def test_baselines_are_the_sources_as_run():
    nb, orig = notebook_baseline(), original_baseline()
    assert ((nb.model.dim, nb.model.patch_size, nb.model.num_lp, nb.model.depth, nb.model.decoder_width)
            == (256, 4, 32, 4, 128))
    assert ((nb.train.lr, nb.train.weight_decay, nb.train.clip_norm, nb.train.batch_size, nb.train.epochs)
            == (1e-4, 1e-5, 1.0, 32, 20))
    assert (orig.model.patch_size, orig.model.num_lp, orig.model.depth, orig.model.decoder) == (2, 256, 6, "lainr")
    assert ((orig.train.lr, orig.train.weight_decay, orig.train.clip_norm, orig.train.batch_size)
            == (5e-4, 1e-2, None, 16))
    assert validate(nb) and validate(orig)


def test_yaml_round_trip(tmp_path):
    cfg = original_baseline()
    path = tmp_path / "c.yaml"
    path.write_text(to_yaml(cfg))
    assert config_diff(load_yaml(path), cfg) == {}


def test_yaml_with_base_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"base": "original", "train": {"lr": "5e-5"}, "model": {"num_lp": 64}}))
    cfg = load_yaml(path)
    assert cfg.train.lr == 5e-5 and cfg.model.num_lp == 64 and cfg.model.decoder == "lainr"


def test_original_transinr_yaml_is_read(tmp_path):
    from original_port.configs import CIFAR10_CONFIG

    path = tmp_path / "imgrec_cifar10_mamba_lainr_fourier_bias.yaml"
    path.write_text(yaml.safe_dump(CIFAR10_CONFIG))
    cfg = load_yaml(path)
    diff = config_diff(cfg, original_baseline())
    # the trans-inr file names its numbered-JPEG folder, whose files are the JPEG copies (no emulated round trip)
    assert set(diff) <= {"data.dataset", "data.root", "data.jpeg_quality"}
    assert cfg.data.jpeg_quality is None


@pytest.mark.parametrize("item,message", [
    ("train.lr=-1", "train.lr must be positive"),
    ("train.epochs=0", "train.epochs must be at least 1"),
    ("model.patch_size=5", "does not divide data.image_size=32"),
    ("model.num_lp=0", "model.num_lp must be at least 1"),
    ("train.jitter_std=-0.1", "must not be negative"),
    ("train.lr=abc", "train.lr must be a number"),
    ("model.decoder=transformer", "is not one of notebook, lainr"),
    ("no.such.key=1", "unknown configuration key"),
    ("train.lrr=1", "did you mean 'train.lr'"),
    ("train.lr", "is not key=value"),
])
def test_bad_overrides_are_one_line_errors(item, message):
    with pytest.raises(ParityError, match=message) as info:
        apply_overrides(notebook_baseline(), [item])
    assert "\n" not in str(info.value)


def test_broken_yaml_and_unknown_sections(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: {lr: [1,\n")
    with pytest.raises(ParityError, match="not valid YAML"):
        load_yaml(broken)
    with pytest.raises(ParityError, match="unknown section 'trian'.*did you mean 'train'"):
        from_dict({"trian": {"lr": 1e-3}})
    with pytest.raises(ParityError, match="does not exist"):
        load_yaml(tmp_path / "missing.yaml")
    with pytest.raises(ParityError, match="unknown baseline"):
        baseline("orignal")


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(field_paths()), st.one_of(st.integers(-5, 300), st.floats(-1, 1, allow_nan=False),
                                                 st.text(max_size=8), st.booleans()))
def test_any_override_either_applies_or_fails_cleanly(path, value):
    """No input to --set crashes with anything but a ParityError, and a success is type-correct."""
    cfg = notebook_baseline()
    try:
        apply_overrides(cfg, [f"{path}={value}"])
    except ParityError as e:
        assert "\n" not in str(e)
        return
    assert validate(cfg)
    got = get_field(cfg, path)
    assert got is None or isinstance(got, (int, float, str, bool, list))


# ---------------------------------------------------------------- fuzz: every field, hostile values

FUZZ_VALUES = ("nan", "inf", "-inf", "-1", "0", "1e12", "[]")


@pytest.mark.parametrize("value", FUZZ_VALUES)
def test_every_field_takes_a_hostile_value_or_refuses_it_in_one_line(value):
    """Over every configuration field: a value is either refused with a one-line ParityError or gives a
    configuration whose model builds, whose numbers are finite, and that fits the memory check."""
    import math

    from parity.experiment.build import build_model, check_fits_in_memory
    from parity.experiment.config import field_paths, set_field, validate
    from parity.experiment.presets import preset

    accepted = []
    for base, path in [(b, p) for b in preset("smoke").baselines() for p in field_paths(b)]:
        cfg = base.copy()
        try:
            set_field(cfg, path, value)
            validate(cfg)
            check_fits_in_memory(cfg)
        except ParityError as e:
            assert "\n" not in str(e) and path.split(".")[1] in str(e), (path, str(e))
            continue
        for p in field_paths(cfg):
            v = get_field(cfg, p)
            for item in v if isinstance(v, list) else [v]:
                assert not (isinstance(item, float) and not math.isfinite(item)), (path, p, item)
        accepted.append(path)
        if path.startswith(("model.", "data.image_size")):
            build_model(cfg)  # no traceback from a constructor
    assert accepted or value in ("nan", "inf", "-inf", "1e12")


def test_the_scan_is_configuration_and_reaches_every_mixer():
    """model.scan picks each Mamba mixer's scan in the model build_model returns; an unknown one is refused."""
    from parity.core.ssm import Mamba
    from parity.experiment.build import build_model
    from parity.experiment.presets import preset

    cfg = preset("smoke").baselines()[1]
    cfg.model.scan = "chunked"
    mixers = [m for m in build_model(cfg).modules() if isinstance(m, Mamba)]
    assert mixers and {m.scan for m in mixers} == {"chunked"}
    with pytest.raises(ParityError, match="model.scan='compild' is not one of ref, chunked, compiled, parallel, cuda "
                                          "\\(did you mean 'compiled'"):
        apply_overrides(notebook_baseline(), ["model.scan=compild"])


def test_option_choices_live_in_the_field_types():
    from parity.cli import build_parser
    from parity.data import DATASETS
    from parity.experiment.config import CHOICES, field_choices

    assert field_choices("data.dataset") == DATASETS == ("cifar10", "imagefolder", "numbered-jpeg", "procedural")
    assert field_choices("data.eval_split") == (None, "official", "numbered", "validation")
    assert field_choices("model.dim") is None and "model.dim" not in CHOICES
    train = build_parser()._subparsers._group_actions[0].choices["train"]
    dataset = next(a for a in train._actions if a.dest == "dataset")
    assert tuple(dataset.choices) == DATASETS


def test_fields_that_change_no_result_are_marked_and_left_out_of_results_diffs():
    from parity.experiment.config import changes_no_result

    assert [p for p in field_paths() if changes_no_result(p)] == ["data.download", "model.scan"]
    a, b = baseline("notebook"), baseline("notebook")
    b.model.scan, b.data.download, b.train.lr = "chunked", True, 3e-4
    assert set(config_diff(a, b)) == {"model.scan", "data.download", "train.lr"}
    assert set(config_diff(a, b, results_only=True)) == {"train.lr"}


def test_a_run_is_not_refused_for_a_field_that_changes_no_result(tmp_path):
    from parity.runtime.rundir import RunDir

    cfg = baseline("notebook")
    run = RunDir(tmp_path / "run")
    run.start(cfg)
    other = cfg.copy()
    other.model.scan = "ref"
    run.check_config(other)  # the same results: accepted
    other.train.lr = 1e-3
    with pytest.raises(ParityError, match="another configuration"):
        run.check_config(other)
