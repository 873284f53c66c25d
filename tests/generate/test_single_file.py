"""load_original_wan_transformer: tiny transformers written under Wan's original key names load back exactly."""

import json
import re

import pytest
import torch
from diffusers import WanTransformer3DModel
from safetensors.torch import save_file

from videoai.generate.single_file import OriginalCheckpointError, load_original_wan_transformer

HEADS, HEAD_DIM, IN_CH, OUT_CH, TEXT_DIM, FFN, LAYERS, IMAGE_DIM = 2, 8, 4, 4, 8, 24, 2, 12

# diffusers name -> Wan original name, read off diffusers' convert_wan_transformer_to_diffusers (applied in reverse).
TO_ORIGINAL = [
    (r"^scale_shift_table$", "head.modulation"),
    (r"^proj_out\.", "head.head."),
    (r"\.scale_shift_table$", ".modulation"),
    (r"^condition_embedder\.time_embedder\.linear_1\.", "time_embedding.0."),
    (r"^condition_embedder\.time_embedder\.linear_2\.", "time_embedding.2."),
    (r"^condition_embedder\.time_proj\.", "time_projection.1."),
    (r"^condition_embedder\.text_embedder\.linear_1\.", "text_embedding.0."),
    (r"^condition_embedder\.text_embedder\.linear_2\.", "text_embedding.2."),
    (r"^condition_embedder\.image_embedder\.norm1\.", "img_emb.proj.0."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.0\.proj\.", "img_emb.proj.1."),
    (r"^condition_embedder\.image_embedder\.ff\.net\.2\.", "img_emb.proj.3."),
    (r"^condition_embedder\.image_embedder\.norm2\.", "img_emb.proj.4."),
    (r"^condition_embedder\.image_embedder\.pos_embed$", "img_emb.emb_pos"),
    (r"\.attn1\.", ".self_attn."),
    (r"\.attn2\.", ".cross_attn."),
    (r"\.to_q\.", ".q."),
    (r"\.to_k\.", ".k."),
    (r"\.to_v\.", ".v."),
    (r"\.to_out\.0\.", ".o."),
    (r"\.add_k_proj\.", ".k_img."),
    (r"\.add_v_proj\.", ".v_img."),
    (r"\.norm_added_k\.", ".norm_k_img."),
    (r"\.norm2\.", ".norm3."),  # diffusers' norm2 is the cross-attention norm, Wan's norm3
    (r"\.ffn\.net\.0\.proj\.", ".ffn.0."),
    (r"\.ffn\.net\.2\.", ".ffn.2."),
]


def to_original(state_dict):
    out = {}
    for key, value in state_dict.items():
        for pattern, replacement in TO_ORIGINAL:
            key = re.sub(pattern, replacement, key)
        out[key] = value.clone().contiguous()
    return out


def tiny_transformer(kind="t2v"):
    """Random tiny Wan transformer; every parameter random so swapped names cannot pass."""
    image = kind in ("i2v", "flf2v")
    torch.manual_seed(0)
    model = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=HEADS, attention_head_dim=HEAD_DIM, in_channels=IN_CH,
        out_channels=OUT_CH, text_dim=TEXT_DIM, freq_dim=16, ffn_dim=FFN, num_layers=LAYERS,
        image_dim=IMAGE_DIM if image else None, added_kv_proj_dim=HEADS * HEAD_DIM if image else None,
        pos_embed_seq_len=6 if kind == "flf2v" else None,
    )
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_()
    return model.eval()


def wan_config(kind):
    """config.json as Wan's original releases ship it (WanModel)."""
    return {"_class_name": "WanModel", "_diffusers_version": "0.30.0", "dim": HEADS * HEAD_DIM, "eps": 1e-06,
            "ffn_dim": FFN, "freq_dim": 16, "in_dim": IN_CH, "model_type": kind, "num_heads": HEADS,
            "num_layers": LAYERS, "out_dim": OUT_CH, "text_len": 512, "text_dim": TEXT_DIM}


def write_original(model, folder, kind, shards=1):
    """Write the model under Wan's names, as one file or Wan-style shards + index, plus Wan's config.json."""
    original = to_original(model.state_dict())
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(wan_config(kind)))
    if shards == 1:
        save_file(original, folder / "diffusion_pytorch_model.safetensors")
        return original
    keys = sorted(original)
    weight_map = {}
    for index in range(shards):
        name = f"diffusion_pytorch_model-{index + 1:05d}-of-{shards:05d}.safetensors"
        part = {k: original[k] for k in keys[index::shards]}
        save_file(part, folder / name)
        weight_map.update(dict.fromkeys(part, name))
    total = sum(v.numel() * v.element_size() for v in original.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(index))
    return original


