"""Zero-shot tags and embeddings through tiny random CLIP / SigLIP / X-CLIP folders built offline."""

import string

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from transformers import (
    CLIPConfig,
    CLIPImageProcessor,
    CLIPModel,
    CLIPProcessor,
    CLIPTokenizer,
    SiglipConfig,
    SiglipImageProcessor,
    SiglipModel,
    SiglipProcessor,
    VideoMAEImageProcessor,
    XCLIPConfig,
    XCLIPModel,
    XCLIPProcessor,
)

from videoai.tokenize.video_io import VideoReadError
from videoai.understand.embed import embed
from videoai.understand.tagging import tag_video
from videoai.understand.zero_shot import load_zero_shot_model, zero_shot_tags

TAGS = ["red", "green", "blue", "circle", "square"]
IMAGE_SIZE = 32
MAX_TEXT = 24


def tiny_tokenizer() -> CLIPTokenizer:
    """A character-level CLIP BPE tokenizer (no merges) written from a small vocab, so nothing downloads."""
    chars = sorted(set(string.ascii_lowercase + string.digits + string.punctuation))
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": len(chars) + i for i, c in enumerate(chars)})
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=MAX_TEXT)


def text_config(tokenizer) -> dict:
    vocab = tokenizer.get_vocab()
    return dict(vocab_size=len(vocab), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                max_position_embeddings=MAX_TEXT, bos_token_id=vocab["<|startoftext|>"],
                eos_token_id=vocab["<|endoftext|>"], pad_token_id=vocab["<|endoftext|>"])


VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=IMAGE_SIZE,
              patch_size=8)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    torch.manual_seed(0)
    tokenizer = tiny_tokenizer()
    model = CLIPModel(CLIPConfig(text_config=text_config(tokenizer), vision_config=VISION, projection_dim=16))
    folder = tmp_path_factory.mktemp("clip")
    model.save_pretrained(folder)
    image_processor = CLIPImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                         crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def siglip_dir(tmp_path_factory):
    torch.manual_seed(1)
    tokenizer = tiny_tokenizer()
    model = SiglipModel(SiglipConfig(text_config=text_config(tokenizer), vision_config=VISION))
    folder = tmp_path_factory.mktemp("siglip")
    model.save_pretrained(folder)
    image_processor = SiglipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    SiglipProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def xclip_dir(tmp_path_factory):
    torch.manual_seed(2)
    tokenizer = tiny_tokenizer()
    vision = dict(VISION, num_frames=4, mit_hidden_size=16, mit_intermediate_size=32, mit_num_hidden_layers=1,
                  mit_num_attention_heads=2)
    config = XCLIPConfig(text_config=text_config(tokenizer), vision_config=vision, projection_dim=16,
                         prompt_layers=1, prompt_num_attention_heads=2, prompt_attention_dropout=0.0)
    folder = tmp_path_factory.mktemp("xclip")
    XCLIPModel(config).save_pretrained(folder)
    image_processor = VideoMAEImageProcessor(size={"shortest_edge": IMAGE_SIZE},
                                             crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def random_video(num_frames=10, height=40, width=48, seed=0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (num_frames, height, width, 3), dtype=torch.uint8, generator=generator)


@pytest.mark.parametrize("fixture", ["clip_dir", "siglip_dir", "xclip_dir"])
def test_scores_and_embedding_shapes(fixture, request):
    folder = request.getfixturevalue(fixture)
    model = load_zero_shot_model(folder)
    video = random_video()
    result = zero_shot_tags(video, TAGS, model, top_k=3)
    assert [t for t, _ in result] == [t for t, _ in zero_shot_tags(video, TAGS, model, top_k=None)][:3]
    scores = [s for _, s in result]
    assert len(result) == 3 and scores == sorted(scores, reverse=True)
    assert all(0.0 <= s <= 1.0 for s in scores)
    every = zero_shot_tags(video, TAGS, model, top_k=None)
    assert sorted(t for t, _ in every) == sorted(TAGS)
    if not model.sigmoid:  # softmax over the tag list
        assert sum(s for _, s in every) == pytest.approx(1.0, abs=1e-5)
    vector = embed(video, model)
    assert vector.shape == (16 if fixture != "siglip_dir" else 32,) and vector.dtype == torch.float32
    assert vector.norm().item() == pytest.approx(1.0, abs=1e-5)
    batch = embed([video, random_video(seed=1)], model)
    assert batch.shape == (2, vector.shape[0]) and torch.allclose(batch[0], vector, atol=1e-5)


def test_model_conventions(clip_dir, siglip_dir, xclip_dir):
    clip, siglip, xclip = (load_zero_shot_model(d) for d in (clip_dir, siglip_dir, xclip_dir))
    assert (clip.sigmoid, clip.is_video_model, clip.num_frames) == (False, False, 8)
    assert (siglip.sigmoid, siglip.is_video_model) == (True, False)
    assert (xclip.sigmoid, xclip.is_video_model, xclip.num_frames) == (False, True, 4)


def _text_embedding(model, tokenizer, text: str, padding) -> torch.Tensor:
    inputs = tokenizer([text], padding=padding, max_length=MAX_TEXT, truncation=True, return_tensors="pt")
    out = model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"])
    return (out if isinstance(out, torch.Tensor) else out.pooler_output)[0]


@pytest.mark.parametrize("kind", ["clip", "siglip"])
def test_known_answer_tag_whose_text_matches_the_image_wins(kind, clip_dir, siglip_dir, tmp_path):
    """Rewire the vision tower so every image embeds to the text embedding of 'a video of blue': blue must win."""
    source = clip_dir if kind == "clip" else siglip_dir
    model_class = CLIPModel if kind == "clip" else SiglipModel
    model = model_class.from_pretrained(source, local_files_only=True).eval()
    tokenizer = CLIPProcessor.from_pretrained(source).tokenizer if kind == "clip" else \
        SiglipProcessor.from_pretrained(source).tokenizer
    padding = True if kind == "clip" else "max_length"
    with torch.no_grad():
        target = _text_embedding(model, tokenizer, "a video of blue", padding)  # (D,)
        if kind == "clip":  # pooled output := e0 (LayerNorm with zero gain), projection maps e0 -> target
            model.vision_model.post_layernorm.weight.zero_()
            model.vision_model.post_layernorm.bias.zero_()
            model.vision_model.post_layernorm.bias[0] = 1.0
            model.visual_projection.weight.zero_()
            model.visual_projection.weight[:, 0] = target
        else:  # attention-pool output := 0, so the head's MLP bias alone is the image embedding
            head = model.vision_model.head
            head.attention.out_proj.weight.zero_()
            head.attention.out_proj.bias.zero_()
            head.mlp.fc2.weight.zero_()
            head.mlp.fc2.bias.copy_(target)
            model.logit_scale.fill_(np.log(10.0))
            model.logit_bias.fill_(-5.0)
    model.save_pretrained(tmp_path)
    (CLIPProcessor if kind == "clip" else SiglipProcessor).from_pretrained(source).save_pretrained(tmp_path)

    result = zero_shot_tags(random_video(), TAGS, tmp_path, top_k=None)
    assert result[0][0] == "blue"
    if kind == "siglip":  # sigmoid(10 * cos + bias): cos = 1 for blue
        assert result[0][1] == pytest.approx(1 / (1 + np.exp(-5.0)), abs=1e-4)
    vector = embed(random_video(), load_zero_shot_model(tmp_path))
    assert torch.allclose(vector, F.normalize(target, dim=-1), atol=1e-5)


def test_tag_video_dispatches_to_zero_shot(clip_dir):
    video = random_video()
    assert tag_video(video, clip_dir, tags=TAGS, top_k=2) == zero_shot_tags(video, TAGS, clip_dir, top_k=2)
    with pytest.raises(ValueError, match="tags"):
        tag_video(video, clip_dir)


def test_frames_are_sampled_uniformly(clip_dir):
    """Only the sampled frames matter: changing an unsampled frame leaves the embedding unchanged."""
    model = load_zero_shot_model(clip_dir, num_frames=3)  # 9 frames -> indices 0, 4, 8
    video = random_video(num_frames=9)
    changed = video.clone()
    changed[1] = 0
    assert torch.equal(embed(video, model), embed(changed, model))
    changed[4] = 0
    assert not torch.equal(embed(video, model), embed(changed, model))


def test_missing_weights_are_clear_errors(tmp_path, clip_dir):
    with pytest.raises(ValueError, match="no local weights"):
        zero_shot_tags(random_video(), TAGS, None)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_zero_shot_model(tmp_path / "nowhere")
    (tmp_path / "config.json").write_text((clip_dir / "config.json").read_text())
    with pytest.raises(FileNotFoundError, match=r"lacks weights.*model\.safetensors"):
        load_zero_shot_model(tmp_path)


def test_a_model_without_text_is_refused(tmp_path):
    from transformers import VideoMAEConfig, VideoMAEModel

    VideoMAEModel(VideoMAEConfig(image_size=16, patch_size=8, num_frames=2, hidden_size=16, num_hidden_layers=1,
                                 num_attention_heads=2, intermediate_size=32)).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="not a vision-language model"):
        load_zero_shot_model(tmp_path)


def test_bad_inputs_are_clear_errors(clip_dir, tmp_path):
    model = load_zero_shot_model(clip_dir)
    with pytest.raises(ValueError, match="tags: expected at least one"):
        zero_shot_tags(random_video(), [], model)
    with pytest.raises(TypeError, match="tags"):
        zero_shot_tags(random_video(), "red", model)
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        zero_shot_tags(torch.zeros(4, 32, 32, dtype=torch.uint8), TAGS, model)
    with pytest.raises(TypeError, match="uint8"):
        embed(torch.zeros(4, 32, 32, 3), model)
    with pytest.raises(ValueError, match="template"):
        zero_shot_tags(random_video(), TAGS, model, template="a video")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 4)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        embed(corrupt, model)
