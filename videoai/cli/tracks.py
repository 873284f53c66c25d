"""`videoai tracks`: point tracks through a video, written as a tracks JSON (and optionally an overlay video)."""
from __future__ import annotations

import argparse
import re

from videoai.cli.common import (
    TRACKS_FORMAT_DOC,
    CLIError,
    add_json_flag,
    atomic_write,
    check_suffix,
    check_videos,
    emit,
    positive_int,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "tracks", help="track points through a video and write a tracks JSON",
        description=f"Track points from frame 0 through VIDEO (Lucas-Kanade) and write them to --out in the tracks "
                    f"JSON format ({TRACKS_FORMAT_DOC}: the Tracks.to_json object, one point and one visibility flag "
                    f"per frame, in the video's pixels). The file feeds `videoai generate --tracks`.")
    parser.add_argument("video", metavar="VIDEO", help="video file")
    parser.add_argument("--out", required=True, help="tracks JSON to write")
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--points", metavar="'X,Y X,Y ...'",
                       help="points to track, pixel x,y in frame 0, separated by spaces or ';'")
    start.add_argument("--grid", type=positive_int, metavar="N",
                       help="track an N x N grid of cell centres (default: 16)")
    start.add_argument("--features", type=positive_int, metavar="N",
                       help="track up to N x N corners (cv2.goodFeaturesToTrack)")
    parser.add_argument("--size", type=positive_int, help="short side to track at (default: full resolution)")
    parser.add_argument("--remove-camera-motion", action="store_true",
                        help="express points in frame 0's camera frame (background stays still)")
    parser.add_argument("--overlay", metavar="VIDEO_OUT", help="also write the video with the tracks drawn (.mp4/.gif)")
    add_json_flag(parser)
    parser.set_defaults(run=run)


def parse_points(text: str) -> list[tuple[float, float]]:
    """'10,20 30.5,40' or '10,20;30,40' -> [(10, 20), (30.5, 40)]."""
    points = []
    for token in re.split(r"[\s;]+", text.strip()):
        parts = token.split(",")
        try:
            x, y = (float(v) for v in parts)
        except ValueError:
            raise CLIError(f"--points: expected 'x,y' pairs separated by spaces or ';', got {token!r}") from None
        points.append((x, y))
    if not points or not text.strip():
        raise CLIError("--points: expected at least one 'x,y' pair, got an empty string")
    return points


def run(args: argparse.Namespace) -> None:
    check_videos([args.video])
    out = check_suffix(args.out, (".json",), "--out")
    overlay = check_suffix(args.overlay, (".mp4", ".gif"), "--overlay") if args.overlay else None
    points = parse_points(args.points) if args.points is not None else None
    from videoai.understand import track_points

    start = points if points is not None else "features" if args.features else "grid"
    tracks = track_points(args.video, start, grid=args.features or args.grid or 16, size=args.size,
                          remove_camera_motion=args.remove_camera_motion)
    atomic_write(out, tracks.to_json)
    if overlay is not None:
        from videoai.generate import export_overlay
        from videoai.tokenize import read_video

        clip = read_video(args.video)
        export_overlay(clip.frames, tracks, str(overlay), fps=clip.fps)
    result = {"tracks": str(out), "overlay": None if overlay is None else str(overlay),
              "num_frames": tracks.num_frames, "num_tracks": tracks.num_tracks, "width": tracks.width,
              "height": tracks.height, "visible_fraction": round(float(tracks.visibility.float().mean()), 4)}
    emit(args, result, lambda: (
        f"wrote {out}: {tracks.num_tracks} track(s) x {tracks.num_frames} frames in {tracks.width}x{tracks.height} "
        f"pixels, {result['visible_fraction']:.0%} of points visible" + (f"; overlay {overlay}" if overlay else "")))
