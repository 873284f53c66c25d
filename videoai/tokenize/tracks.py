"""Motion tracks: per-frame 2-D point positions with visibility, in pixels of a known frame size.

Coordinate convention (used everywhere in videoai): a point (x, y) is in pixel units with the centre of pixel
(i, j) at x = j, y = i, so a W x H frame covers x in [-0.5, W - 0.5] and y in [-0.5, H - 0.5]. Changing resolution
maps x' = (x + 0.5) * W' / W - 0.5 (the convention of `grid_sample(align_corners=False)` and image resizers), which
keeps the frame edges on the frame edges.

Out-of-frame policy: `Tracks(...)` keeps points outside the frame as given (a tracked object may leave the frame);
`clip_to_frame()` clamps them onto the frame edge and marks them invisible there; the classmethod constructors take
`out_of_frame="keep" | "clip" | "error"`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

OUT_OF_FRAME_MODES = ("keep", "clip", "error")


def _check_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _check_num_frames(num_frames: Any) -> int:
    return _check_size("num_frames", num_frames)


def _check_finite(name: str, x: torch.Tensor) -> None:
    if x.numel() and not bool(torch.isfinite(x).all()):
        bad = (~torch.isfinite(x)).nonzero()[0].tolist()
        raise ValueError(f"{name} must be finite, found NaN/inf at index {bad}")


def _as_point_tensor(name: str, value: Any, device: torch.device | str | None = None) -> torch.Tensor:
    """Array-like of numbers -> float32 tensor, with a clear error for anything else."""
    if isinstance(value, torch.Tensor):
        tensor = value
    else:
        try:
            tensor = torch.as_tensor(np.asarray(value, dtype=np.float64))
        except (TypeError, ValueError) as error:
            raise TypeError(f"{name} must be an array of numbers, got {type(value).__name__}: {error}") from None
    if tensor.dtype == torch.bool or tensor.is_complex():
        raise TypeError(f"{name} must be a real-valued (float) tensor, got dtype {tensor.dtype}")
    return tensor.to(device=device, dtype=torch.float32)


@dataclass
class Tracks:
    """N point tracks over T frames: positions (T, N, 2) float32 pixel (x, y), visibility (T, N) bool."""

    points: torch.Tensor  # (T, N, 2) float32, pixel (x, y)
    visibility: torch.Tensor  # (T, N) bool
    width: int  # frame size the pixel coordinates refer to
    height: int

    def __post_init__(self) -> None:
        if not isinstance(self.points, torch.Tensor):
            raise TypeError(f"points must be a torch.Tensor of shape (T, N, 2), got {type(self.points).__name__}")
        if not isinstance(self.visibility, torch.Tensor):
            raise TypeError(
                f"visibility must be a torch.Tensor of shape (T, N) bool, got {type(self.visibility).__name__}"
            )
        if self.points.ndim != 3 or self.points.shape[-1] != 2 or self.points.shape[0] < 1:
            raise ValueError(f"points must have shape (T, N, 2) with T >= 1, got {tuple(self.points.shape)}")
        if self.points.dtype == torch.bool or self.points.is_complex():
            raise TypeError(f"points must be a float tensor, got dtype {self.points.dtype}")
        if self.visibility.dtype != torch.bool:
            raise TypeError(f"visibility must be a bool tensor, got dtype {self.visibility.dtype}")
        if tuple(self.visibility.shape) != tuple(self.points.shape[:2]):
            raise ValueError(
                f"visibility must have shape (T, N) = {tuple(self.points.shape[:2])} to match points, "
                f"got {tuple(self.visibility.shape)}"
            )
        if self.visibility.device != self.points.device:
            raise ValueError(
                f"visibility is on {self.visibility.device} but points on {self.points.device}; put both on one device"
            )
        self.width = _check_size("width", self.width)
        self.height = _check_size("height", self.height)
        self.points = self.points.to(torch.float32)
        _check_finite("points", self.points)

    # ----------------------------------------------------------------------------------------------- properties
    @property
    def num_frames(self) -> int:
        return self.points.shape[0]

    @property
    def num_tracks(self) -> int:
        return self.points.shape[1]

    @property
    def device(self) -> torch.device:
        return self.points.device

    def __len__(self) -> int:
        return self.num_tracks

    # --------------------------------------------------------------------------------------------- constructors
    @classmethod
    def from_polylines(
        cls,
        polylines: Sequence[Any],
        num_frames: int,
        width: int,
        height: int,
        *,
        visibility: Sequence[Any] | None = None,
        out_of_frame: str = "keep",
        device: torch.device | str | None = None,
    ) -> Tracks:
        """Tracks from user-drawn paths, each resampled to `num_frames` points equally spaced along its arc length.

        polylines: N sequences of (x, y) pixel points, lengths may differ; a single point (or a path of zero length)
        gives a static point. visibility: optional N sequences of per-vertex bools; a resampled point takes the
        visibility of the nearest vertex along the path.
        """
        num_frames = _check_num_frames(num_frames)
        width, height = _check_size("width", width), _check_size("height", height)
        if isinstance(polylines, (str, bytes)) or not isinstance(polylines, Sequence):
            raise TypeError(f"polylines must be a sequence of (K_i, 2) point lists, got {type(polylines).__name__}")
        paths = []
        for index, polyline in enumerate(polylines):
            path = _as_point_tensor(f"polylines[{index}]", polyline, device)
            if path.ndim != 2 or path.shape[-1] != 2 or path.shape[0] < 1:
                raise ValueError(
                    f"polylines[{index}] must be a (K, 2) list of (x, y) points with K >= 1, "
                    f"got shape {tuple(path.shape)}"
                )
            _check_finite(f"polylines[{index}]", path)
            paths.append(path)
        vertex_visibility = None
        if visibility is not None:
            if len(visibility) != len(paths):
                raise ValueError(f"visibility must have one entry per polyline ({len(paths)}), got {len(visibility)}")
            vertex_visibility = []
            for index, (vis, path) in enumerate(zip(visibility, paths)):
                vis = torch.as_tensor(np.asarray(vis), device=device)
                if vis.dtype != torch.bool or tuple(vis.shape) != (path.shape[0],):
                    raise ValueError(
                        f"visibility[{index}] must be {path.shape[0]} bools (one per vertex), "
                        f"got dtype {vis.dtype} shape {tuple(vis.shape)}"
                    )
                vertex_visibility.append(vis)
        if not paths:
            empty = torch.zeros(num_frames, 0, 2, device=device)
            return cls(empty, torch.zeros(num_frames, 0, dtype=torch.bool, device=device), width, height)

        # Pad every path to K vertices by repeating its last vertex: padded segments have zero length, so they
        # change neither the arc length nor the resampled positions.
        num_vertices = max(2, max(path.shape[0] for path in paths))
        vertices = torch.stack([_pad_last(path, num_vertices) for path in paths])  # (N, K, 2)
        segment_lengths = (vertices[:, 1:] - vertices[:, :-1]).norm(dim=-1)  # (N, K-1)
        cumulative = torch.cat([segment_lengths.new_zeros(len(paths), 1), segment_lengths.cumsum(-1)], -1)  # (N, K)
        fractions = torch.linspace(0, 1, num_frames, device=vertices.device)  # (T,)
        targets = fractions[None] * cumulative[:, -1:]  # (N, T) arc length of each output frame
        # right=True picks the last vertex at or before the target, which skips zero-length (duplicate) segments.
        segment = (torch.searchsorted(cumulative, targets, right=True) - 1).clamp(0, num_vertices - 2)  # (N, T)
        start = cumulative.gather(1, segment)
        length = segment_lengths.gather(1, segment)
        alpha = torch.where(length > 0, (targets - start) / length.clamp_min(1e-12), torch.zeros_like(length))
        alpha = alpha.clamp(0, 1)  # (N, T)
        index = segment[..., None].expand(-1, -1, 2)
        p0, p1 = vertices.gather(1, index), vertices.gather(1, index + 1)  # (N, T, 2)
        points = torch.lerp(p0, p1, alpha[..., None]).transpose(0, 1).contiguous()  # (T, N, 2)

        if vertex_visibility is None:
            vis = torch.ones(num_frames, len(paths), dtype=torch.bool, device=vertices.device)
        else:
            padded = torch.stack([_pad_last(v[:, None], num_vertices)[:, 0] for v in vertex_visibility])  # (N, K)
            nearest = segment + (alpha >= 0.5).long()  # (N, T)
            vis = padded.gather(1, nearest).transpose(0, 1).contiguous()  # (T, N)
        return cls(points, vis, width, height)._apply_out_of_frame(out_of_frame)

    @classmethod
    def static(
        cls,
        points: Any,
        num_frames: int,
        width: int,
        height: int,
        *,
        out_of_frame: str = "keep",
        device: torch.device | str | None = None,
    ) -> Tracks:
        """Static anchor points (N, 2) pixel (x, y), held for `num_frames` frames."""
        num_frames = _check_num_frames(num_frames)
        anchors = _as_point_tensor("points", points, device)
        if anchors.ndim != 2 or anchors.shape[-1] != 2:
            raise ValueError(f"points must have shape (N, 2), got {tuple(anchors.shape)}")
        _check_finite("points", anchors)
        positions = anchors[None].expand(num_frames, -1, -1).clone()  # (T, N, 2)
        vis = torch.ones(positions.shape[:2], dtype=torch.bool, device=positions.device)
        return cls(positions, vis, width, height)._apply_out_of_frame(out_of_frame)

    @classmethod
    def cat(cls, tracks: Sequence[Tracks]) -> Tracks:
        """Concatenate along the track axis; all must share num_frames, frame size and device."""
        tracks = list(tracks)
        if not tracks or not all(isinstance(t, Tracks) for t in tracks):
            raise TypeError("tracks must be a non-empty sequence of Tracks")
        first = tracks[0]
        for index, other in enumerate(tracks[1:], start=1):
            if other.num_frames != first.num_frames:
                raise ValueError(
                    f"tracks[{index}] has {other.num_frames} frames, tracks[0] has {first.num_frames}; resample first"
                )
            if (other.width, other.height) != (first.width, first.height):
                raise ValueError(
                    f"tracks[{index}] refers to a {other.width}x{other.height} frame, tracks[0] to "
                    f"{first.width}x{first.height}; scale_to one size first"
                )
        return cls(
            torch.cat([t.points for t in tracks], 1),
            torch.cat([t.visibility for t in tracks], 1),
            first.width,
            first.height,
        )

    # ------------------------------------------------------------------------------------------------- transforms
    def scale_to(self, width: int, height: int) -> Tracks:
        """Same tracks in pixels of a width x height frame (pixel-centre convention, see module docstring)."""
        width, height = _check_size("width", width), _check_size("height", height)
        return Tracks(self.scaled_points(width, height), self.visibility.clone(), width, height)

    def scaled_points(self, width: int, height: int) -> torch.Tensor:
        """(T, N, 2) positions in pixels of a width x height frame; x' = (x + 0.5) * width / self.width - 0.5."""
        scale = self.points.new_tensor([width / self.width, height / self.height])
        return (self.points + 0.5) * scale - 0.5

    def resample(self, num_frames: int) -> Tracks:
        """Resample in time to `num_frames` frames (linear in position, nearest frame for visibility)."""
        num_frames = _check_num_frames(num_frames)
        positions = torch.linspace(0, self.num_frames - 1, num_frames, device=self.device)  # (T',)
        lower = positions.floor().long().clamp(max=self.num_frames - 1)
        upper = (lower + 1).clamp(max=self.num_frames - 1)
        alpha = (positions - lower)[:, None, None]
        points = torch.lerp(self.points[lower], self.points[upper], alpha)  # (T', N, 2)
        visibility = self.visibility[positions.round().long()]  # (T', N)
        return Tracks(points, visibility, self.width, self.height)

    def to(self, device: torch.device | str) -> Tracks:
        return Tracks(self.points.to(device), self.visibility.to(device), self.width, self.height)

    def in_frame(self) -> torch.Tensor:
        """(T, N) bool: the point lies inside the frame [-0.5, W - 0.5] x [-0.5, H - 0.5]."""
        x, y = self.points.unbind(-1)
        return (x >= -0.5) & (x <= self.width - 0.5) & (y >= -0.5) & (y <= self.height - 0.5)

    def clip_to_frame(self) -> Tracks:
        """Clamp points onto the frame and mark the clamped ones invisible."""
        inside = self.in_frame()
        low = self.points.new_tensor([-0.5, -0.5])
        high = self.points.new_tensor([self.width - 0.5, self.height - 0.5])
        points = torch.maximum(torch.minimum(self.points, high), low)
        return Tracks(points, self.visibility & inside, self.width, self.height)

    def _apply_out_of_frame(self, out_of_frame: str) -> Tracks:
        if out_of_frame not in OUT_OF_FRAME_MODES:
            raise ValueError(f"out_of_frame must be one of {OUT_OF_FRAME_MODES}, got {out_of_frame!r}")
        if out_of_frame == "keep":
            return self
        if out_of_frame == "clip":
            return self.clip_to_frame()
        outside = ~self.in_frame()
        if bool(outside.any()):
            frame, track = outside.nonzero()[0].tolist()
            x, y = self.points[frame, track].tolist()
            raise ValueError(
                f"track {track} at frame {frame} is at ({x:.2f}, {y:.2f}), outside the {self.width}x{self.height} "
                f"frame [-0.5, {self.width - 0.5}] x [-0.5, {self.height - 0.5}]; pass out_of_frame='clip' or 'keep'"
            )
        return self

    # ------------------------------------------------------------------------------------------------------ JSON
    def to_json(self, path: str | os.PathLike | None = None) -> dict:
        """Dict {"width", "height", "num_frames", "tracks": [{"points": [[x, y]] * T, "visibility": [bool] * T}]}."""
        points = self.points.detach().cpu().transpose(0, 1).tolist()  # (N, T, 2)
        visibility = self.visibility.cpu().transpose(0, 1).tolist()  # (N, T)
        data = {
            "width": self.width,
            "height": self.height,
            "num_frames": self.num_frames,
            "tracks": [{"points": p, "visibility": v} for p, v in zip(points, visibility)],
        }
        if path is not None:
            Path(path).write_text(json.dumps(data))
        return data

    @classmethod
    def from_json(
        cls,
        source: str | os.PathLike | dict | list,
        num_frames: int | None = None,
        *,
        width: int | None = None,
        height: int | None = None,
        out_of_frame: str = "keep",
        device: torch.device | str | None = None,
    ) -> Tracks:
        """Tracks from a JSON file/object: {"width", "height", "tracks": [polyline | {"points", "visibility"?}]}.

        A bare list of polylines is accepted too (then width and height are required). num_frames=None: each
        track already has one point per frame (all the same length, e.g. written by `to_json`); otherwise each is
        a drawn path resampled arc-length-uniform to num_frames. width/height: frame size to return; when the JSON
        names its own size the tracks are scaled from it, else the points are taken to be in this size.
        """
        data = source
        if isinstance(source, (str, os.PathLike)):
            try:
                data = json.loads(Path(source).read_text())
            except (OSError, json.JSONDecodeError) as error:
                raise ValueError(f"could not read tracks JSON {str(source)!r}: {error}") from None
        if isinstance(data, list):
            data = {"tracks": data}
        if not isinstance(data, dict) or not isinstance(data.get("tracks"), list):
            raise ValueError(
                f"tracks JSON must be a list of polylines or an object with a 'tracks' list, got {data!r:.200}"
            )
        src_width, src_height = data.get("width", width), data.get("height", height)
        if src_width is None or src_height is None:
            raise ValueError(
                "tracks JSON has no 'width'/'height'; pass width= and height= (the frame size of the points)"
            )
        polylines, visibility = [], []
        for index, entry in enumerate(data["tracks"]):
            if isinstance(entry, dict):
                if "points" not in entry:
                    raise ValueError(f"tracks[{index}] must have a 'points' list, got keys {sorted(entry)}")
                polylines.append(entry["points"])
                visibility.append(entry.get("visibility"))
            else:
                polylines.append(entry)
                visibility.append(None)
        if any(v is not None for v in visibility):
            visibility = [[True] * len(p) if v is None else v for p, v in zip(polylines, visibility)]
        else:
            visibility = None
        if num_frames is None:
            tracks = cls._from_timed(polylines, visibility, src_width, src_height, device)
        else:
            tracks = cls.from_polylines(
                polylines, num_frames, src_width, src_height, visibility=visibility, device=device
            )
        if width is not None and height is not None and (width, height) != (tracks.width, tracks.height):
            tracks = tracks.scale_to(width, height)
        return tracks._apply_out_of_frame(out_of_frame)

    @classmethod
    def _from_timed(cls, polylines: list, visibility: list | None, width: int, height: int, device: Any) -> Tracks:
        """Tracks whose polylines already hold one point per frame."""
        lengths = {len(p) for p in polylines}
        if len(lengths) > 1:
            raise ValueError(
                f"with num_frames=None every track needs one point per frame (same length), got lengths "
                f"{sorted(lengths)}; pass num_frames to resample drawn paths"
            )
        if not polylines:
            raise ValueError("tracks JSON holds no tracks; pass num_frames to build an empty Tracks")
        points = _as_point_tensor("tracks", polylines, device)
        if points.ndim != 3 or points.shape[-1] != 2:
            raise ValueError(f"tracks must be lists of (x, y) points, got shape {tuple(points.shape)} (N, T, 2)")
        if visibility is None:
            vis = torch.ones(points.shape[:2], dtype=torch.bool, device=points.device)
        else:
            vis = torch.as_tensor(np.asarray(visibility), device=points.device)
            if vis.dtype != torch.bool or vis.shape != points.shape[:2]:
                raise ValueError(
                    f"visibility must be one bool per point, got dtype {vis.dtype} shape {tuple(vis.shape)}"
                )
        return cls(points.transpose(0, 1).contiguous(), vis.transpose(0, 1).contiguous(), width, height)


def _pad_last(x: torch.Tensor, length: int) -> torch.Tensor:
    """(K, ...) -> (length, ...) by repeating the last row."""
    return torch.cat([x, x[-1:].expand(length - x.shape[0], *x.shape[1:])]) if x.shape[0] < length else x
