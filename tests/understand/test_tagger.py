"""The trainable video tagger: shapes, positions, save/load, training, datasets, metrics, tag_video / embed, errors."""

import math

import pytest
import torch
import torch.nn.functional as F
from transformers import VideoMAEConfig, VideoMAEImageProcessor, VideoMAEModel

from videoai.synthetic import ShapesConfig, make_clip
from videoai.tokenize.video_io import VideoReadError, write_video
from videoai.train import TrainConfig
from videoai.understand.embed import embed
from videoai.understand.tagger import DEFAULT_TAGGER_DIR, VideoTagger, VideoTaggerConfig, load_tagger
from videoai.understand.tagger_train import (
    SYNTHETIC_AUGMENT,
    SYNTHETIC_TAGS,
    Augment,
    LabelledVideoDataset,
    SyntheticTagDataset,
    TaggerTrainConfig,
    augment_batch,
    average_precision,
    train_tagger,
)
from videoai.understand.tagging import tag_video

TAGS = ["cat", "dog", "car"]


def tiny_config(**overrides) -> VideoTaggerConfig:
    kwargs = dict(tags=TAGS, num_frames=4, height=16, width=16, patch_size=(2, 8, 8), hidden_size=24, num_layers=1,
                  num_heads=2, appearance_channels=())
    kwargs.update(overrides)
    return VideoTaggerConfig(**kwargs)


def tiny_model(**overrides) -> VideoTagger:
    torch.manual_seed(0)
    return VideoTagger(tiny_config(**overrides)).eval()


def frames(num_frames=4, height=16, width=16, batch=None, seed=0) -> torch.Tensor:
    shape = (num_frames, height, width, 3) if batch is None else (batch, num_frames, height, width, 3)
    return torch.randint(0, 256, shape, dtype=torch.uint8, generator=torch.Generator().manual_seed(seed))


def test_forward_shapes_and_loss():
    model = tiny_model()
    pixels = model.preprocess(frames(batch=2))
    assert pixels.shape == (2, 4, 3, 16, 16) and pixels.dtype == torch.float32
    labels = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0]])
    out = model(pixels, labels=labels)
    assert out.logits.shape == (2, 3) and out.embeddings.shape == (2, 48)
    assert out.loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(out.logits, labels).item())
    # Any grid divisible by the patch works (RoPE has no fixed table); preprocess resizes other sizes.
    assert model(torch.randn(1, 8, 3, 32, 16)).logits.shape == (1, 3)
    assert model.preprocess(frames(num_frames=4, height=20, width=36)).shape == (1, 4, 3, 16, 16)
    half = tiny_model().to(torch.bfloat16)  # a bf16 model takes the float32 preprocess output
    assert torch.allclose(half(pixels).logits.float(), out.logits, atol=0.1)


def test_appearance_branch_has_its_own_logit_path():
    model = tiny_model(appearance_channels=(4, 8), appearance_frames=2)
    x = torch.randn(2, 4, 3, 16, 16)
    trunk = tiny_model(appearance_channels=())
    trunk.load_state_dict(model.state_dict(), strict=False)
    with torch.no_grad():
        out = model(x)
        assert out.embeddings.shape == (2, 48 + 8)
        # The branch's head starts at zero: a new tagger starts as the trunk alone, then the branch adds its logits.
        assert torch.allclose(out.logits, trunk(x).logits, atol=1e-6)
        torch.nn.init.normal_(model.appearance_head.weight)
        branch = model.appearance_head(out.embeddings[:, 48:])  # (B, V) from the branch's features alone
        assert torch.allclose(model(x).logits, trunk(x).logits + branch, atol=1e-5)
        # Max over positions: the branch's features of a frame do not depend on where an object sits (up to borders).
        blob = torch.zeros(1, 4, 3, 16, 16)
        blob[..., 6:10, 6:10] = 1.0
        shifted = model.appearance(blob.roll(2, dims=-1))
        assert torch.allclose(model.appearance(blob), shifted, atol=1e-5)
    retagged = model.with_tags(["dog", "zebra"])  # the shared tag keeps both heads' rows
    b = model.config.tags.index("dog")
    assert torch.equal(retagged.appearance_head.weight[0], model.appearance_head.weight[b])
    with pytest.raises(ValueError, match="appearance_frames"):
        tiny_config(appearance_channels=(4,), appearance_frames=5)


