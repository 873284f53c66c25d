"""A tiny random pipeline for the app tests (CPU, well under a second per generation)."""

import pytest
import torch

from videoai.generate import TinyWanConfig, build_pipeline

TINY = TinyWanConfig(z_dim=4, vae_base_dim=4, num_layers=2, num_attention_heads=2, attention_head_dim=12, ffn_dim=32,
                     text_dim=8, freq_dim=16, num_frames=5, height=32, width=32)


@pytest.fixture
def tiny_pipeline():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tests share few cores; one thread avoids OpenMP oversubscription stalls
    yield build_pipeline(TINY, seed=0)
    torch.set_num_threads(threads)
