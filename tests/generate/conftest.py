"""Tiny random Wan stacks for the generate tests (CPU, milliseconds per forward)."""

import pytest
import torch

from videoai.generate.default import TinyWanConfig, build_pipeline

TINY = TinyWanConfig(z_dim=4, vae_base_dim=4, num_layers=2, num_attention_heads=2, attention_head_dim=12, ffn_dim=32,
                     text_dim=8, freq_dim=16, adapter_hidden_dim=8, num_frames=5, height=32, width=32)



@pytest.fixture
def tiny_pipe():
    return build_pipeline(TINY, seed=0)


@pytest.fixture
def tiny_pipe_with_adapter():
    from dataclasses import replace

    return build_pipeline(replace(TINY, with_motion_adapter=True), seed=0)


@pytest.fixture
def image():
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (32, 32, 3), dtype=torch.uint8, generator=generator)