def forward(model, kind):
    generator = torch.Generator().manual_seed(1)
    inputs = {
        "hidden_states": torch.randn(1, IN_CH, 2, 4, 4, generator=generator),
        "timestep": torch.tensor([500]),
        "encoder_hidden_states": torch.randn(1, 5, TEXT_DIM, generator=generator),
    }
    if kind == "i2v":
        inputs["encoder_hidden_states_image"] = torch.randn(1, 3, IMAGE_DIM, generator=generator)
    if kind == "flf2v":  # first and last frame embeddings, joined by the pos-embedded view
        inputs["encoder_hidden_states_image"] = torch.randn(2, 3, IMAGE_DIM, generator=generator)
    with torch.no_grad():
        return model(**inputs, return_dict=False)[0]


def assert_same_model(loaded, model, kind):
    assert isinstance(loaded, WanTransformer3DModel)
    expected, got = model.state_dict(), loaded.state_dict()
    assert got.keys() == expected.keys()
    for key in expected:
        assert torch.equal(got[key], expected[key]), key
    assert torch.equal(forward(loaded, kind), forward(model, kind))


@pytest.mark.parametrize("kind", ["t2v", "i2v", "flf2v"])
@pytest.mark.parametrize("shards", [1, 3])
def test_original_layout_loads_back_exactly(tmp_path, kind, shards):
    model = tiny_transformer(kind)
    original = write_original(model, tmp_path / "release", kind, shards)
    assert {"blocks.0.self_attn.q.weight", "blocks.0.norm3.weight", "head.head.weight", "patch_embedding.weight",
            "head.modulation", "time_projection.1.weight"} <= original.keys()
    if kind != "t2v":
        assert {"img_emb.proj.1.weight", "blocks.0.cross_attn.k_img.weight"} <= original.keys()
    loaded = load_original_wan_transformer(tmp_path / "release")  # folder: finds weights and Wan's config.json
    assert_same_model(loaded, model, kind)


def test_file_index_and_diffusers_config_entry_points(tmp_path):
    model = tiny_transformer("i2v")
    write_original(model, tmp_path / "single", "i2v")
    write_original(model, tmp_path / "sharded", "i2v", shards=2)
    model.save_config(tmp_path / "diffusers_config")
    loaded = load_original_wan_transformer(tmp_path / "single" / "diffusion_pytorch_model.safetensors",
                                           config=tmp_path / "diffusers_config")
    assert_same_model(loaded, model, "i2v")
    index = tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json"
    assert_same_model(load_original_wan_transformer(index), model, "i2v")


def test_comfy_prefix_and_bfloat16(tmp_path):
    model = tiny_transformer("t2v")
    original = to_original(model.state_dict())
    save_file({f"model.diffusion_model.{k}": v for k, v in original.items()}, tmp_path / "wan.safetensors")
    loaded = load_original_wan_transformer(tmp_path / "wan.safetensors", config=wan_config("t2v"),
                                           torch_dtype=torch.bfloat16)
    for key, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[key], value.to(torch.bfloat16)), key


def test_missing_files_and_config_are_refused(tmp_path):
    model = tiny_transformer("t2v")
    write_original(model, tmp_path / "release", "t2v", shards=3)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_original_wan_transformer(tmp_path / "nowhere.safetensors", config=wan_config("t2v"))
    (tmp_path / "release" / "diffusion_pytorch_model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="shards missing.*00002-of-00003"):
        load_original_wan_transformer(tmp_path / "release")
    write_original(model, tmp_path / "no_config", "t2v")
    (tmp_path / "no_config" / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config not found"):
        load_original_wan_transformer(tmp_path / "no_config")
    with pytest.raises(OriginalCheckpointError, match="neither Wan's WanModel format"):
        load_original_wan_transformer(tmp_path / "no_config", config={"hidden_size": 3})
    (tmp_path / "empty").mkdir()
    with pytest.raises(OriginalCheckpointError, match="one .safetensors file"):
        load_original_wan_transformer(tmp_path / "empty", config=wan_config("t2v"))


def test_keys_that_do_not_match_are_refused(tmp_path):
    model = tiny_transformer("t2v")
    original = to_original(model.state_dict())
    cases = {
        "missing": ({k: v for k, v in original.items() if k != "blocks.1.ffn.2.weight"}, wan_config("t2v")),
        "unexpected": ({**original, "vace_blocks.0.after_proj.weight": torch.zeros(2)}, wan_config("t2v")),
        "shape": (original, {**wan_config("t2v"), "ffn_dim": FFN + 1}),
    }
    for name, (state_dict, config) in cases.items():
        save_file(state_dict, tmp_path / f"{name}.safetensors")
        with pytest.raises(OriginalCheckpointError, match=f"1 {name}" if name != "shape" else "shape mismatches"):
            load_original_wan_transformer(tmp_path / f"{name}.safetensors", config=config)
    save_file(model.state_dict(), tmp_path / "diffusers_layout.safetensors")
    with pytest.raises(OriginalCheckpointError, match="not in Wan's original layout"):
        load_original_wan_transformer(tmp_path / "diffusers_layout.safetensors", config=wan_config("t2v"))
