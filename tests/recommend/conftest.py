import pytest
import torch

from videoai.recommend import OneRecConfig, OneRecModel
from videoai.tokenize.semantic_ids import PrefixTrie, make_collision_free

torch.set_num_threads(1)  # tiny tensors: threads only add overhead on the shared machine


def tiny_config(**overrides) -> OneRecConfig:
    settings = dict(num_levels=3, codebook_size=8, max_history=6, d_model=16, num_heads=2, num_encoder_layers=1,
                    num_decoder_layers=2, d_ff=32, num_experts=4, experts_top_k=2, dropout=0.0)
    settings.update(overrides)
    return OneRecConfig(**settings)


@pytest.fixture
def make_config():
    """Factory of tiny OneRecConfigs: make_config(session_length=2, ...)."""
    return tiny_config


@pytest.fixture
def item_codes() -> torch.Tensor:
    """40 items with unique 3-token IDs (2 levels + disambiguation) over a vocabulary of 8; some collide on purpose."""
    generator = torch.Generator().manual_seed(0)
    codes = torch.randint(0, 4, (40, 2), generator=generator)  # only 16 distinct pairs: plenty of collisions
    return make_collision_free(codes)


@pytest.fixture
def trie(item_codes) -> PrefixTrie:
    return PrefixTrie(item_codes, vocab_size=8)


@pytest.fixture(params=[False, True], ids=["cross-attention only", "user state input"])
def model(request) -> OneRecModel:
    """The tiny model with and without the encoder's latest output added to the decoder inputs."""
    torch.manual_seed(0)
    return OneRecModel(tiny_config(user_state_input=request.param)).eval()


@pytest.fixture
def node_model(trie) -> OneRecModel:
    """Tiny model with prefix-node embeddings for the fixture trie (root + depth-1 + depth-2 nodes)."""
    from videoai.recommend import prefix_node_count

    torch.manual_seed(0)
    model = OneRecModel(tiny_config(num_prefix_nodes=prefix_node_count(trie, 2), node_levels=2)).eval()
    for param in model.node_embedding.parameters():
        torch.nn.init.normal_(param, std=0.5)  # make the node term matter
    return model
