"""Load a WanTransformer3DModel from Wan's original release layout (Wan 2.1/2.2 originals, Wan-Move-14B-480P).

Those folders hold the transformer as `diffusion_pytorch_model-0000k-of-0000n.safetensors` + an index json (or one
.safetensors) under Wan's own key names (`blocks.0.self_attn.q.weight`, `head.head.weight`, ...) and a `config.json`
of Wan's `WanModel` (`dim`, `num_heads`, `in_dim`, ...). Keys go through diffusers' own converter
(`convert_wan_transformer_to_diffusers`) and the model is built by `WanTransformer3DModel.from_single_file`, local
files only. Keys and shapes are checked against the config first, because diffusers only warns about unused keys and
leaves missing ones uninitialised.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from diffusers import WanTransformer3DModel
from safetensors import safe_open

ORIGINAL_MARKERS = ("head.modulation", "model.diffusion_model.head.modulation")  # diffusers' own Wan detector keys
IMAGE_NORM_KEY = "condition_embedder.image_embedder.norm1.weight"
POS_EMBED_KEY = "condition_embedder.image_embedder.pos_embed"
# Defaults of Wan's WanModel.__init__ for entries its config.json may leave out.
WAN_MODEL_DEFAULTS = {"patch_size": (1, 2, 2), "in_dim": 16, "dim": 2048, "ffn_dim": 8192, "freq_dim": 256,
                      "text_dim": 4096, "out_dim": 16, "num_heads": 16, "num_layers": 32, "qk_norm": True,
                      "cross_attn_norm": True, "eps": 1e-6}


class OriginalCheckpointError(ValueError):
    """Weights or config in a Wan original folder are missing or do not fit together."""


def _weight_files(weights: Path) -> tuple[list[Path], dict[str, str] | None]:
    """A .safetensors file, an index json or a folder -> (files to read, index weight_map or None)."""
    if weights.is_dir():
        indexes = sorted(weights.glob("*.safetensors.index.json"))
        singles = sorted(weights.glob("*.safetensors"))
        if len(indexes) == 1:
            weights = indexes[0]
        elif len(indexes) > 1 or len(singles) != 1:
            found = [p.name for p in (indexes or singles)] or "none"
            raise OriginalCheckpointError(
                f"weights folder {weights} must hold one .safetensors file or one *.safetensors.index.json, "
                f"found {found}"
            )
        else:
            return singles, None
    if not weights.is_file():
        raise FileNotFoundError(f"weights file not found: {weights}")
    if weights.name.endswith(".json"):
        weight_map = json.loads(weights.read_text()).get("weight_map")
        if not isinstance(weight_map, dict) or not weight_map:
            raise OriginalCheckpointError(f"index {weights} has no 'weight_map' of key -> shard file")
        shards = [weights.parent / name for name in sorted(set(weight_map.values()))]
        missing = [p.name for p in shards if not p.is_file()]
        if missing:
            raise FileNotFoundError(f"index {weights.name} lists shards missing from {weights.parent}: {missing}")
        return shards, weight_map
    if weights.suffix != ".safetensors":
        raise OriginalCheckpointError(f"weights must be .safetensors (or an index json), got {weights.name}")
    return [weights], None


def _read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of one file, each in its own 64-byte aligned CPU buffer."""
    tensors = {}
    with safe_open(path, framework="pt") as handle:
        for key in handle.keys():
            tensor = handle.get_tensor(key)
            # safetensors hands out buffers 8 bytes off 64-byte alignment; CPU matmuls then take another kernel path
            # and round differently from a model built in memory, so realign (one tensor copied at a time).
            tensors[key] = tensor.clone() if tensor.data_ptr() % 64 else tensor
    return tensors


