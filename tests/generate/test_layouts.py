"""Every Wan I2V layout: parity with diffusers' WanImageToVideoPipeline, refusals at load, tracks, track_conditioning."""

import json
import shutil

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import WanImageToVideoPipeline

from videoai.generate import TrajectoryImageToVideoPipeline
from videoai.generate.wan_move import wan_move_condition
from videoai.tokenize.tracks import Tracks

from .wan_layouts import LAYOUTS, SIZES, save_layout

NUM_FRAMES = 9  # 3 latent frames


def _images(size: int) -> tuple[PIL.Image.Image, PIL.Image.Image]:
    pixels = np.random.RandomState(0).randint(0, 256, (size, size, 3), dtype=np.uint8)
    return PIL.Image.fromarray(pixels), PIL.Image.fromarray(pixels[::-1].copy())


def _call(pipe, layout: str, **kwargs):
    """Run pipe (ours or diffusers') on the layout's test inputs; returns the output latents."""
    size = SIZES[layout]
    image, last = _images(size)
    if layout == "wan2.1-flf2v":
        kwargs.setdefault("last_image", last)
    kwargs.setdefault("prompt", "a red car drives left")
    kwargs.setdefault("negative_prompt", "blurry static")
    kwargs.setdefault("guidance_scale", 5.0)
    return pipe(image, height=size, width=size, num_frames=NUM_FRAMES, num_inference_steps=3,
                generator=torch.Generator().manual_seed(0), output_type="latent", max_sequence_length=8,
                **kwargs).frames


@pytest.fixture(scope="module", params=LAYOUTS)
def folder(request, tmp_path_factory):
    """(layout, a tiny checkpoint folder written by diffusers' WanImageToVideoPipeline.save_pretrained)."""
    return request.param, save_layout(request.param, tmp_path_factory.mktemp(request.param))


@pytest.mark.parametrize("batch_guidance", [False, True])
def test_matches_diffusers_without_tracks(folder, batch_guidance):
    layout, path = folder
    ours = TrajectoryImageToVideoPipeline.from_pretrained(path)
    theirs = WanImageToVideoPipeline.from_pretrained(path)
    assert ours.layout.name == layout
    extra = dict(guidance_scale_2=3.0) if layout == "wan2.2-i2v-a14b" else {}
    expected = _call(theirs, layout, **extra)
    got = _call(ours, layout, batch_guidance=batch_guidance, **extra)
    assert got.shape == expected.shape
    print(f"{layout}: max abs diff {(got - expected).abs().max().item():.2e}")
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_two_experts_switch_at_the_boundary(tmp_path, monkeypatch):
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout("wan2.2-i2v-a14b", tmp_path))
    calls = []
    for name in ("transformer", "transformer_2"):
        model = getattr(pipe, name)
        forward = model.forward
        monkeypatch.setattr(model, "forward", lambda *a, _f=forward, _n=name, **k: calls.append(
            (_n, float(k["timestep"][0]))) or _f(*a, **k))
    _call(pipe, "wan2.2-i2v-a14b", batch_guidance=True)
    # boundary_ratio 0.9: t = 999 on the high-noise expert, 857 and 600 on the low-noise one
    assert calls == [("transformer", 999.0), ("transformer_2", 857.0), ("transformer_2", 600.0)]
    monkeypatch.undo()
    same = _call(pipe, "wan2.2-i2v-a14b", guidance_scale_2=5.0)
    other = _call(pipe, "wan2.2-i2v-a14b", guidance_scale_2=1.0)
    torch.testing.assert_close(same, _call(pipe, "wan2.2-i2v-a14b"))  # default: guidance_scale
    assert (same - other).abs().max() > 1e-4


def _edit_index(path, **changes):
    index = json.loads((path / "model_index.json").read_text())
    index.update(changes)
    (path / "model_index.json").write_text(json.dumps(index))


