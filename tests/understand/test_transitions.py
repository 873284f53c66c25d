"""Gradual transitions: dissolves found with their span and kind, fades stay fades, no cuts from motion."""

import dataclasses
import json
from pathlib import Path

import av
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoai.synthetic import wipe
from videoai.tokenize.video_io import write_video
from videoai.understand.shots import Shot, detect_shots
from videoai.understand.transitions import (
    MIN_CONTRAST,
    SCALES,
    THUMB_SIZE,
    ThumbnailStats,
    find_dissolves,
    thumbnails,
)
from videoai.understand.wipes import _Thumbs, find_wipes

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "video"
needs_data = pytest.mark.skipif(not DATA.exists(), reason=f"real clips not found at {DATA}")


def texture(seed: int, height: int = 160, width: int = 320) -> torch.Tensor:
    """(H, W, 3) uint8 smooth random colour texture (noise upsampled 32x): a picture with blobs and gradients."""
    gen = torch.Generator().manual_seed(seed)
    noise = torch.rand(1, 3, height // 32 + 1, width // 32 + 1, generator=gen)
    picture = F.interpolate(noise, size=(height, width), mode="bicubic", align_corners=False).clamp(0, 1)
    return (picture[0].permute(1, 2, 0) * 255).round().to(torch.uint8)


def panning(picture: torch.Tensor, num_frames: int, speed: float, size=(72, 128), start: float = 0.0) -> torch.Tensor:
    """(num_frames, h, w, 3): a window of `size` moving right across `picture` by `speed` px a frame."""
    h, w = size
    lefts = [int(start + speed * t) for t in range(num_frames)]
    return torch.stack([picture[20:20 + h, left:left + w] for left in lefts])


def dissolve(outgoing: torch.Tensor, incoming: torch.Tensor, length: int) -> torch.Tensor:
    """(length, h, w, 3) frames blending linearly from `outgoing` to `incoming` (both (length, h, w, 3))."""
    alpha = torch.linspace(0, 1, length + 2)[1:-1, None, None, None]
    return ((1 - alpha) * outgoing.float() + alpha * incoming.float()).round().to(torch.uint8)


def two_shots_with_dissolve(length: int, first_len: int = 50, second_len: int = 50) -> tuple[torch.Tensor, int]:
    """Two moving shots joined by a `length`-frame dissolve; -> frames, first frame of the dissolve."""
    a = panning(texture(1), first_len + length, 0.3)  # slow camera moves in both shots
    b = panning(texture(2), length + second_len, 0.5)
    frames = torch.cat([a[:first_len], dissolve(a[first_len:], b[:length], length), b[length:]])
    return frames, first_len


def two_shots_with_wipe(length: int, direction: str) -> torch.Tensor:
    """Two moving shots (camera pans at 0.3 and 0.5 px a frame) joined at frame 50 by a `length`-frame wipe."""
    a = panning(texture(1), 50 + length, 0.3)
    b = panning(texture(2), length + 50, 0.5)
    return torch.cat([a[:50], wipe(a[50:], b[:length], direction), b[length:]])


@pytest.mark.parametrize("length, direction", [(4, "right"), (16, "down"), (24, "diagonal"), (60, "left"),
                                               (40, "up")])
def test_synthetic_wipe_found_with_span_and_kind(length, direction):
    frames = two_shots_with_wipe(length, direction)
    shots = detect_shots(frames, fps=25.0)
    assert [s.transition for s in shots] == ["start", "wipe"]
    shot = shots[1]
    assert 50 - 2 <= shot.transition_start <= shot.start_frame <= shot.transition_end <= 50 + length + 1
    half = 50 + (length + 1) / 2  # the frame whose revealed share is 1/2
    assert abs(shot.start_frame - half) <= max(2, length // 6)
    assert shot.transition_end - shot.transition_start + 1 >= length // 2  # the fitted span covers most of it
    assert detect_shots(frames, dissolve_threshold=None)[1:] == []  # frame differences alone never see it


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs the libx264 encoder to write B frames")
def test_skimming_decodes_the_wipe(tmp_path):
    path = tmp_path / "wipe.mp4"
    write_video(two_shots_with_wipe(30, "right"), path, 25, encoder_options={"x264-params": "scenecut=0:keyint=300"})
    skimmed, full = detect_shots(path, skim=True), detect_shots(path)
    assert skimmed == full and [s.transition for s in full] == ["start", "wipe"]


@pytest.mark.parametrize("length", [8, 24, 60])
def test_synthetic_dissolve_found_with_span_and_kind(length):
    frames, first = two_shots_with_dissolve(length)
    shots = detect_shots(frames, fps=25.0)
    assert len(shots) == 2
    shot = shots[1]
    assert shot.transition == "dissolve"
    assert first <= shot.start_frame <= first + length - 1  # the new shot starts inside the blend
    tolerance = max(2, length // 6)  # the span of window centres that see a blend
    assert abs(shot.transition_start - first) <= tolerance
    assert abs(shot.transition_end - (first + length - 1)) <= tolerance
    assert shots[0].transition == "start"
    assert detect_shots(frames, dissolve_threshold=None)[1:] == []  # frame differences alone never see it


def test_cuts_stay_cuts_and_shot_is_plain_values():
    a, b = panning(texture(3), 40, 1.0), panning(texture(4), 40, 1.0)
    shots = detect_shots(torch.cat([a, b]), fps=10.0)
    assert [(s.start_frame, s.transition, s.transition_start, s.transition_end) for s in shots] == [
        (0, "start", 0, 0), (40, "cut", 40, 40)]
    row = dataclasses.asdict(shots[1])  # the catalogue serialises shots this way
    assert row["transition"] == "cut" and all(isinstance(v, (int, float, str)) for v in row.values())
    assert Shot(10, 25, 1.0, 2.5).transition_start == 10  # old four-field construction still works
    with pytest.raises(ValueError, match="transition"):
        Shot(0, 5, 0.0, 1.0, "iris")


def test_fades_through_black_are_fades_with_spans():
    picture = panning(texture(5), 60, 0.5)
    other = panning(texture(6), 60, 0.5)
    down = torch.linspace(1, 0, 21)[1:, None, None, None]
    up = torch.linspace(0, 1, 21)[1:, None, None, None]
    black = torch.zeros(20, 72, 128, 3, dtype=torch.uint8)
    frames = torch.cat([picture[:40], (picture[40:60].float() * down).to(torch.uint8), black,
                        (other[:20].float() * up).to(torch.uint8), other[20:]])  # fade-out 40-59, fade-in 80-99
    shots = detect_shots(frames)
    assert [s.transition for s in shots] == ["start", "fade", "fade"]
    fade_out, fade_in = shots[1], shots[2]
    assert 50 <= fade_out.start_frame <= 61 and fade_out.transition_end == fade_out.start_frame - 1
    assert 40 <= fade_out.transition_start <= 44
    assert 78 <= fade_in.start_frame <= 84 and 94 <= fade_in.transition_end <= 100


@pytest.mark.parametrize("speed", [4.0, 12.0])
def test_fast_camera_motion_and_reframe_make_no_cuts(speed):
    picture = texture(7, 160, 1400)
    pan = panning(picture, 90, speed)  # a fast pan, then a fast zoom-in reframe (2x in 10 frames) where it ends
    left, zoom = int(speed * 89), []
    for t in range(40):
        scale = 1.0 - 0.5 * min(t, 10) / 10
        h, w = round(72 * scale), round(128 * scale)
        top, x = 20 + (72 - h) // 2, left + (128 - w) // 2
        crop = picture[top:top + h, x:x + w].permute(2, 0, 1)[None].float()  # (1, 3, h, w)
        zoom.append(F.interpolate(crop, size=(72, 128), mode="bilinear", align_corners=False)[0].permute(1, 2, 0))
    frames = torch.cat([pan, torch.stack(zoom).round().to(torch.uint8)])
    shots = detect_shots(frames, fps=25.0)
    assert shots == detect_shots(frames, fps=25.0, dissolve_threshold=None)  # no new cuts
    assert "dissolve" not in [s.transition for s in shots] and find_dissolves(thumbnails(frames), 0.4) == []
    assert find_wipes(thumbnails(frames), 0.4) == []
    if speed == 4.0:
        assert len(shots) == 1  # at 12 px a frame the frame differences already pass the cut threshold


@pytest.mark.skipif("libx264" not in av.codecs_available, reason="needs the libx264 encoder to write B frames")
@pytest.mark.parametrize("before, after", [(60, 70), (20, 130)])  # (20, 130): dense spans in the first quarter,
def test_skimming_decodes_the_dissolve(tmp_path, before, after):  # so skimming hands over to one pass early
    frames, first = two_shots_with_dissolve(30, before, after)
    path = tmp_path / "dissolve.mp4"
    write_video(frames, path, 25, encoder_options={"x264-params": "scenecut=0:keyint=300"})
    skimmed, full = detect_shots(path, skim=True), detect_shots(path)  # skimming vs the default, every frame
    assert skimmed == full
    assert [s.transition for s in skimmed] == ["start", "dissolve"] and first <= skimmed[1].start_frame < first + 30


def truth(name):
    return json.loads((DATA / "ground_truth.json").read_text())[name]


@needs_data
@pytest.mark.parametrize("skim", [True, False])
def test_testvideo_dissolve_found(skim):
    shots = detect_shots(DATA / "testvideo.mp4", skim=skim)
    (first, last), = [g["span"] for g in truth("testvideo.mp4")["gradual"] if g["kind"] == "dissolve"]
    dissolves = [s for s in shots if s.transition == "dissolve"]
    assert len(dissolves) == 1 and first <= dissolves[0].start_frame <= last
    assert abs(dissolves[0].transition_start - first) <= 3 and abs(dissolves[0].transition_end - last) <= 3
    assert [s.start_frame for s in shots if s.transition == "cut"] == truth("testvideo.mp4")["cuts"]
    fades = [g["span"] for g in truth("testvideo.mp4")["gradual"] if g["kind"].startswith("fade")]
    assert all(any(a <= s.start_frame <= b + 1 for a, b in fades) for s in shots if s.transition == "fade")


@needs_data
def test_no_false_cuts_on_fades_and_counter():
    for detector in ("content", "adaptive"):
        assert len(detect_shots(DATA / "fades.mp4", detector=detector)) == 1
        assert len(detect_shots(DATA / "counter.mp4", detector=detector)) == 1
        assert [s.transition for s in detect_shots(DATA / "goldeneye-vfr-drop3.mp4", detector=detector)] == [
            "start", "cut", "cut"]


def test_bad_dissolve_threshold():
    with pytest.raises(ValueError, match="dissolve_threshold"):
        detect_shots(torch.zeros(4, 16, 16, 3, dtype=torch.uint8), dissolve_threshold=0)


@pytest.mark.parametrize("size", [(72, 128), (54, 96), (40, 70)])
def test_thumbnails_are_block_means(size):
    frames = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (7, *size, 3), dtype=np.uint8))
    expected = F.adaptive_avg_pool2d(frames.permute(0, 3, 1, 2).double(), THUMB_SIZE)
    assert torch.equal(thumbnails(frames), expected.flatten(1).to(torch.float16))  # (7, 1728)


def test_prepared_thumbnails_hold_every_window_change():
    thumbs = thumbnails(panning(texture(3), 90, 1.5))  # (90, 1728)
    stats = ThumbnailStats(thumbs)
    x = thumbs.float().view(90, 3, -1)
    centred = (x - x.mean(2, keepdim=True)).flatten(1)  # each colour plane's mean removed
    sigma = centred.square().mean(1).sqrt()
    standard = centred / sigma.clamp_min(MIN_CONTRAST / 2)[:, None]
    assert torch.allclose(stats.contrast, sigma) and torch.allclose(stats.standard, standard)
    for h in SCALES:
        expected = torch.zeros(90)
        expected[h:90 - h] = (standard[2 * h:] - standard[:90 - 2 * h]).abs().mean(1)  # end b minus end a
        assert torch.allclose(stats.change[h], expected, atol=1e-6)
    frames, _ = two_shots_with_dissolve(24)
    thumbs = thumbnails(frames)
    assert find_dissolves(ThumbnailStats(thumbs), 0.4) == find_dissolves(thumbs, 0.4) != []
    for count in (0, 5):  # no window fits
        few = thumbs[:count]
        assert find_dissolves(few, 0.4) == find_wipes(few, 0.4) == []


def test_cell_errors_follow_a_camera_move():
    # The end is the middle frame moved by (2, 4) thumbnail pixels: at that shift every covered cell matches.
    picture = thumbnails(texture(4, 216, 384)[None])  # (1, 1728) at 18x32
    grid = picture.float().view(3, *THUMB_SIZE)
    moved = torch.zeros_like(grid)
    moved[:, 2:, 4:] = grid[:, :-2, :-4]
    thumbs = torch.stack([picture[0], moved.flatten().to(torch.float16)])  # (2, 1728)
    frames = _Thumbs(thumbs)
    (error,) = frames.errors(torch.tensor([1]), torch.tensor([0]))  # (1, 576): middle = moved, end = picture
    covered = error.isfinite()
    assert int(covered.sum()) == (THUMB_SIZE[0] - 2) * (THUMB_SIZE[1] - 4)
    assert float(error[covered].abs().max()) == 0.0
