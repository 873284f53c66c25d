"""OneRec-style generative recommendation: semantic-ID tokenizer, encoder-decoder with MoE, constrained beam search,
reward model and DPO preference alignment, leave-last-out evaluation."""

from .alignment import AlignmentConfig, PreferenceCollator, PreferenceDataset, align, build_preference_pairs, dpo_loss, freeze
from .beam_search import BeamSearchOutput, beam_search
from .constraints import TrieTables, TrieTargets, prefix_node_count
from .cooccurrence import cooccurrence_counts, cooccurrence_embeddings, ppmi
from .data import (
    EvalCollator,
    InteractionLogError,
    LeaveLastOutSplit,
    LengthGroupedBatchSampler,
    NextItemCollator,
    SequenceDataset,
    UserSequences,
    items_to_codes,
    leave_last_out,
    pad_left,
    read_interactions,
    read_user_sequences,
)
from .metrics import ndcg_at_k, ranking_metrics, recall_at_k
from .model import DecoderState, OneRecConfig, OneRecModel, OneRecOutput
from .moe import MoEFeedForward
from .recommender import OneRecRecommender
from .reward import (
    EngagementDataset,
    RewardModel,
    RewardModelConfig,
    collate_engagement,
    engagement_examples,
    engagement_examples_from_labels,
    reward_loss,
    train_reward_model,
)
from .semantic_ids import SemanticIDTokenizer, UnknownItemError
from .trainer import (
    OptimizerConfig,
    evaluate_onerec,
    make_train_loader,
    next_token_loss,
    recommend_indices,
    train_onerec,
    trie_targets,
)

__all__ = [
    "AlignmentConfig", "BeamSearchOutput", "PreferenceCollator", "DecoderState", "EngagementDataset", "EvalCollator", "InteractionLogError",
    "LeaveLastOutSplit", "LengthGroupedBatchSampler", "MoEFeedForward", "NextItemCollator", "OneRecConfig",
    "OneRecModel", "OneRecOutput", "OneRecRecommender", "OptimizerConfig", "PreferenceDataset", "RewardModel",
    "RewardModelConfig", "SemanticIDTokenizer", "SequenceDataset", "TrieTables", "TrieTargets", "prefix_node_count", "trie_targets", "UnknownItemError", "UserSequences", "align",
    "beam_search", "build_preference_pairs", "collate_engagement", "cooccurrence_counts", "cooccurrence_embeddings",
    "dpo_loss", "engagement_examples", "engagement_examples_from_labels", "evaluate_onerec", "freeze",
    "items_to_codes", "leave_last_out", "make_train_loader", "ndcg_at_k", "next_token_loss", "pad_left", "ppmi",
    "ranking_metrics", "recall_at_k", "read_interactions", "read_user_sequences", "recommend_indices", "reward_loss",
    "train_onerec", "train_reward_model",
]