@pytest.mark.parametrize("layout, change, match", [
    ("wan2.2-i2v-a14b", dict(boundary_ratio=None), "transformer_2 is present but boundary_ratio is not set"),
    ("wan2.2-i2v-a14b", dict(transformer_2=[None, None]), "boundary_ratio=0.9 is set but transformer_2"),
    ("wan2.2-i2v-a14b", dict(boundary_ratio=1.5), "boundary_ratio must be a number in \\(0, 1\\]"),
    ("wan2.1-i2v", dict(_class_name="WanPipeline"), "holds a WanPipeline"),
    ("wan2.1-i2v", dict(vae=[None, None]), "vae missing from"),
    ("wan2.1-i2v", dict(image_encoder=[None, None]), "image_processor is present but image_encoder is missing"),
    ("wan2.2-ti2v-5b", dict(expand_timesteps=False), "transformer in_channels=48 but this layout feeds 100"),
    ("wan2.1-i2v", dict(expand_timesteps=True), "transformer in_channels=12 but this layout feeds 4"),
])
def test_unrunnable_folders_are_refused_at_load(tmp_path, layout, change, match):
    path = save_layout(layout, tmp_path)
    _edit_index(path, **change)
    with pytest.raises(ValueError, match=match):
        TrajectoryImageToVideoPipeline.from_pretrained(path)


def test_missing_component_folder_is_refused(tmp_path):
    path = save_layout("wan2.1-i2v", tmp_path)
    shutil.rmtree(path / "transformer")
    with pytest.raises(ValueError, match="transformer is listed in model_index.json but .* is missing"):
        TrajectoryImageToVideoPipeline.from_pretrained(path)


def test_a_diffusers_folder_keeps_diffusers_guidance_default(tmp_path):
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout("wan2.1-i2v", tmp_path))
    assert pipe.config.default_guidance_scale == 5.0 and pipe.config.track_conditioning == "videoai"


@pytest.mark.parametrize("layout, kwargs, match", [
    ("wan2.2-ti2v-5b", dict(last_image="last"), "last_image: a TI2V"),
    ("wan2.1-i2v", dict(last_image="last"), "last_image: this transformer takes one CLIP image"),
    ("wan2.1-flf2v", dict(last_image=None), "last_image is required"),
    ("wan2.1-i2v", dict(guidance_scale_2=2.0), "guidance_scale_2 is only used with two experts"),
    ("wan2.2-ti2v-5b", dict(track_conditioning="wan-move"), "track_conditioning='wan-move' .* TI2V"),
    ("wan2.1-i2v", dict(track_conditioning="ati"), "track_conditioning must be one of .*'ati'"),
    ("wan2.1-i2v", dict(track_strength=-0.5), "track_strength must be a finite number >= 0, got -0.5"),
])
def test_bad_calls_per_layout(tmp_path, layout, kwargs, match):
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path))
    if kwargs.get("last_image") == "last":
        kwargs["last_image"] = _images(SIZES[layout])[1]
    with pytest.raises(ValueError, match=match):
        _call(pipe, layout, tracks=[[(4, 4), (20, 20)]], **kwargs)


def _cell_centre(cell: int, factor: int) -> float:
    return cell * factor + (factor - 1) / 2  # pixel-centre convention of Tracks


@pytest.mark.parametrize("track_conditioning", ["videoai", "wan-move"])
def test_tracks_reach_every_channel_layout(tmp_path, track_conditioning):
    for layout in ("wan2.1-i2v", "wan2.1-flf2v", "wan2.2-i2v-a14b"):
        pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path / layout))
        paths = [[(_cell_centre(0, 8), _cell_centre(0, 8)), (_cell_centre(3, 8), _cell_centre(2, 8))]]
        moved = _call(pipe, layout, tracks=paths, track_conditioning=track_conditioning)
        still = _call(pipe, layout)
        assert (moved - still).abs().max() > 1e-4, layout


