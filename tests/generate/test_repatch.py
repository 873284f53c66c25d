import pytest
import torch

from videoai.generate.default import build_transformer
from videoai.generate.repatch import repatch_transformer

from .conftest import TINY


@pytest.fixture
def coarse():
    torch.manual_seed(0)
    return build_transformer(TINY)  # patch (1, 2, 2)


def test_fine_tokens_of_a_blockwise_constant_input_embed_like_the_coarse_token(coarse):
    fine = repatch_transformer(coarse, (1, 1, 1))
    assert tuple(fine.config.patch_size) == (1, 1, 1)
    blocks = torch.randn(1, coarse.config.in_channels, 2, 3, 3)
    x = blocks.repeat_interleave(2, 3).repeat_interleave(2, 4)  # (1, C, 2, 6, 6) constant over 2x2 blocks
    coarse_tokens = coarse.patch_embedding(x)  # (1, D, 2, 3, 3)
    fine_tokens = fine.patch_embedding(x)  # (1, D, 2, 6, 6)
    torch.testing.assert_close(fine_tokens, coarse_tokens.repeat_interleave(2, 3).repeat_interleave(2, 4))


def test_fine_output_projection_is_the_mean_over_the_coarse_sub_positions(coarse):
    fine = repatch_transformer(coarse, (1, 1, 1))
    hidden = torch.randn(5, fine.proj_out.in_features)
    coarse_out = coarse.proj_out(hidden).reshape(5, 1, 2, 2, -1)  # (N, pt, ph, pw, C)
    torch.testing.assert_close(fine.proj_out(hidden), coarse_out.mean((1, 2, 3)))


def test_other_weights_are_copied_and_the_model_runs_on_the_finer_grid(coarse):
    fine = repatch_transformer(coarse, (1, 1, 1))
    coarse_state, fine_state = coarse.state_dict(), fine.state_dict()
    for name, value in coarse_state.items():
        if not name.startswith(("patch_embedding", "proj_out")):
            torch.testing.assert_close(fine_state[name], value)
    x = torch.randn(2, coarse.config.in_channels, 2, 4, 6)
    out = fine(x, torch.tensor([10.0, 500.0]), torch.zeros(2, 1, TINY.text_dim), return_dict=False)[0]
    assert out.shape == (2, coarse.config.out_channels, 2, 4, 6)


def test_coarser_round_trip_and_bad_patch_sizes(coarse):
    fine = repatch_transformer(coarse, (1, 1, 1))
    back = repatch_transformer(fine, (1, 2, 2))
    width = coarse.proj_out.in_features
    mean = coarse.proj_out.weight.reshape(4, -1, width).mean(0)  # (C, D) what the fine model predicts everywhere
    torch.testing.assert_close(back.proj_out.weight, mean.repeat(4, 1))  # each sub-position repeats it
    with pytest.raises(ValueError, match="patch_size"):
        repatch_transformer(coarse, (1, 3, 3))
    with pytest.raises(ValueError, match="patch_size"):
        repatch_transformer(coarse, (1, 2))
