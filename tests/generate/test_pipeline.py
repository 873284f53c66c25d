import numpy as np
import PIL.Image
import pytest
import torch

from videoai.generate import TrajectoryImageToVideoPipeline
from videoai.tokenize.tracks import Tracks

PATHS = [[(4, 4), (20, 12), (28, 28)], [(16, 16)]]  # one moving object, one static anchor (input-image pixels)


def _run(pipe, image, **kwargs):
    kwargs.setdefault("num_inference_steps", 2)
    kwargs.setdefault("output_type", "np")
    return pipe(image, generator=torch.Generator().manual_seed(0), **kwargs)


@pytest.mark.parametrize("output_type, shape", [("np", (2, 5, 32, 32, 3)), ("pt", (2, 5, 3, 32, 32)),
                                                ("latent", (2, 4, 2, 4, 4))])
def test_output_shapes(tiny_pipe, image, output_type, shape):
    out = _run(tiny_pipe, image, tracks=PATHS, num_videos_per_prompt=2, output_type=output_type)
    assert tuple(out.frames.shape) == shape
    assert out.tracks.points.shape == (5, 2, 2) and (out.tracks.width, out.tracks.height) == (32, 32)


def test_pil_output_and_inputs(tiny_pipe, image):
    out = _run(tiny_pipe, PIL.Image.fromarray(image.numpy()).resize((64, 48)), tracks=PATHS, height=32, width=32,
               output_type="pil")
    assert len(out.frames) == 1 and len(out.frames[0]) == 5 and out.frames[0][0].size == (32, 32)
    # polylines refer to the 64x48 input image; the returned tracks are in output pixels
    expected = [(4 + 0.5) * 32 / 64 - 0.5, (4 + 0.5) * 32 / 48 - 0.5]  # pixel-centre convention of Tracks
    assert out.tracks.points[0, 0].tolist() == pytest.approx(expected, abs=1e-4)
    chw = _run(tiny_pipe, image.permute(2, 0, 1).float() / 255, tracks=PATHS)
    hwc = _run(tiny_pipe, image, tracks=PATHS)
    np.testing.assert_allclose(chw.frames, hwc.frames, atol=1e-5)


def test_tracks_change_the_video_and_none_is_plain_i2v(tiny_pipe, image):
    with_tracks = _run(tiny_pipe, image, tracks=PATHS).frames
    without = _run(tiny_pipe, image, tracks=None).frames
    empty = _run(tiny_pipe, image, tracks=[]).frames
    assert np.abs(with_tracks - without).max() > 1e-4
    np.testing.assert_array_equal(without, empty)


def test_cfg_path(tiny_pipe, image):
    plain = _run(tiny_pipe, image, tracks=PATHS, guidance_scale=1.0).frames
    guided = _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0).frames
    assert np.abs(guided - plain).max() > 1e-4
    # without tracks or prompt there is nothing to guide by: guidance is skipped, the result is the plain one
    no_tracks = _run(tiny_pipe, image, guidance_scale=3.0).frames
    np.testing.assert_array_equal(no_tracks, _run(tiny_pipe, image).frames)


def test_cfg_extrapolates_from_unconditional(tiny_pipe, image, monkeypatch):
    seen = []
    forward = tiny_pipe.transformer.forward

    def spy(*args, **kwargs):
        seen.append(kwargs["hidden_states"].shape[0])
        return forward(*args, **kwargs)

    monkeypatch.setattr(tiny_pipe.transformer, "forward", spy)
    _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=1, batch_guidance=True)
    assert seen == [2]  # conditional and unconditional halves run as one batch
    seen.clear()
    _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=1)
    assert seen == [1, 1]  # on the CPU by default: one after the other (peak memory of one branch)
    seen.clear()
    interval = _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=4, guidance_interval=0.5,
                    batch_guidance=True)
    assert seen == [2, 2, 1, 1]  # guidance on the first half of the steps, then the conditional branch alone
    monkeypatch.undo()
    full = _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=4)
    same = _run(tiny_pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=4, guidance_interval=1.0)
    np.testing.assert_array_equal(full.frames, same.frames)
    assert np.abs(interval.frames - full.frames).max() > 1e-4