def test_positions_matter():
    """Swapping two tubelets changes the output: 3-D RoPE tells the model where each token sits."""
    model = tiny_model()
    with torch.no_grad():  # sharpen attention (at init q.k is ~0, so attention is ~uniform and order barely shows)
        model.blocks[0].attn.qkv.weight.mul_(30.0)
    x = torch.randn(1, 4, 3, 16, 16)
    swapped = x.clone()
    swapped[..., :8, :8], swapped[..., 8:, 8:] = x[..., 8:, 8:], x[..., :8, :8]
    with torch.no_grad():
        assert not torch.allclose(model(x).logits, model(swapped).logits, atol=1e-3)


def test_save_load_round_trip(tmp_path):
    model = tiny_model()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    loaded = load_tagger(tmp_path)
    assert loaded.config.tags == TAGS and tuple(loaded.config.patch_size) == (2, 8, 8)
    x = torch.randn(2, 4, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(model(x).logits, loaded(x).logits)


def test_videomae_backbone_from_local_folder(tmp_path):
    torch.manual_seed(0)
    backbone_config = VideoMAEConfig(image_size=16, patch_size=8, num_frames=4, tubelet_size=2, hidden_size=24,
                                     num_hidden_layers=1, num_attention_heads=2, intermediate_size=48)
    VideoMAEModel(backbone_config).save_pretrained(tmp_path / "videomae")
    VideoMAEImageProcessor(image_mean=[0.4, 0.4, 0.4], image_std=[0.2, 0.2, 0.2]).save_pretrained(tmp_path / "videomae")
    model = VideoTagger.from_videomae(tmp_path / "videomae", TAGS).eval()
    assert model.config.image_mean == [0.4, 0.4, 0.4] and (model.config.height, model.config.num_frames) == (16, 4)
    pixels = model.preprocess(frames())
    out = model(pixels)
    assert out.logits.shape == (1, 3) and out.embeddings.shape == (1, 48)
    model.save_pretrained(tmp_path / "tagger")
    with torch.no_grad():
        assert torch.equal(load_tagger(tmp_path / "tagger")(pixels).logits, out.logits)
    with pytest.raises(FileNotFoundError, match="VideoMAE"):
        VideoTagger.from_videomae(tmp_path / "missing", TAGS)


def test_short_training_lowers_the_loss(tmp_path):
    torch.manual_seed(0)
    shapes = ShapesConfig(num_frames=4, height=32, width=32, min_size=8, max_size=10, max_speed=1.5)
    train = SyntheticTagDataset(16, seed=0, configs=(shapes,))
    model = VideoTagger(VideoTaggerConfig(tags=train.tags, num_frames=4, height=32, width=32,
                                          patch_size=(2, 8, 8), hidden_size=24, num_layers=1, num_heads=2))
    config = TrainConfig(tmp_path, max_steps=30, log_every=10, progress_bar=False)
    result = train_tagger(model, train, config, TaggerTrainConfig(batch_size=8, learning_rate=3e-3, warmup_steps=5),
                          eval_dataset=SyntheticTagDataset(8, seed=1000, configs=(shapes,)), augment=SYNTHETIC_AUGMENT)
    assert result.step == 30
    assert sum(result.losses[-5:]) / 5 < 0.8 * sum(result.losses[:5]) / 5
    assert 0.0 <= result.eval_metrics["mAP"] <= 1.0
    saved = load_tagger(tmp_path / "model")  # written atomically at the end, with training.json
    assert saved.config.tags == SYNTHETIC_TAGS and (tmp_path / "model" / "training.json").is_file()


def test_with_tags_keeps_the_trunk_and_shared_head_rows():
    model = tiny_model()
    retagged = model.with_tags(["car", "bus", "cat"])
    assert retagged.config.tags == ["car", "bus", "cat"]
    x = torch.randn(1, 4, 3, 16, 16)
    with torch.no_grad():
        old, new = model(x), retagged(x)
    assert torch.equal(old.embeddings, new.embeddings)
    assert torch.allclose(new.logits[0, [0, 2]], old.logits[0, [2, 0]])  # car, cat rows carried over


def test_training_rejects_a_vocabulary_mismatch(tmp_path):
    shapes = ShapesConfig(num_frames=4, height=32, width=32, min_size=8, max_size=10, max_speed=1.5)
    with pytest.raises(ValueError, match="tags"):
        train_tagger(tiny_model(), SyntheticTagDataset(4, configs=(shapes,)), TrainConfig(tmp_path, max_steps=1))


def _write_videos(folder, names):
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names):
        write_video(frames(num_frames=6, height=24, width=32, seed=i), folder / name, fps=8)


