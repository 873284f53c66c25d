import pytest
import torch

from videoai.tokenize.patches import patch_grid, patchify, unpatchify
from videoai.tokenize.rope import apply_rope, rope_3d, rope_axis_dims


def test_patchify_round_trip_is_exact():
    x = torch.randn(2, 3, 4, 8, 12)
    tokens, grid = patchify(x, (2, 4, 4))
    assert tokens.shape == (2, 2 * 2 * 3, 3 * 2 * 4 * 4)
    assert grid == (2, 2, 3)
    assert torch.equal(unpatchify(tokens, (2, 4, 4), grid), x)


def test_patchify_token_holds_its_tubelet():
    x = torch.arange(1 * 1 * 2 * 4 * 4, dtype=torch.float32).view(1, 1, 2, 4, 4)
    tokens, grid = patchify(x, (1, 2, 2))
    # token 1 is frame 0, patch row 0, patch column 1: pixels (0,2),(0,3),(1,2),(1,3)
    assert tokens[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]
    assert grid == (2, 2, 2)


def test_int_patch_means_spatial_only():
    assert patch_grid((5, 8, 8), 4) == (5, 2, 2)


@pytest.mark.parametrize("shape", [(1, 3, 3, 8, 8), (1, 3, 4, 9, 8), (1, 3, 4, 8, 10)])
def test_patchify_rejects_indivisible_shapes(shape):
    with pytest.raises(ValueError, match="not divisible"):
        patchify(torch.zeros(shape), (2, 4, 4))


def test_patchify_rejects_bad_rank_and_patch():
    with pytest.raises(ValueError, match=r"\[B,C,T,H,W\]"):
        patchify(torch.zeros(3, 4, 8, 8), 2)
    with pytest.raises(ValueError, match="patch"):
        patchify(torch.zeros(1, 1, 2, 4, 4), (1, 0, 2))
    with pytest.raises(ValueError, match="grid"):
        unpatchify(torch.zeros(1, 5, 4), (1, 2, 2), (1, 2, 2))


def test_rope_shapes_and_identity_at_origin():
    cos, sin = rope_3d((2, 3, 4), 24)
    assert cos.shape == sin.shape == (24, 24)
    assert sum(rope_axis_dims(24)) == 24
    q = torch.randn(1, 2, 24, 24)
    out = apply_rope(q, cos, sin)
    assert torch.allclose(out[..., 0, :], q[..., 0, :])  # token 0 is at (0,0,0): no rotation
    assert torch.allclose(out.norm(dim=-1), q.norm(dim=-1), atol=1e-5)  # rotations keep norms


def test_rope_scores_depend_only_on_relative_position():
    grid, dim = (4, 4, 4), 48
    cos, sin = rope_3d(grid, dim)
    q, k = torch.randn(dim), torch.randn(dim)
    qs = apply_rope(q.expand(64, dim), cos, sin).view(*grid, dim)
    ks = apply_rope(k.expand(64, dim), cos, sin).view(*grid, dim)
    score_a = qs[2, 3, 1] @ ks[1, 1, 0]  # offset (1, 2, 1)
    score_b = qs[3, 2, 3] @ ks[2, 0, 2]  # same offset elsewhere
    score_c = qs[3, 2, 3] @ ks[0, 0, 2]  # another offset
    assert torch.allclose(score_a, score_b, atol=1e-4)
    assert not torch.allclose(score_a, score_c, atol=1e-4)


def test_rope_rejects_bad_arguments():
    with pytest.raises(ValueError, match="head_dim"):
        rope_3d((1, 2, 2), 7)
    with pytest.raises(ValueError, match="grid"):
        rope_3d((0, 2, 2), 12)