def test_first_last_frame_keeps_the_last_latent_frame(tmp_path):
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout("wan2.1-flf2v", tmp_path))
    image, last = (pipe.video_processor.preprocess(picture, 32, 32) for picture in _images(32))
    _, plain = pipe.prepare_latents(image, last, 1, NUM_FRAMES, None, None)
    assert plain.mask[0, :, -1].sum() == 1 * 4 * 4  # the last pixel frame's slot is known
    tracks = Tracks.from_polylines([[(3.5, 3.5), (27.5, 19.5)]], NUM_FRAMES, 32, 32)
    for method in ("videoai", "wan-move"):
        edited = pipe.layout.with_tracks(plain, tracks, method, 1.0, 1.0, True, last_image=True)
        torch.testing.assert_close(edited.latent[:, :, -1], plain.latent[:, :, -1])
        assert (edited.latent[:, :, 1] - plain.latent[:, :, 1]).abs().max() > 1e-4


def test_ti2v_tracks_are_kept_content(tmp_path, monkeypatch):
    """TI2V: the carried first-frame feature is kept like the first frame (timestep lowered on its tokens)."""
    layout = "wan2.2-ti2v-5b"
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path))
    factor = pipe.vae_scale_factor_spatial  # 16: a 64x64 video has 4x4 latent cells, 2x2 tokens
    points = torch.tensor([_cell_centre(1, factor), _cell_centre(1, factor)]).repeat(NUM_FRAMES, 1, 1)
    points[1:] = torch.tensor([_cell_centre(3, factor), _cell_centre(3, factor)])  # cell (1, 1) -> (3, 3)
    tracks = Tracks(points, torch.ones(NUM_FRAMES, 1, dtype=torch.bool), 64, 64)
    timesteps = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward",
                        lambda *a, **k: timesteps.append(k["timestep"].clone()) or forward(*a, **k))
    out = _call(pipe, layout, tracks=tracks, track_sigma=0.3)  # a Gaussian truncated inside one cell
    for latent_frame in (1, 2):  # the track's cell holds the frame-0 feature from under its start
        torch.testing.assert_close(out[0, :, latent_frame, 3, 3], out[0, :, 0, 1, 1])
    guided, unguided, t = timesteps[0][0].view(3, 2, 2), timesteps[1][0].view(3, 2, 2), timesteps[1].max()
    assert guided[0].eq(0).all() and unguided[0].eq(0).all()  # frame 0: the image, timestep 0
    assert unguided[1:].eq(t).all()  # the unguided branch: the plain condition
    # the track's token has 1 of its 4 cells kept: timestep 3/4 t; the other tokens are untouched
    for latent_frame in (1, 2):
        assert guided[latent_frame, 1, 1].item() == pytest.approx(0.75 * t.item())
        assert guided[latent_frame].flatten()[:3].eq(t).all()
    plain = _call(pipe, layout)
    assert (out - plain).abs().max() > 1e-3


def test_wan_move_guidance_branches(tmp_path, monkeypatch):
    """Wan-Move: the guided branch sees the prompt, the unguided one the negative prompt, and both the edited
    condition (the authors' generate code edits `y` in place through a view before building y_uncond); the mask
    channels are never edited."""
    layout = "wan2.1-i2v"
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path))
    seen = []
    forward = pipe.transformer.forward
    monkeypatch.setattr(pipe.transformer, "forward", lambda *a, **k: seen.append(
        (k["hidden_states"].clone(), k["encoder_hidden_states"].clone())) or forward(*a, **k))
    tracks = Tracks.from_polylines([[(3.5, 3.5), (27.5, 19.5)], [(11.5, 27.5)]], NUM_FRAMES, 32, 32)
    _call(pipe, layout, tracks=tracks, track_conditioning="wan-move", track_strength=0.75, batch_guidance=False)
    (guided, guided_text), (unguided, unguided_text) = seen[:2]
    z_dim = pipe.vae.config.z_dim
    torch.testing.assert_close(guided[:, z_dim:], unguided[:, z_dim:])  # same mask and the same edited latent
    image = pipe.video_processor.preprocess(_images(32)[0], 32, 32)
    _, plain = pipe.prepare_latents(image, None, 1, NUM_FRAMES, None, None)
    torch.testing.assert_close(plain.mask, guided[:, z_dim:z_dim + 4])  # mask untouched
    torch.testing.assert_close(guided[:, z_dim + 4:], wan_move_condition(plain.latent, tracks, 8, 4, 0.75))
    assert (guided[:, z_dim + 4:] - plain.latent).abs().max() > 1e-3
    prompt, negative = pipe.encode_prompt("a red car drives left", "blurry static", 1, True, 8)
    torch.testing.assert_close(guided_text, prompt)
    torch.testing.assert_close(unguided_text, negative)


