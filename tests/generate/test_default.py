import torch

from videoai.generate import DEFAULT_MODEL_DIR, end_point_error, load_default_pipeline
from videoai.generate.recipe import HELD_OUT_SEED, default_shapes_config
from videoai.synthetic import COLORS, make_clip


def test_embedded_model_is_small_and_tiny():
    files = [p for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file()]
    assert (DEFAULT_MODEL_DIR / "model_index.json").is_file(), f"embedded model missing in {DEFAULT_MODEL_DIR}"
    weights = sum(p.stat().st_size for p in files if p.suffix == ".safetensors")
    assert 0 < weights <= 20 * 2**20
    pipe = load_default_pipeline()
    parameters = sum(p.numel() for p in pipe.transformer.parameters()) + sum(p.numel() for p in pipe.vae.parameters())
    assert parameters < 10_000_000
    assert pipe.text_encoder is None and pipe.image_encoder is None


def test_embedded_model_follows_tracks():
    pipe = load_default_pipeline()
    pipe.set_progress_bar_config(disable=True)
    shapes = default_shapes_config()
    errors = {"tracks": [], "none": []}
    for index in range(2):
        clip = make_clip(HELD_OUT_SEED + 1000 + index, shapes)  # never seen in training
        colors = torch.tensor([COLORS[tag["color"]] for tag in clip.tags], dtype=torch.float32)
        for name, tracks in (("tracks", clip.tracks), ("none", None)):
            out = pipe(clip.frames[0], tracks=tracks, num_inference_steps=10, output_type="pt",
                       generator=torch.Generator().manual_seed(index))  # guidance: the model's saved default
            frames = out.frames[0].permute(0, 2, 3, 1) * 255  # (T, H, W, 3)
            errors[name].append(end_point_error(frames, clip.tracks.points, clip.tracks.visibility, colors)["error"])
    with_tracks, without = torch.cat(errors["tracks"]).mean(), torch.cat(errors["none"]).mean()
    assert with_tracks < 0.4 * without, (float(with_tracks), float(without))
    assert with_tracks < 4.5  # px on a 64x64 frame: 5% of its diagonal
