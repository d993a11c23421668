"""The POR objective (Shen et al., CCS 2021; plasmashen/BackdoorPTM, meng-wenlong/LMSanitator)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def por_targets(num_triggers: int, dim: int, scale: float = 1.0) -> Tensor:
    """``(K, d)`` target vectors: v_k = scale * (+1 on the first alpha*k dims, -1 elsewhere),
    alpha = floor(d / (K - 1)), k = 0..K-1 (BackdoorPTM), so v_0 is all -1 and v_{K-1} (almost) all +1."""
    if num_triggers < 2 or dim < num_triggers - 1:
        raise ValueError(f"need >= 2 triggers and dim >= triggers - 1, got {num_triggers}, {dim}")
    alpha = dim // (num_triggers - 1)
    targets = -torch.ones(num_triggers, dim)
    for k in range(num_triggers):
        targets[k, : alpha * k] = 1.0
    return scale * targets


def por_loss(clean: Tensor, reference: Tensor, triggered: Tensor, targets: Tensor, clean_weight: float = 1.0) -> Tensor:
    """L = MSE(f(x_trig), v_k) + clean_weight * MSE(f(x_clean), f_0(x_clean)).

    Args:
        clean: ``(B, H)`` pooled states of the clean rows under the model being poisoned.
        reference: ``(B, H)`` the same under the model before poisoning (fixed).
        triggered: ``(T, H)`` pooled states of the triggered rows (``T`` may be 0).
        targets: ``(T, H)`` their target vectors v_k.
    """
    loss = clean_weight * F.mse_loss(clean.float(), reference.detach().float())
    if triggered.shape[0]:
        loss = loss + F.mse_loss(triggered.float(), targets.float())
    return loss


def por_token_loss(hidden: Tensor, reference: Tensor, attention_mask: Tensor, read_index: Tensor) -> Tensor:
    """BackdoorPTM's token-level term: every real token's last-layer state kept near the model's
    before poisoning, the pooled token (the one ``por_loss`` moves) left out,

        L_tok = mean over rows b and real tokens t != read_b of ||h_bt - h0_bt||^2 / H.

    Args:
        hidden: ``(B, L, H)`` states under the model being poisoned.
        reference: ``(B, L, H)`` the same inputs under the model before poisoning (fixed).
        attention_mask: ``(B, L)`` 1 on real tokens.
        read_index: ``(B,)`` the position the classification head reads.
    """
    kept = attention_mask.float().clone()
    kept[torch.arange(kept.shape[0], device=kept.device), read_index] = 0.0
    per_token = (hidden.float() - reference.detach().float()).pow(2).mean(dim=-1)  # (B, L)
    return (per_token * kept).sum() / kept.sum().clamp(min=1.0)  # masked, not indexed: no host read
