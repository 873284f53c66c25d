"""`videoai index`: files, folders, globs or path lists -> one Parquet catalogue, a row per video, resumable."""
from __future__ import annotations

import argparse

from videoai.cli.common import add_device_flag, add_json_flag, emit, positive_int, show_progress
from videoai.cli.main import CLIError

ENGINES = ("local", "ray")  # videoai.understand.index_engines.ENGINES, not imported so `videoai --help` stays fast
# Library argument names -> this command's names, so an error names what the user typed.
OPTION_NAMES = {"sources": "SRC", "out": "--out", "model": "--model", "tags": "--tags", "workers": "--workers",
                "address": "--address", "engine": "--engine"}


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "index", help="index videos into a Parquet catalogue (shots, keyframes, motion, tags, embedding)",
        description="Analyse every video of SRC (files, folders searched recursively, quoted glob patterns, or "
                    ".txt/.lst files with one path per line) into one row of --out: path, sha256, duration, fps, "
                    "size, shots with their transitions, keyframes, per-shot motion, tags with scores, an embedding "
                    "and an error column (unreadable, empty and corrupt files get a row with their error). "
                    "Rerunning adds new and changed videos only; a killed run keeps the rows it committed. "
                    "Read it with pyarrow.parquet.read_table or pandas.read_parquet.")
    parser.add_argument("sources", nargs="+", metavar="SRC", help="video files, folders, glob patterns or path lists")
    parser.add_argument("--out", required=True, metavar="FILE", help="the catalogue, a .parquet file (added to)")
    parser.add_argument("--model", metavar="DIR",
                        help="tagger or CLIP / SigLIP / X-CLIP folder for tags and embeddings (default: no tags, "
                             "a weight-free colour/motion/shot-rhythm descriptor as embedding)")
    parser.add_argument("--tags", nargs="+", metavar="TAG", help="tags to score (needed for zero-shot tags)")
    parser.add_argument("--top-k", type=positive_int, default=5, help="tags kept per video (default: 5)")
    parser.add_argument("--keyframes", type=positive_int, default=1, metavar="K",
                        help="keyframes per shot (default: 1)")
    parser.add_argument("--workers", type=positive_int,
                        help="processes on this machine (default 1), or videos at once on Ray (default: all CPUs)")
    parser.add_argument("--engine", choices=ENGINES, default="local",
                        help="local processes (default) or ray (Ray Data, on a local or running cluster)")
    parser.add_argument("--address", help="Ray cluster address (e.g. ray://head:10001 or auto); with --engine ray")
    parser.add_argument("--retry-errors", action="store_true", help="analyse again the videos whose row has an error")
    add_device_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    if args.address is not None and args.engine != "ray":
        raise CLIError("--address: only used with --engine ray")
    from videoai.understand.index import IndexConfig, index_videos

    config = IndexConfig(top_k=args.top_k, keyframes_per_shot=args.keyframes, device=args.device,
                         retry_errors=args.retry_errors)
    try:
        result = index_videos(args.sources, args.out, model=args.model, workers=args.workers, engine=args.engine,
                              address=args.address, tags=args.tags, config=config, progress=show_progress())
    except (ValueError, TypeError) as error:
        raise CLIError(_with_option_name(str(error))) from error
    summary = {"out": str(result.out), "rows": result.num_rows, "analysed": result.analysed, "reused": result.reused,
               "unchanged": result.skipped, "errors": result.errors, "error_paths": result.error_paths,
               "seconds": round(result.seconds, 3), "videos_per_second": round(result.videos_per_second, 3)}
    emit(args, summary, lambda: _text(summary))


def _with_option_name(message: str) -> str:
    name, sep, rest = message.partition(":")
    return f"{OPTION_NAMES[name]}:{rest}" if sep and name in OPTION_NAMES else message


def _text(s: dict) -> str:
    line = (f"wrote {s['out']}: {s['rows']} row(s); this run {s['analysed']} analysed, {s['reused']} reused (bytes "
            f"already indexed), {s['unchanged']} unchanged, {s['errors']} with an error; "
            f"{s['videos_per_second']:.2f} videos/s")
    shown = s["error_paths"][:5]
    more = f" and {len(s['error_paths']) - 5} more" if len(s["error_paths"]) > 5 else ""
    return line + (f"\nerrors (see the error column): {', '.join(shown)}{more}" if shown else "")