def test_dataset_from_csv_and_folders(tmp_path):
    _write_videos(tmp_path / "clips", ["a.mp4", "b.mp4"])
    (tmp_path / "labels.csv").write_text("path,tags\nclips/a.mp4,cat|dog\nclips/b.mp4, car ; dog\n")
    dataset = LabelledVideoDataset.from_csv(tmp_path / "labels.csv", num_frames=4, size=(16, 16))
    assert dataset.tags == ["car", "cat", "dog"] and len(dataset) == 2
    item = dataset[1]
    assert item["frames"].shape == (4, 16, 16, 3) and item["frames"].dtype == torch.uint8
    assert item["labels"].tolist() == [1.0, 0.0, 1.0]
    assert LabelledVideoDataset.from_folder(tmp_path, num_frames=4, size=(16, 16)).tags == ["car", "cat", "dog"]

    _write_videos(tmp_path / "by_tag" / "cat", ["x.mp4", "y.mp4"])
    _write_videos(tmp_path / "by_tag" / "dog", ["y.mp4"])
    by_tag = LabelledVideoDataset.from_folder(tmp_path / "by_tag", num_frames=4, size=(16, 16))
    labels = {path.split("/")[-1]: tags for path, tags in by_tag.items}
    assert labels == {"x.mp4": ["cat"], "y.mp4": ["cat", "dog"]}

    model = tiny_model(tags=dataset.tags)
    result = train_tagger(model, dataset, TrainConfig(tmp_path / "run", max_steps=2, progress_bar=False),
                          TaggerTrainConfig(batch_size=2))
    assert result.step == 2 and math.isfinite(result.loss)


def test_dataset_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="csv_path"):
        LabelledVideoDataset.from_csv(tmp_path / "none.csv", num_frames=4, size=(16, 16))
    (tmp_path / "bad.csv").write_text("a.mp4\n")
    with pytest.raises(ValueError, match="2 columns"):
        LabelledVideoDataset.from_csv(tmp_path / "bad.csv", num_frames=4, size=(16, 16))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="labels.csv"):
        LabelledVideoDataset.from_folder(tmp_path / "empty", num_frames=4, size=(16, 16))
    (tmp_path / "corrupt.mp4").write_bytes(b"not a video at all" * 10)
    (tmp_path / "c.csv").write_text("corrupt.mp4,cat\n")
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        LabelledVideoDataset.from_csv(tmp_path / "c.csv", num_frames=4, size=(16, 16))[0]


def test_average_precision_known_answers():
    labels = torch.tensor([[1, 0, 0], [0, 1, 0], [1, 0, 0], [0, 0, 0]], dtype=torch.float32)
    scores = torch.tensor([[0.9, 0.5, 0.1], [0.1, 0.5, 0.2], [0.8, 0.5, 0.3], [0.2, 0.5, 0.4]])
    ap = average_precision(scores, labels)
    assert ap[0].item() == pytest.approx(1.0)  # both positives ranked first
    assert ap[1].item() == pytest.approx(0.25)  # all tied: AP = prevalence
    assert math.isnan(ap[2].item())  # no positive
    # positives ranked 1st and 3rd: (1/1 + 2/3) / 2
    assert average_precision(torch.tensor([[0.9], [0.8], [0.7]]), torch.tensor([[1.0], [0.0], [1.0]]))[0].item() == \
        pytest.approx((1 + 2 / 3) / 2)


