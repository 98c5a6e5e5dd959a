"""Quirks of the original reproduced: LP read-back for non-equidistant types, batch-0 coordinates,
unclamped patch index; and the spec/checkpoint entry points."""

import pytest
import torch

import original_port
from original_port.decoder import raster_patch_index
from original_port.model import equidistant_positions, interleave_permutation, lp_read_positions
from parity.core.errors import ParityError


def small_spec(**overrides):
    args = {
        "tokenizer": {"name": "mamba_patch_tokenizer", "args": {"input_size": 8, "patch_size": 2, "dim": 48,
                                                                 "pos_emb": "fourier"}},
        "hyponet": {"name": "lainr_mlp_bias", "args": {"feature_dim": 16, "input_dim": 2, "output_dim": 3,
                                                       "sigma_q": 16, "sigma_ls": [128, 32], "n_patches": 16}},
        "mamba_encoder": {"name": "mamba_encoder", "args": {"dim": 48, "depth": 1, "ff_dim": 64}},
        "type": "equidistant", "n_group": 1, "num_lp": 8,
    }
    args.update(overrides)
    return {"name": "mamba_lainr_inr", "args": args}


def test_permutation_puts_lps_at_equidistant_positions():
    perm = interleave_permutation(16, 4)
    pos = equidistant_positions(16, 4)
    assert pos.tolist() == [0, 6, 12, 19]
    assert perm[pos].tolist() == [16, 17, 18, 19]
    others = [i for i in range(20) if i not in pos.tolist()]
    assert perm[others].tolist() == list(range(16))


@pytest.mark.parametrize("lp_type,n_group", [("middle", 1), ("n_group", 2)])
def test_non_equidistant_types_read_back_other_tokens(lp_type, n_group):
    inserted = set(equidistant_positions(16, 4).tolist())
    read = {int(i) for i in lp_read_positions(16, 4, lp_type, n_group)}
    assert read != inserted  # the source's defect, reproduced


def test_fix_lp_extraction_reads_back_the_inserted_tokens():
    model = original_port.from_spec(small_spec(type="middle", fix_lp_extraction=True))
    x = torch.randn(1, model.input_len, model.dim)
    assert torch.equal(model.extract_lp_tokens(model.add_lp(x)), model.lps.unsqueeze(0))


def test_n_group_must_divide_num_lp():
    with pytest.raises(ValueError, match="must divide"):
        lp_read_positions(16, 6, "n_group", 4)


def test_decoder_uses_batch_zero_coordinates_for_everyone():
    torch.manual_seed(0)
    model = original_port.from_spec(small_spec())
    tokens = model.encode(torch.rand(2, 3, 8, 8))
    grid = torch.rand(2, 8, 8, 2)
    other = grid.clone()
    other[1] = torch.rand(8, 8, 2)
    with torch.no_grad():
        assert torch.equal(model.decode(tokens, grid), model.decode(tokens, other))
        model.hyponet.per_sample_coords = True
        assert not torch.equal(model.decode(tokens, grid), model.decode(tokens, other))


def test_patch_index_is_not_clamped():
    coords = torch.tensor([[1.2, 0.5], [-0.3, 0.0]])
    assert raster_patch_index(coords, 4).tolist() == [4 * 4 + 2, -4]  # row 4 of 0..3; row -1


def test_wrong_image_size_is_a_clear_error():
    model = original_port.from_spec(small_spec())
    with pytest.raises(ValueError, match="does not match the tokenizer's input_size 8x8"):
        model.encode(torch.rand(1, 3, 16, 16))


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    spec = small_spec()
    model = original_port.from_spec(spec)
    opt = original_port.make_optimizer(model.parameters(), {"name": "adamw", "args": {"lr": 5e-4}})
    path = tmp_path / "epoch-last.pth"
    original_port.save_checkpoint(path, model, spec, opt, {"name": "adamw", "args": {"lr": 5e-4}}, epoch=3,
                                  cfg={"max_epoch": 40})
    loaded = original_port.load_checkpoint(path)
    assert loaded.epoch == 3 and loaded.cfg == {"max_epoch": 40}
    assert all(torch.equal(v, loaded.model.state_dict()[k]) for k, v in model.state_dict().items())
    model_, epoch, cfg, optimizer = loaded
    assert optimizer["name"] == "adamw"


def test_bad_checkpoints_are_one_line_errors(tmp_path):
    truncated = tmp_path / "truncated.pth"
    torch.save({"model": {"sd": {}}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:40])
    with pytest.raises(ParityError, match="not a readable torch file"):
        original_port.load_checkpoint(truncated)
    with pytest.raises(ParityError, match="does not exist"):
        original_port.load_checkpoint(tmp_path / "missing.pth")
    bare = tmp_path / "bare.pt"
    torch.save({"w": torch.zeros(1)}, bare)
    with pytest.raises(ParityError, match="not a trans-inr checkpoint"):
        original_port.load_checkpoint(bare)
    wrong = tmp_path / "wrong.pth"
    spec = small_spec()
    sd = original_port.from_spec(spec).state_dict()
    sd.pop("lps")
    sd["extra"] = torch.zeros(1)
    torch.save({"model": {**spec, "sd": sd}}, wrong)
    with pytest.raises(ParityError, match=r"missing 1: lps; unexpected 1: extra"):
        original_port.load_checkpoint(wrong)


def test_unknown_model_name_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model name 'nope'"):
        original_port.make({"name": "nope", "args": {}})
