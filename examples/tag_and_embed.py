"""Tag videos and compute their embeddings: the embedded synthetic-shapes tagger, a tagger folder, or zero-shot.

    python examples/tag_and_embed.py clip.mp4                                   # embedded tagger
    python examples/tag_and_embed.py clip.mp4 --model ./my_tagger               # a fine-tuned VideoTagger folder
    python examples/tag_and_embed.py clip.mp4 --model ./siglip --tags dog cat "a red car"   # zero-shot (local folder)
"""

import argparse

import torch

from videoai.understand import embed, load_video_model, tag_video


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("videos", nargs="+", help="video files")
    parser.add_argument("--model", default=None, help="VideoTagger or CLIP/SigLIP/X-CLIP folder (default: embedded)")
    parser.add_argument("--tags", nargs="*", default=None, help="tags to score (required for zero-shot models)")
    parser.add_argument("--top-k", type=int, default=5)
    parser.add_argument("--save-embeddings", default=None, help="write a (N, D) tensor to this .pt file")
    args = parser.parse_args()

    model = load_video_model(args.model)
    results = tag_video(args.videos, model, top_k=args.top_k, tags=args.tags)
    vectors = embed(args.videos, model)  # (N, D), unit norm
    for path, tags in zip(args.videos, results):
        print(path + ": " + ", ".join(f"{tag} {score:.2f}" for tag, score in tags))
    print(f"embeddings: {tuple(vectors.shape)}")
    if args.save_embeddings:
        torch.save({"paths": args.videos, "embeddings": vectors}, args.save_embeddings)


if __name__ == "__main__":
    main()