@pytest.mark.parametrize("with_adapter", [False, True])
def test_batched_and_sequential_guidance_agree(tiny_pipe, tiny_pipe_with_adapter, image, with_adapter):
    pipe = tiny_pipe_with_adapter if with_adapter else tiny_pipe
    if with_adapter:
        with torch.no_grad():
            for head in pipe.motion_adapter.heads:
                head.weight.normal_(0, 0.05)  # zero-initialised heads would make the adapter a no-op
    batched = _run(pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=3, batch_guidance=True)
    sequential = _run(pipe, image, tracks=PATHS, guidance_scale=3.0, num_inference_steps=3, batch_guidance=False)
    np.testing.assert_allclose(batched.frames, sequential.frames, atol=1e-4)


def test_save_load_round_trip(tmp_path, tiny_pipe_with_adapter, image):
    pipe = tiny_pipe_with_adapter
    with torch.no_grad():
        for head in pipe.motion_adapter.heads:
            head.weight.normal_(0, 0.05)
    before = _run(pipe, image, tracks=PATHS).frames
    pipe.save_pretrained(tmp_path)
    loaded = TrajectoryImageToVideoPipeline.from_pretrained(tmp_path)
    assert loaded.motion_adapter is not None and loaded.config.default_num_frames == 5
    np.testing.assert_allclose(_run(loaded, image, tracks=PATHS).frames, before, atol=1e-6)


def test_adapter_starts_as_identity_and_acts_only_with_tracks(tiny_pipe, tiny_pipe_with_adapter, image):
    plain = _run(tiny_pipe, image, tracks=PATHS).frames
    adapted = _run(tiny_pipe_with_adapter, image, tracks=PATHS).frames
    np.testing.assert_allclose(adapted, plain, atol=1e-6)  # zero-initialised heads
    with torch.no_grad():
        for head in tiny_pipe_with_adapter.motion_adapter.heads:
            head.weight.normal_(0, 0.05)
    assert np.abs(_run(tiny_pipe_with_adapter, image, tracks=PATHS).frames - plain).max() > 1e-4
    np.testing.assert_allclose(_run(tiny_pipe_with_adapter, image).frames, _run(tiny_pipe, image).frames, atol=1e-6)


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model_index.json"):
        TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "nothing")


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(num_frames=6), ValueError, "num_frames must be 4\\*k \\+ 1"),
    (dict(height=40), ValueError, "height must be a positive multiple of 16"),
    (dict(tracks=[[(1.0, float("nan"))]]), ValueError, "tracks: .*finite"),
    (dict(tracks=[[1.0, 2.0, 3.0]]), ValueError, "tracks: polylines\\[0\\]"),
    (dict(tracks=np.zeros((2, 3, 4))), ValueError, "tracks array must be \\(N, K, 2\\)"),
    (dict(tracks="left"), TypeError, "tracks must be a Tracks"),
    (dict(tracks=Tracks.static([[3, 3]], 9, 32, 32)), ValueError, "tracks has 9 frames but num_frames=5"),
    (dict(prompt="a red car"), ValueError, "no text_encoder"),
    (dict(output_type="gif"), ValueError, "output_type must be one of"),
    (dict(num_inference_steps=0), ValueError, "num_inference_steps"),
    (dict(guidance_interval=0.0), ValueError, "guidance_interval must be a fraction"),
])
def test_bad_inputs(tiny_pipe, image, kwargs, error, match):
    with pytest.raises(error, match=match):
        _run(tiny_pipe, image, **kwargs)


