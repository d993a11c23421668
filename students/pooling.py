"""The pooled student feature: the state its classification head reads."""
from __future__ import annotations

import torch
from torch import Tensor


def last_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the last non-padding token per row, for left or right padding. ``(B, L) -> (B,)``."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (positions * attention_mask.long()).argmax(dim=1)


def first_token_index(attention_mask: Tensor) -> Tensor:
    """Index of the first non-padding token (CLS) per row. ``(B, L) -> (B,)``."""
    return attention_mask.long().argmax(dim=1)


def read_index(attention_mask: Tensor, decoder: bool) -> Tensor:
    """``(B, L) -> (B,)``: the position the classification head reads, the last non-padding
    token for decoders, CLS for encoders."""
    return last_token_index(attention_mask) if decoder else first_token_index(attention_mask)


def prompted_mask(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """The attention mask of ``hidden`` ``(B, L + P, H)``, where a soft prompt (peft's prompt
    tuning) put ``P`` virtual tokens before the ``L`` positions of ``attention_mask``; unchanged
    when ``P`` is 0."""
    extra = hidden.shape[1] - attention_mask.shape[1]
    if extra <= 0:
        return attention_mask
    return torch.cat([attention_mask.new_ones(attention_mask.shape[0], extra), attention_mask], dim=1)


def pool(hidden: Tensor, attention_mask: Tensor, decoder: bool) -> Tensor:
    """``(B, L, H), (B, L) -> (B, H)``: the state at :func:`read_index` (behind a soft prompt's
    virtual tokens, :func:`prompted_mask`: for an encoder the first virtual token, which a
    prompt-tuned classifier reads)."""
    attention_mask = prompted_mask(hidden, attention_mask)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), read_index(attention_mask, decoder)]


def mean_pool(hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """``(B, L, H), (B, L) -> (B, H)``: the mean of the non-padding states of each row."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)
