"""Human-readable summaries of a demo report: summary.md and summary.html beside the videos."""
from __future__ import annotations

import html
import json
from pathlib import Path


def _lines(report: dict) -> list[str]:
    creation, understanding, distribution = report["creation"], report["understanding"], report["distribution"]
    tags = ", ".join(f"{t['tag']} ({t['score']:.2f})" for t in understanding["tags"])
    return [
        f"Created a {creation['num_frames']}-frame {creation['width']}x{creation['height']} video following "
        f"{creation['num_tracks']} tracks (video.mp4; overlay.mp4 draws the requested paths).",
        f"Shots: {len(understanding['shots'])}; keyframes: {understanding['keyframes']}.",
        f"Tags: {tags}.",
        f"Mean distance between the requested paths and points tracked in the result: "
        f"{understanding['track_following_error_px']} px.",
        f"Semantic ID: {distribution['semantic_id']} ({len(distribution['same_prefix_items'])} catalogue items "
        f"share its first token).",
        f"Audience: of the {distribution['audience_size']} simulated users most likely to watch it next, "
        f"{distribution['audience_liking_video_colors']:.0%} like its colours {distribution['video_colors']} "
        f"(all users: {distribution['all_users_liking_video_colors']:.0%}).",
        f"Timings (s): {report['timings']}.",
    ]


def write_summary(report: dict, out: Path) -> None:
    """Write summary.md and summary.html (with the two videos embedded) to `out`."""
    lines = _lines(report)
    (out / "summary.md").write_text("# videoai demo\n\n" + "\n".join(f"- {line}" for line in lines) + "\n")
    items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
    videos = "".join(f'<figure><video src="{name}" controls loop autoplay muted width="256"></video>'
                     f"<figcaption>{name}</figcaption></figure>" for name in ("video.mp4", "overlay.mp4"))
    details = html.escape(json.dumps(report["distribution"]["examples"], indent=2))
    (out / "summary.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>videoai demo</title><h1>videoai demo</h1>"
        f"<div style='display:flex;gap:1em'>{videos}</div><ul>{items}</ul><h2>Example users</h2><pre>{details}</pre>"
    )
