"""The registry is complete and each difference is exactly what it declares."""

import pytest
import torch

from parity.core.errors import ParityError
from parity.experiment.build import build_model, transinr_spec
from parity.experiment.config import config_diff, notebook_baseline, original_baseline
from parity.experiment.differences import (
    DIFFERENCES,
    IMPROVEMENTS,
    NOT_IN_SEED,
    REGISTRY,
    SEVERITY_ORDER,
    apply_toggles,
    by_severity,
    get,
    unregistered_fields,
)


def test_every_field_that_differs_is_registered():
    assert unregistered_fields() == {}


def test_applying_every_difference_to_the_notebook_gives_the_original():
    cfg = notebook_baseline()
    for d in DIFFERENCES:
        cfg = d.apply(cfg)
    cfg.name = "original"
    assert config_diff(cfg, original_baseline()) == {}


def test_applying_none_leaves_the_notebook():
    assert config_diff(apply_toggles(notebook_baseline(), []), notebook_baseline()) == {}


@pytest.mark.parametrize("diff", DIFFERENCES, ids=lambda d: d.id)
def test_each_difference_changes_only_and_all_of_its_fields(diff):
    nb, orig = notebook_baseline(), original_baseline()
    assert set(config_diff(nb, diff.apply(nb))) == set(diff.fields)
    assert set(config_diff(orig, diff.apply(orig, "notebook"))) == set(diff.fields)
    assert diff.claimed_severity in SEVERITY_ORDER and diff.title and diff.component


def test_improvements_change_only_their_fields_and_fix_off_in_both():
    for imp in IMPROVEMENTS:
        orig = original_baseline()
        assert set(config_diff(orig, imp.apply(orig))) == set(imp.sets)
        assert all(getattr(orig.model, f.split(".")[1], None) != v
                   for f, v in imp.sets.items() if f.startswith("model"))


def test_seed_audit_claims_are_recorded():
    claimed = {d.id: d.claimed_severity for d in DIFFERENCES if d.claimed_severity != NOT_IN_SEED}
    assert claimed["decoder"] == "MASSIVE" and claimed["pixel-sampling"] == "SEVERE" and claimed["depth"] == "MINOR"
    assert by_severity()[0].id == "decoder"
    assert get("jitter-train").claimed_severity == "CRITICAL"  # the seed's claim; neither source jitters


def test_unknown_id_suggests_the_closest():
    with pytest.raises(ParityError, match="did you mean 'patch-size'"):
        get("patch_size")
    assert len(REGISTRY) == len(DIFFERENCES) + len(IMPROVEMENTS)


def test_requirements_are_declared_where_a_toggle_needs_a_decoder():
    assert get("modulation-entry").applicable(original_baseline()) is not None
    assert get("modulation-entry").applicable(notebook_baseline()) is None
    assert get("fix-batch0-coords").applicable(notebook_baseline()) is not None


def test_builder_from_original_is_the_original_port():
    import original_port
    from original_port.configs import cifar10_model_spec

    assert transinr_spec(original_baseline().model, 32) == cifar10_model_spec()
    torch.manual_seed(0)
    port = original_port.from_spec(cifar10_model_spec())
    built = build_model(original_baseline())
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in port.state_dict().items()}
    built.load_state_dict(port.state_dict())
    images = torch.rand(1, 3, 32, 32)
    coords = torch.rand(1, 40, 2)
    with torch.no_grad():
        assert torch.equal(built.decode(built.encode(images), coords), port.decode(port.encode(images), coords))


def test_builder_from_notebook_is_the_notebook_port():
    import notebook_port

    port = notebook_port.MambaGINR_CIFAR(**notebook_port.NOTEBOOK_CIFAR_KWARGS)
    built = build_model(notebook_baseline())
    assert {k: v.shape for k, v in built.state_dict().items()} == {k: v.shape for k, v in port.state_dict().items()}
    built.load_state_dict(port.state_dict())
    images, coords = torch.rand(2, 3, 32, 32), torch.rand(2, 40, 2)
    with torch.no_grad():
        assert torch.equal(built(images, coords), port(images, coords))


INIT_ONLY = {"lp-init"}  # changes the initial weights, not the forward for given weights
NO_OP_IN_BASELINES = {"fix-lp-extraction"}  # both baselines insert and read LPs equidistantly


