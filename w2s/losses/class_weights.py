"""Class weights for cross-entropy on imbalanced data."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def class_weights(labels: Tensor, num_classes: int) -> Tensor:
    """``balanced`` weights: w_c = N / (C * n_c), so every class carries the same total weight
    (a class absent from ``labels`` gets weight 0). ``(N,) -> (C,)``."""
    if labels.dim() != 1 or labels.numel() == 0:
        raise ValueError(f"expected a non-empty (N,) label tensor, got shape {tuple(labels.shape)}")
    counts = torch.bincount(labels.long(), minlength=num_classes).float()
    if counts.numel() > num_classes:
        raise ValueError(f"labels go up to {counts.numel() - 1} but num_classes is {num_classes}")
    weights = labels.numel() / (num_classes * counts)
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def weighted_cross_entropy(logits: Tensor, labels: Tensor, weights: Tensor | None = None) -> Tensor:
    """CE = sum_i w_{y_i} * (-log softmax(s_i)_{y_i}) / sum_i w_{y_i}; plain mean CE when
    ``weights`` is None. ``logits (B, C)``, ``labels (B,)``, ``weights (C,)``."""
    if weights is not None:
        weights = weights.to(device=logits.device, dtype=torch.float32)
    return F.cross_entropy(logits.float(), labels, weight=weights)