def test_wan_move_strength_zero_is_no_edit(tmp_path):
    layout = "wan2.1-i2v"
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path))
    tracks = [[(3.5, 3.5), (27.5, 19.5)]]
    zero = _call(pipe, layout, tracks=tracks, track_conditioning="wan-move", track_strength=0.0)
    torch.testing.assert_close(zero, _call(pipe, layout))


def test_track_conditioning_is_saved_and_overridden(tmp_path):
    layout = "wan2.1-i2v"
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(save_layout(layout, tmp_path / "wan"),
                                                         track_conditioning="wan-move", track_strength=0.5)
    assert (pipe.config.track_conditioning, pipe.config.track_strength) == ("wan-move", 0.5)
    pipe.save_pretrained(tmp_path / "ours")
    loaded = TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "ours")
    assert (loaded.config.track_conditioning, loaded.config.track_strength) == ("wan-move", 0.5)
    tracks = [[(3.5, 3.5), (27.5, 19.5)]]
    by_config = _call(loaded, layout, tracks=tracks)
    torch.testing.assert_close(by_config, _call(pipe, layout, tracks=tracks, track_conditioning="wan-move",
                                                track_strength=0.5))
    videoai = _call(loaded, layout, tracks=tracks, track_conditioning="videoai")
    assert (videoai - by_config).abs().max() > 1e-4
    with pytest.raises(ValueError, match="track_conditioning must be one of .*'motion-brush'"):
        TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "ours", track_conditioning="motion-brush")


def test_embedded_model_defaults_to_videoai_conditioning():
    from videoai.generate import load_default_pipeline

    pipe = load_default_pipeline()
    assert pipe.config.track_conditioning == "videoai" and pipe.config.track_strength == 1.0
    assert pipe.layout.name == "wan2.1-i2v"


def test_motion_adapter_refuses_wan_move(tiny_pipe_with_adapter, image):
    with pytest.raises(ValueError, match="track_conditioning='wan-move' cannot drive this pipeline's motion_adapter"):
        tiny_pipe_with_adapter(image, tracks=[[(4, 4), (20, 20)]], track_conditioning="wan-move",
                               num_inference_steps=1, output_type="latent")


def test_videoai_track_strength_scales_the_feature_copy():
    from videoai.generate.conditioning import apply_tracks, first_frame_mask

    latent = torch.randn(1, 3, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    condition = torch.cat([first_frame_mask(1, 9, 8, 8, 4), latent], 1)  # (1, 4 + C, L, h, w)
    tracks = Tracks.from_polylines([[(11.5, 11.5), (51.5, 27.5)]], 9, 64, 64)
    full = apply_tracks(condition, tracks, 4, 1.0, mark_mask=False)
    half = apply_tracks(condition, tracks, 4, 1.0, mark_mask=False, strength=0.5)
    torch.testing.assert_close(apply_tracks(condition, tracks, 4, 1.0, mark_mask=False, strength=0.0), condition)
    torch.testing.assert_close(half, (condition + full) / 2)
    assert (full - condition).abs().max() > 1e-3
