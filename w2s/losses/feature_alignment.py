"""Feature alignment between the teacher's projected feature and the student's pooled state
(W2SDefense, arXiv 2410.14425)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def feature_alignment_loss(teacher_features: Tensor, student_features: Tensor, normalize: bool = False) -> Tensor:
    """FA = mean_i || z_i - f_i ||^2, per sample.

    Args:
        teacher_features: ``(B, H)`` teacher features ``z = ReLU(W h_teacher)``; fixed target.
        student_features: ``(B, H)`` the state the student's head reads for sample i
            (last non-padding token for decoders, CLS for encoders).
        normalize: L2-normalise both first, so FA lies in [0, 4] whatever the feature scale
            (raw decoder states have squared norms in the thousands).
    """
    if teacher_features.shape != student_features.shape or teacher_features.dim() != 2:
        raise ValueError(f"expected two (B, H) tensors, got teacher {tuple(teacher_features.shape)}, "
                         f"student {tuple(student_features.shape)}")
    z, f = teacher_features.detach().float(), student_features.float()
    if normalize:
        z, f = F.normalize(z, dim=-1), F.normalize(f, dim=-1)
    return (z - f).pow(2).sum(dim=-1).mean()


def feature_alignment_tokens(teacher_features: Tensor, student_hidden: Tensor, attention_mask: Tensor,
                             normalize: bool = False) -> Tensor:
    """Every token aligned (``fa_pool: tokens``), per sample and without padding:

        FA_tok = mean_i (1 / |T_i|) sum_{t in T_i} || z_i - h_{i, t} ||^2

    with ``T_i`` the non-padding positions of row i.

    Args:
        teacher_features: ``(B, H)``.
        student_hidden: ``(B, L, H)`` the aligned layer's states.
        attention_mask: ``(B, L)``, 1 on real tokens.
    """
    if student_hidden.dim() != 3 or student_hidden.shape[::2] != teacher_features.shape:
        raise ValueError(f"expected student hidden (B, L, H) matching teacher (B, H), got "
                         f"{tuple(student_hidden.shape)} and {tuple(teacher_features.shape)}")
    z, h = teacher_features.detach().float().unsqueeze(1), student_hidden.float()
    if normalize:
        z, h = F.normalize(z, dim=-1), F.normalize(h, dim=-1)
    mask = attention_mask.float()
    per_token = (z - h).pow(2).sum(dim=-1) * mask
    return (per_token.sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()


def feature_alignment_reference(teacher_features: Tensor, student_hidden: Tensor, normalize: bool = False) -> Tensor:
    """The reference code's broadcasting form, kept for comparison (``fa_mode: compat``):

        FA_ref = mean_{b, t} || z_{B-1} - h_{b, t} ||^2

    the *last* sample's teacher vector against *every* token of every student sequence.

    Args:
        teacher_features: ``(B, H)``.
        student_hidden: ``(B, L, H)`` the student's last-layer states (padding included, as there).
    """
    if student_hidden.dim() != 3 or student_hidden.shape[-1] != teacher_features.shape[-1]:
        raise ValueError(f"expected student hidden (B, L, H) matching teacher (B, H), got "
                         f"{tuple(student_hidden.shape)} and {tuple(teacher_features.shape)}")
    z, h = teacher_features.detach().float()[-1], student_hidden.float()
    if normalize:
        z, h = F.normalize(z, dim=-1), F.normalize(h, dim=-1)
    return (z - h).pow(2).sum(dim=-1).mean()
