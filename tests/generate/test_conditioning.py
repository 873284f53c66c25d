import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline

from videoai.generate import apply_tracks, encode_image_condition, latent_frame_tracks, motion_maps
from videoai.generate.conditioning import check_num_frames, first_frame_mask, latent_num_frames
from videoai.tokenize.tracks import Tracks


def test_latent_frames_and_frame_rule():
    assert [latent_num_frames(t, 4) for t in (1, 5, 13, 81)] == [1, 2, 4, 21]
    assert check_num_frames(13, 4) == 13
    with pytest.raises(ValueError, match="num_frames must be 4\\*k \\+ 1.*use 9 or 13"):
        check_num_frames(12, 4)


def test_image_condition_matches_wan_i2v(tiny_pipe):
    vae = tiny_pipe.vae
    image = torch.rand(1, 3, 32, 32) * 2 - 1
    wan = WanImageToVideoPipeline(tokenizer=None, text_encoder=None, vae=vae,
                                  scheduler=FlowMatchEulerDiscreteScheduler())
    _, expected = wan.prepare_latents(image, 1, vae.config.z_dim, 32, 32, 9, torch.float32, "cpu",
                                      torch.Generator().manual_seed(0))
    ours = encode_image_condition(vae, image, 9)
    assert ours.shape == expected.shape == (1, 4 + vae.config.z_dim, 3, 4, 4)
    torch.testing.assert_close(ours, expected)


def test_first_frame_mask_layout():
    mask = first_frame_mask(2, 9, 3, 3, 4)  # (B, f, L, h, w)
    assert mask.shape == (2, 4, 3, 3, 3)
    assert mask[:, :, 0].eq(1).all() and mask[:, :, 1:].eq(0).all()


def test_latent_frame_tracks_average_chunks_and_visibility():
    points = torch.arange(9, dtype=torch.float32)[:, None, None].expand(9, 1, 2).clone()  # x = y = frame index
    visibility = torch.ones(9, 1, dtype=torch.bool)
    visibility[5:9] = False  # whole second chunk hidden
    per_latent = latent_frame_tracks(Tracks(points, visibility, 16, 16), 4)
    assert per_latent.points[:, 0, 0].tolist() == [0.0, 2.5, 6.5]  # frame 0, mean(1..4), mean(5..8)
    assert per_latent.visibility[:, 0].tolist() == [True, True, False]


def _condition(channels=3, frames=3, size=8):
    generator = torch.Generator().manual_seed(0)
    latent = torch.randn(1, channels, frames, size, size, generator=generator)
    mask = first_frame_mask(1, 4 * (frames - 1) + 1, size, size, 4)
    return torch.cat([mask, latent], 1)  # (1, 4 + C, L, h, w)


def test_apply_tracks_copies_first_frame_feature_along_the_track():
    condition = _condition()
    # one point at latent cell (x, y) = (1, 1) in frame 0 and (6, 1) afterwards, in 64x64 pixels (8 px per cell)
    points = torch.tensor([[[6 * 8 + 3.5, 1 * 8 + 3.5]]]).repeat(9, 1, 1)
    points[0] = torch.tensor([1 * 8 + 3.5, 1 * 8 + 3.5])
    tracks = Tracks(points, torch.ones(9, 1, dtype=torch.bool), 64, 64)
    edited = apply_tracks(condition, tracks, 4, sigma=0.5)
    assert edited.shape == condition.shape
    torch.testing.assert_close(edited[:, :, 0], condition[:, :, 0])  # frame 0 (image latent, mask) untouched
    source = condition[0, 4:, 0, 1, 1]  # the feature under the start point
    torch.testing.assert_close(edited[0, 4:, 2, 1, 6], source, atol=1e-4, rtol=1e-4)  # last latent frame: at the end
    assert edited[0, :4, 2, 1, 6].max() > 0.9  # marked in the mask at the last pixel frame's position
    assert edited[0, :4, 1:, 6, 1].abs().max() == 0  # far cells untouched
    torch.testing.assert_close(edited[0, 4:, 1:, 6, 1], condition[0, 4:, 1:, 6, 1])


def test_apply_tracks_respects_visibility_and_empty_tracks():
    condition = _condition()
    tracks = Tracks.from_polylines([[(10, 10), (50, 10)]], 9, 64, 64)
    hidden = Tracks(tracks.points, torch.zeros_like(tracks.visibility), 64, 64)
    torch.testing.assert_close(apply_tracks(condition, hidden, 4, 1.0), condition)
    empty = Tracks(tracks.points[:, :0], tracks.visibility[:, :0], 64, 64)
    assert apply_tracks(condition, empty, 4, 1.0) is condition
    no_mask = apply_tracks(condition, tracks, 4, 1.0, mark_mask=False)
    torch.testing.assert_close(no_mask[:, :4], condition[:, :4])


def test_motion_maps_shape_and_displacement():
    tracks = Tracks.from_polylines([[(4, 4), (36, 4)]], 9, 64, 64)  # 32 px = 4 latent cells to the right
    maps = motion_maps(tracks, 8, 8, 4, sigma=0.5)
    assert maps.shape == (12, 3, 8, 8)
    dx_last = maps[4 + 3, 2]  # dx channel block, last pixel frame of latent frame 2, at the frame-0 cell
    assert dx_last[0, 0] == pytest.approx(4.0, abs=1e-4)