def test_augment_swaps_labels_with_the_flip():
    torch.manual_seed(0)
    tags = ["direction:left", "direction:right", "direction:up", "direction:down", "color:red"]
    augment = Augment(hflip=True, reverse=False, hflip_swaps=[("direction:left", "direction:right")])
    perms = augment.permutations(tags)
    x = frames(batch=16)
    labels = torch.zeros(16, 5)
    labels[:, 0] = 1.0  # every clip moves left
    out_frames, out_labels = augment_batch(x, labels, augment, perms)
    flipped = (out_frames != x).flatten(1).any(1)
    assert 0 < flipped.sum() < 16
    assert torch.equal(out_frames[flipped], x[flipped].flip(3))  # mirrored left-right: the W axis
    assert torch.equal(out_labels[:, 1].bool(), flipped) and torch.equal(out_labels[:, 0].bool(), ~flipped)

    # Semantics: a mirror moves what was at the left edge (column 0) to the right edge, rows untouched.
    marked = torch.zeros(8, 2, 4, 6, 3, dtype=torch.uint8)
    marked[:, :, 1, 0] = 255  # row 1, column 0
    out, _ = augment_batch(marked, torch.zeros(8, 5), augment, perms)
    mirrored = out[:, :, 1, 5].bool().all(-1).all(-1)
    assert mirrored.any() and torch.equal(out[mirrored].nonzero()[:, 2:4].unique(dim=0), torch.tensor([[1, 5]]))


def test_tag_video_and_embed_with_a_tagger(tmp_path):
    model = tiny_model()
    video = frames(num_frames=9, height=20, width=24)
    result = tag_video(video, model, top_k=2)
    assert len(result) == 2 and result[0][1] >= result[1][1] and {t for t, _ in result} <= set(TAGS)
    everything = tag_video(video, model, top_k=None)
    assert [t for t, _ in everything[:2]] == [t for t, _ in result]
    assert tag_video(video, model, tags=["car"], top_k=None)[0][0] == "car"
    assert tag_video(video, model, threshold=1.1) == []
    batch = tag_video([video, frames(seed=3)], model, top_k=1)
    assert len(batch) == 2 and batch[0] == result[:1]
    vector = embed(video, model)
    assert vector.shape == (48,) and vector.norm().item() == pytest.approx(1.0, abs=1e-5)
    model.save_pretrained(tmp_path)
    assert torch.allclose(embed(video, tmp_path), vector, atol=1e-6)  # a folder works too


def test_bad_inputs_are_clear_errors(tmp_path):
    model = tiny_model()
    with pytest.raises(ValueError, match="tags"):
        VideoTaggerConfig(tags=[])
    with pytest.raises(ValueError, match="head_dim"):
        tiny_config(hidden_size=18, num_heads=2)
    with pytest.raises(ValueError, match=r"pixel_values: expected \(B, T, 3, H, W\)"):
        model(torch.randn(1, 4, 16, 16))
    with pytest.raises(ValueError, match="not divisible"):
        model(torch.randn(1, 3, 3, 16, 16))
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        tag_video(torch.zeros(4, 16, 16, dtype=torch.uint8), model)
    with pytest.raises(ValueError, match="labels"):
        model(torch.randn(1, 4, 3, 16, 16), labels=torch.zeros(1, 5))
    with pytest.raises(ValueError, match="not in this tagger's vocabulary"):
        tag_video(frames(), model, tags=["zebra"])
    with pytest.raises(ValueError, match="top_k"):
        tag_video(frames(), model, top_k=0)
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_tagger(tmp_path / "missing")
    corrupt = tmp_path / "corrupt.mp4"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(VideoReadError, match="corrupt.mp4"):
        tag_video(corrupt, model)


@pytest.mark.skipif(not (DEFAULT_TAGGER_DIR / "model.safetensors").is_file(), reason="embedded tagger not built yet")
def test_embedded_tagger_finds_the_colours_of_held_out_clips():
    """The shipped tagger, on clips it never saw (seeds far from training), puts each object's colour above others."""
    model = load_tagger()
    clips = [make_clip(seed, ShapesConfig()) for seed in range(90_000_000, 90_000_008)]
    results = tag_video([c.frames for c in clips], top_k=None)
    for clip, result in zip(clips, results):
        colours = [t for t, _ in result if t.startswith("color:")]
        truth = {f"color:{obj['color']}" for obj in clip.tags}
        assert set(colours[:len(truth)]) == truth
    assert model.config.tags == SYNTHETIC_TAGS
