"""Helpers shared by the subcommands: input checks that fail with one line, --json output, atomic writes, progress."""
from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator

from videoai.cli.main import CLIError
from videoai.files import atomic_write

TRACKS_FORMAT_DOC = "docs/tracks_format.md"


def add_json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON on stdout")


def add_device_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda when present, else cpu)")


def pick_device(device: str | None) -> str:
    """The --device value, or cuda when present, else cpu."""
    if device:
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def show_progress() -> bool:
    """Progress bars go to stderr, and only when it is a terminal: logs and pipes stay clean."""
    return sys.stderr.isatty()


def progress(iterable: Iterable | None = None, **kwargs) -> Any:
    """tqdm on stderr, shown only on a terminal (see show_progress)."""
    from tqdm.auto import tqdm

    return tqdm(iterable, disable=not show_progress(), **kwargs)


@contextlib.contextmanager
def quiet_model_loading() -> Iterator[None]:
    """Hide diffusers'/transformers' weight-loading bars off a terminal (they print even when stderr is a file)."""
    if show_progress():
        yield
        return
    from diffusers.utils import logging as diffusers_logging
    from transformers.utils import logging as transformers_logging

    diffusers_logging.disable_progress_bar()
    transformers_logging.disable_progress_bar()
    try:
        yield
    finally:
        diffusers_logging.enable_progress_bar()
        transformers_logging.enable_progress_bar()


def load_understand_model(args: argparse.Namespace):
    """The --model folder (or the embedded tagger) on --device, loading bars hidden off a terminal."""
    from videoai.understand import load_video_model

    with quiet_model_loading():
        return load_video_model(args.model, device=pick_device(args.device))


def map_video_batches(videos: list[str], batch_size: int, fn: Callable[[list[str]], Any], desc: str) -> list:
    """fn over consecutive batches of `videos` with a progress bar; returns the per-batch results in order."""
    results = []
    with progress(total=len(videos), desc=desc, unit="video") as bar:
        for start in range(0, len(videos), batch_size):
            batch = videos[start:start + batch_size]
            results.append(fn(batch))
            bar.update(len(batch))
    return results


def emit(args: argparse.Namespace, result: Any, text: str | Callable[[], str]) -> None:
    """Print `result` as JSON with --json, else the human-readable `text`."""
    if args.json:
        print(json.dumps(_jsonable(result), indent=2))
    else:
        print(text() if callable(text) else text)


def _jsonable(value: Any) -> Any:
    """NaN/inf -> null so the output is strict JSON (times of in-memory frames can be NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    return value


def existing_file(path: str, what: str) -> Path:
    """Path of an existing regular file, else a one-line CLIError naming the option."""
    file = Path(path)
    if not file.exists():
        raise CLIError(f"{what}: no such file {path!r}")
    if not file.is_file():
        raise CLIError(f"{what}: {path!r} is not a file")
    return file


def existing_dir(path: str, what: str) -> Path:
    folder = Path(path)
    if not folder.is_dir():
        raise CLIError(f"{what}: no such folder {path!r}")
    return folder


def output_dir(path: str, what: str = "--out") -> Path:
    """Create the output folder (and parents); a one-line error when a file is in the way."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise CLIError(f"{what}: {path!r} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def check_videos(paths: list[str], what: str = "VIDEO") -> None:
    """Every path exists and opens as a video (container index only, nothing decoded)."""
    from videoai.tokenize import video_info

    for path in paths:
        existing_file(path, what)
        video_info(path)  # VideoReadError (one line, names the file) for empty / corrupt / non-video files


def check_suffix(path: str, suffixes: tuple[str, ...], what: str) -> Path:
    file = Path(path)
    if file.suffix.lower() not in suffixes:
        raise CLIError(f"{what}: expected a file name ending in {' or '.join(suffixes)}, got {path!r}")
    return file


def int_in_range(expected: str, low: int, high: int | None = None) -> Callable[[str], int]:
    """argparse type: an int in [low, high] (no upper bound when high is None); errors say `expected ...`."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value

    return parse


positive_int = int_in_range("a positive integer", 1)  # argparse type: an int >= 1


def write_json(path: Path, data: Any) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(json.dumps(_jsonable(data))))