def _lps(model):
    return model.lps if hasattr(model, "lps") else model.lp_module.lps


@pytest.mark.parametrize("entry", [*DIFFERENCES, *IMPROVEMENTS], ids=lambda d: d.id)
def test_every_toggle_builds_and_runs_from_either_baseline(entry):
    """Each toggle is meaningful alone from either side: it builds and runs, and a model toggle changes
    the model (its parameters, or its forward for the same weights)."""
    from parity.experiment.presets import preset

    images, coords = torch.rand(2, 3, 16, 16), torch.rand(2, 20, 2)
    pair = preset("smoke").baselines()  # scaled down, every difference kept
    for base, side in ((pair[0], "original"), (pair[1], "notebook")):
        cfg = entry.apply(base, side, pair)
        model, reference = build_model(cfg), build_model(base)
        with torch.no_grad():
            out = model.decode(model.encode(images), coords)
        assert out.shape == (2, 20, 3) and torch.isfinite(out).all()
        touches_model = any(f.startswith("model.") for f in entry.fields)
        if not touches_model or entry.applicable(cfg) is not None or entry.id in NO_OP_IN_BASELINES:
            continue
        if entry.id in INIT_ONLY:
            assert abs(_lps(model).std().item() - _lps(reference).std().item()) > 0.1
            continue
        ours = {k: v.shape for k, v in model.state_dict().items()}
        if ours != {k: v.shape for k, v in reference.state_dict().items()}:
            continue  # different parameters: a different model by construction
        model.load_state_dict(reference.state_dict())
        with torch.no_grad():
            assert not torch.equal(model.decode(model.encode(images), coords),
                                   reference.decode(reference.encode(images), coords)), (entry.id, side)


# ---------------------------------------------------------------- groups (the factorial's factors)

def test_every_difference_is_in_exactly_one_group_or_evaluation_side():
    from parity.experiment.differences import EVALUATION_SIDE, GROUPS

    placed = [d for ids in GROUPS.values() for d in ids] + list(EVALUATION_SIDE)
    assert sorted(placed) == sorted(d.id for d in DIFFERENCES)


def test_evaluation_side_differences_change_only_what_is_scored():
    from parity.experiment.differences import EVALUATION_SIDE

    for diff_id in EVALUATION_SIDE:
        assert get(diff_id).component in ("data", "evaluation")
        assert all(f.startswith(("data.split", "data.resize_crop", "eval.")) for f in get(diff_id).fields)


def test_parse_groups_names_the_problem():
    from parity.experiment.differences import GROUPS, parse_groups

    assert parse_groups(None) == tuple(GROUPS)
    assert parse_groups("decoder, encoder") == ("decoder", "encoder")
    with pytest.raises(ParityError, match="unknown group 'decodr'.*did you mean 'decoder'"):
        parse_groups("decodr,encoder")
    with pytest.raises(ParityError, match="at least two"):
        parse_groups("decoder")


def test_config_names_read_back_as_written():
    """One codec: the names the matrices write are the names named_config reads."""
    from parity.experiment.differences import config_name, named_config

    name = config_name("original", ("-", "coords"), ("+", "jitter-train"))
    assert name == "original-coords+jitter-train"
    assert named_config(name).name == name
    with pytest.raises(ValueError, match="base must be one of notebook, original"):
        config_name("nb", ("+", "coords"))


def test_the_epochs_carry_their_schedule_subdivision_from_a_presets_pair():
    """smoke compresses the sides' schedules differently (lr_subepochs 2 vs 10): handing the epochs over hands
    over the schedule's length with them, so neither side's cosine runs past its T_max."""
    from parity.experiment.presets import preset

    pair = preset("smoke").baselines()
    epochs = next(d for d in DIFFERENCES if d.id == "epochs")
    for base, side, other in ((pair[0], "original", pair[1]), (pair[1], "notebook", pair[0])):
        moved = epochs.apply(base, side, pair).train
        assert (moved.epochs, moved.lr_subepochs) == (other.train.epochs, other.train.lr_subepochs)
        assert moved.epochs * moved.lr_subepochs == other.train.epochs * other.train.lr_subepochs
    assert pair[0].train.lr_subepochs != pair[1].train.lr_subepochs  # the case this guards