def test_bad_image(tiny_pipe):
    with pytest.raises(TypeError, match="image must be"):
        _run(tiny_pipe, "cat.png")
    with pytest.raises(ValueError, match="image array must be \\(H, W, 3\\)"):
        _run(tiny_pipe, np.zeros((32, 32), dtype=np.uint8))


def _wan21_style_pipe():
    """Tiny pipeline with the optional encoders of Wan 2.1 I2V: UMT5 text encoder and CLIP vision encoder."""
    from diffusers import WanTransformer3DModel
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, PreTrainedTokenizerFast,
                              UMT5Config, UMT5EncoderModel)

    from videoai.generate.default import build_pipeline

    from .conftest import TINY

    words = ["[UNK]", "[PAD]", "a", "red", "car", "drives", "left"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="[PAD]", unk_token="[UNK]")
    torch.manual_seed(0)
    text_encoder = UMT5EncoderModel(UMT5Config(vocab_size=len(words), d_model=8, d_kv=4, d_ff=16, num_layers=1,
                                               num_heads=2, relative_attention_num_buckets=4))
    image_encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=8, intermediate_size=16, num_hidden_layers=2,
                                                     num_attention_heads=2, image_size=32, patch_size=8))
    image_processor = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    transformer = WanTransformer3DModel(patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12,
                                        in_channels=2 * TINY.z_dim + 4, out_channels=TINY.z_dim, text_dim=8,
                                        freq_dim=16, ffn_dim=32, num_layers=2, image_dim=8, added_kv_proj_dim=24)
    pipe = build_pipeline(TINY, seed=0)
    return TrajectoryImageToVideoPipeline(vae=pipe.vae, transformer=transformer, scheduler=pipe.scheduler,
                                          tokenizer=tokenizer, text_encoder=text_encoder, image_encoder=image_encoder,
                                          image_processor=image_processor, default_num_frames=5)


def test_text_and_clip_encoders_as_wan21_i2v(image):
    pipe = _wan21_style_pipe()
    kwargs = dict(tracks=PATHS, max_sequence_length=6)
    plain = _run(pipe, image, prompt="a red car drives left", **kwargs).frames
    assert plain.shape == (1, 5, 32, 32, 3)
    other = _run(pipe, image, prompt="a car", **kwargs).frames
    assert np.abs(plain - other).max() > 1e-5  # the prompt reaches the transformer
    guided = _run(pipe, image, prompt="a red car drives left", negative_prompt="car", guidance_scale=2.0,
                  **kwargs).frames
    assert np.abs(guided - plain).max() > 1e-5


def test_points_may_leave_the_frame(tiny_pipe, image):
    leaving = [[(16, 16), (80, 16)]]  # exits the 32x32 frame half way
    out = _run(tiny_pipe, image, tracks=leaving)
    assert np.isfinite(out.frames).all()
    assert out.tracks.points[-1, 0, 0] > 32 and out.tracks.visibility.all()  # kept as given (out_of_frame="keep")


def test_guidance_defaults_come_from_the_saved_config(tmp_path, tiny_pipe, image):
    tiny_pipe.register_to_config(default_guidance_scale=3.0, default_guidance_interval=0.5)
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    loaded = TrajectoryImageToVideoPipeline.from_pretrained(tmp_path / "pipe")
    assert (loaded.config.default_guidance_scale, loaded.config.default_guidance_interval) == (3.0, 0.5)
    explicit = _run(tiny_pipe, image, tracks=PATHS, num_inference_steps=4, guidance_scale=3.0, guidance_interval=0.5)
    for pipe in (tiny_pipe, loaded):
        np.testing.assert_allclose(_run(pipe, image, tracks=PATHS, num_inference_steps=4).frames, explicit.frames,
                                   atol=1e-6)
    unguided = _run(tiny_pipe, image, tracks=PATHS, num_inference_steps=4, guidance_scale=1.0)
    assert np.abs(unguided.frames - explicit.frames).max() > 1e-4
