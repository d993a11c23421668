"""Obliviate's two regularisers (Kim et al., arXiv 2409.14119; jaehanwork/Obliviate).

Added to the fine-tuning objective of a PEFT model, they dilute a backdoor planted in its
frozen weights: ``L_amp`` enlarges the adapters so they outweigh it, ``L_attn`` flattens
the attention of the token the classifier reads so no single token (a trigger) dominates.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor


def amplification_loss(adapter_weights: Sequence[Tensor]) -> Tensor:
    """L_amp = - sum_W ||W||_F over every trainable adapter matrix W (LoRA A and B alike).

    The norm is the Frobenius norm, not squared (the authors' code). Minimising it grows
    the adapters. ``adapter_weights``: the matrices, any shapes; at least one.
    """
    if not adapter_weights:
        raise ValueError("amp > 0 but the model has no trainable adapter matrices (lora_A / lora_B)")
    return -torch.stack([w.float().norm() for w in adapter_weights]).sum()


def attention_loss(attentions: Sequence[Tensor], attention_mask: Tensor, query_index: Tensor) -> Tensor:
    """L_attn = mean_layers mean_(b, h) || A_l[b, h, q_b, :] * m_b ||_2.

    Args:
        attentions: per layer ``(B, H, L, L)`` post-softmax attention probabilities.
        attention_mask: ``(B, L)``, 1 for real tokens, 0 for padding (masked keys).
        query_index: ``(B,)`` the query row the classification reads (the first token for
            encoders, the last real token for decoders).
    Returns:
        scalar >= 0. For a row spread over n real keys it is at least ``1/sqrt(n)``, reached
        by the uniform row; a row on one key gives 1.
    """
    if not attentions or any(a is None for a in attentions):
        raise ValueError("attn > 0 needs the attention probabilities, but the model returned none: load the "
                         "student with attn_implementation: eager")
    rows = torch.arange(attention_mask.shape[0], device=attention_mask.device)
    mask = attention_mask[:, None, :].float()  # (B, 1, L)
    per_layer = [(a[rows, :, query_index, :].float() * mask).norm(dim=-1).mean() for a in attentions]
    return torch.stack(per_layer).mean()
