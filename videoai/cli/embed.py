"""`videoai embed`: one unit-norm vector per video, saved as .safetensors or .npy (rows in argument order)."""
from __future__ import annotations

import argparse
import json

from videoai.cli.common import (
    add_device_flag,
    add_json_flag,
    atomic_write,
    check_suffix,
    check_videos,
    emit,
    load_understand_model,
    map_video_batches,
    positive_int,
)


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "embed", help="embed videos into unit vectors (.safetensors or .npy)",
        description="Embed each VIDEO (the embedded tagger's pooled features by default, or a tagger / CLIP / "
                    "SigLIP / X-CLIP folder) and save an (N, D) float32 matrix, row i = the i-th VIDEO. "
                    ".safetensors stores it as 'embeddings' with the video paths as JSON in the metadata key "
                    "'videos'; .npy stores the bare matrix.")
    parser.add_argument("videos", nargs="+", metavar="VIDEO", help="video files")
    parser.add_argument("--out", required=True, help="output file: .safetensors or .npy")
    parser.add_argument("--model", metavar="DIR", help="model folder (default: the embedded tagger)")
    parser.add_argument("--batch-size", type=positive_int, default=8, help="videos per forward pass (default: 8)")
    add_device_flag(parser)
    add_json_flag(parser)
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    out = check_suffix(args.out, (".safetensors", ".npy"), "--out")
    check_videos(args.videos)
    import numpy as np
    import torch
    from safetensors.torch import save_file

    from videoai.understand import embed

    model = load_understand_model(args)
    vectors = map_video_batches(args.videos, args.batch_size, lambda batch: embed(batch, model).float().cpu(),
                                "embed")  # [(b, D), ...]
    embeddings = torch.cat(vectors)  # (N, D)
    if out.suffix.lower() == ".npy":
        # np.save appends .npy to names without it; the temporary name keeps the suffix, so it does not.
        atomic_write(out, lambda tmp: np.save(tmp, embeddings.numpy()))
    else:
        atomic_write(out, lambda tmp: save_file({"embeddings": embeddings.contiguous()}, tmp,
                                                metadata={"videos": json.dumps(args.videos)}))
    result = {"out": str(out), "num_videos": embeddings.shape[0], "dim": embeddings.shape[1]}
    emit(args, result, f"wrote {out}: {embeddings.shape[0]} x {embeddings.shape[1]} float32 (unit-norm rows)")
