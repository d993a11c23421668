"""Logit distillation (Hinton et al., 2015), as used by W2SDefense (arXiv 2410.14425)."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor


def kd_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float = 2.0) -> Tensor:
    """KD = T^2 * KL( softmax(t / T) || softmax(s / T) ), averaged over the batch.

    Args:
        student_logits: ``(B, C)``; gradients flow here.
        teacher_logits: ``(B, C)``; treated as a fixed target.
        temperature: ``T > 0``; the ``T^2`` factor keeps gradient scale independent of T.
    Returns:
        scalar; 0 iff the two softmax distributions are equal.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(f"logit shapes differ: student {tuple(student_logits.shape)}, "
                         f"teacher {tuple(teacher_logits.shape)}")
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.detach().float() / temperature, dim=-1)
    kl = F.kl_div(log_p_student, log_p_teacher, reduction="batchmean", log_target=True)
    return temperature**2 * kl