def load_original_state_dict(weights: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read one .safetensors, an index json with its shards, or a folder holding either -> state dict as stored."""
    files, weight_map = _weight_files(Path(weights))
    state_dict: dict[str, torch.Tensor] = {}
    for path in files:
        shard = _read_safetensors(path)
        repeated = state_dict.keys() & shard.keys()
        if repeated:
            raise OriginalCheckpointError(f"key {sorted(repeated)[0]!r} appears in more than one shard ({path.name})")
        state_dict.update(shard)
    if weight_map is not None and weight_map.keys() != state_dict.keys():
        absent = sorted(weight_map.keys() - state_dict.keys())
        extra = sorted(state_dict.keys() - weight_map.keys())
        raise OriginalCheckpointError(f"shards do not match their index: missing {absent[:3]}, not indexed {extra[:3]}")
    return state_dict


def _read_config(config: str | os.PathLike | dict | None, weights: Path) -> dict[str, Any]:
    """config dict, config.json path or folder; None -> config.json beside the weights."""
    if isinstance(config, dict):
        return dict(config)
    if config is None:
        folder = weights if weights.is_dir() else weights.parent
        path = folder / "config.json"
    else:
        path = Path(config)
        path = path / "config.json" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"config not found: {path} (pass config= a folder or config.json of the transformer)")
    return json.loads(path.read_text())


def diffusers_config(config: dict[str, Any], converted: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Wan `WanModel` config (or a diffusers one, kept as is) -> WanTransformer3DModel config for these weights."""
    if "num_attention_heads" in config or config.get("_class_name") == "WanTransformer3DModel":
        return config
    if "dim" not in config or "num_heads" not in config:
        raise OriginalCheckpointError(
            f"config is neither Wan's WanModel format (dim, num_heads, ...) nor diffusers' "
            f"WanTransformer3DModel format; keys: {sorted(config)[:8]}"
        )
    wan = {**WAN_MODEL_DEFAULTS, **config}
    if wan["dim"] % wan["num_heads"]:
        raise OriginalCheckpointError(f"config dim {wan['dim']} is not divisible by num_heads {wan['num_heads']}")
    # Whether the model has a CLIP image branch is read from the weights: Wan 2.1 i2v/flf2v have one, Wan 2.2 i2v not.
    image = converted.get(IMAGE_NORM_KEY)
    pos_embed = converted.get(POS_EMBED_KEY)
    return {
        "_class_name": "WanTransformer3DModel",
        "patch_size": list(wan["patch_size"]),
        "num_attention_heads": wan["num_heads"],
        "attention_head_dim": wan["dim"] // wan["num_heads"],
        "in_channels": wan["in_dim"],
        "out_channels": wan["out_dim"],
        "text_dim": wan["text_dim"],
        "freq_dim": wan["freq_dim"],
        "ffn_dim": wan["ffn_dim"],
        "num_layers": wan["num_layers"],
        "cross_attn_norm": wan["cross_attn_norm"],
        "qk_norm": "rms_norm_across_heads" if wan["qk_norm"] else None,
        "eps": wan["eps"],
        "image_dim": None if image is None else image.shape[0],
        "added_kv_proj_dim": None if image is None else wan["dim"],
        "pos_embed_seq_len": None if pos_embed is None else pos_embed.shape[1],
    }


def convert_original_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Wan original key names -> diffusers' WanTransformer3DModel names, by diffusers' own converter."""
    from diffusers.loaders.single_file_utils import convert_wan_transformer_to_diffusers

    if not any(marker in state_dict for marker in ORIGINAL_MARKERS):
        raise OriginalCheckpointError(
            "weights are not in Wan's original layout (no 'head.modulation' key); "
            "load a diffusers folder with WanTransformer3DModel.from_pretrained instead"
        )
    converted = convert_wan_transformer_to_diffusers(dict(state_dict))  # the converter pops from the dict it gets
    if "img_emb.emb_pos" in converted:  # FLF2V position embedding; the converter leaves this name as it is
        converted[POS_EMBED_KEY] = converted.pop("img_emb.emb_pos")
    return converted


def _check_fits(converted: dict[str, torch.Tensor], config: dict[str, Any]) -> None:
    """One-line error unless the converted keys and shapes are exactly those of a model built from config."""
    with torch.device("meta"):
        expected = {k: v.shape for k, v in WanTransformer3DModel.from_config(config).state_dict().items()}
    missing = sorted(expected.keys() - converted.keys())
    unexpected = sorted(converted.keys() - expected.keys())
    wrong = [f"{k} {tuple(converted[k].shape)} vs {tuple(expected[k])}"
             for k in sorted(expected.keys() & converted.keys()) if converted[k].shape != expected[k]]
    if missing or unexpected or wrong:
        raise OriginalCheckpointError(
            f"weights do not fit the config (diffusers names): {len(missing)} missing {missing[:3]}, "
            f"{len(unexpected)} unexpected {unexpected[:3]}, {len(wrong)} shape mismatches {wrong[:2]}"
        )


def load_original_wan_transformer(weights: str | os.PathLike, config: str | os.PathLike | dict | None = None,
                                  torch_dtype: torch.dtype | None = None) -> WanTransformer3DModel:
    """WanTransformer3DModel from Wan's original file layout, local files only (config: beside the weights if None).

    weights: a .safetensors file, a `*.safetensors.index.json` or a folder holding one of them. config: Wan's
    `WanModel` config.json (as shipped with the weights) or a diffusers WanTransformer3DModel config, as a folder,
    file or dict. The whole checkpoint is read into CPU memory once.
    """
    weights = Path(weights)
    raw_config = _read_config(config, weights)
    converted = convert_original_state_dict(load_original_state_dict(weights))
    model_config = diffusers_config(raw_config, converted)
    _check_fits(converted, model_config)
    with tempfile.TemporaryDirectory() as config_dir:
        (Path(config_dir) / "config.json").write_text(json.dumps(model_config))
        return WanTransformer3DModel.from_single_file(
            converted, config=config_dir, local_files_only=True, torch_dtype=torch_dtype
        )
