"""The README's Wan-Move recipe end to end: a Wan 2.1 I2V folder + a transformer in Wan's original file layout,
loaded with track_conditioning="wan-move", generates exactly what the same weights do in diffusers' layout."""

import json

import numpy as np
import PIL.Image
import torch
from safetensors.torch import save_file

from videoai.generate import TrajectoryImageToVideoPipeline, load_original_wan_transformer

from .test_single_file import to_original
from .wan_layouts import save_layout


def _generate(pipe, tracks):
    image = PIL.Image.fromarray(np.random.RandomState(0).randint(0, 256, (32, 32, 3), dtype=np.uint8))
    return pipe(image, prompt="a red car drives left", negative_prompt="blurry static", tracks=tracks, height=32,
                width=32, num_frames=9, num_inference_steps=2, guidance_scale=5.0, max_sequence_length=8,
                generator=torch.Generator().manual_seed(0), output_type="latent").frames


def test_original_layout_transformer_with_wan_move_conditioning(tmp_path):
    folder = save_layout("wan2.1-i2v", tmp_path / "wan21")
    reference = TrajectoryImageToVideoPipeline.from_pretrained(folder, track_conditioning="wan-move")
    released = tmp_path / "wan_move_14b"  # what a Wan-Move release folder holds: Wan's key names + its config
    released.mkdir()
    save_file(to_original(reference.transformer.state_dict()), released / "diffusion_pytorch_model.safetensors")
    diffusers_config = json.loads((folder / "transformer" / "config.json").read_text())
    (released / "config.json").write_text(json.dumps(diffusers_config))

    transformer = load_original_wan_transformer(released)
    pipe = TrajectoryImageToVideoPipeline.from_pretrained(folder, transformer=transformer,
                                                          track_conditioning="wan-move")
    assert pipe.config.track_conditioning == "wan-move"
    tracks = [[(4.0, 4.0), (26.0, 20.0)], [(20.0, 8.0), (6.0, 24.0)]]
    expected = _generate(reference, tracks)
    got = _generate(pipe, tracks)
    print("max abs diff", (got - expected).abs().max().item())
    torch.testing.assert_close(got, expected)
    plain = _generate(pipe, tracks=None)
    assert (expected - plain).abs().max() > 1e-4  # the tracks changed the result
