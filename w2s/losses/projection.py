"""A linear map fitted on clean rows (``objective.fa_target: fitted``): ridge regression from
the teacher's features to the student's own pooled features, so that feature alignment pulls
the student towards what the clean teacher can explain in the student's own geometry instead
of towards the teacher's arbitrary projection.

    P = argmin_P ||A P - Y||^2 + ridge * N * ||P_W||^2,   A = [X 1]
      = (A^T A + ridge * N * D)^{-1} A^T Y,                D = diag(1, ..., 1, 0)

with ``X (N, Dt)`` the teacher's features, ``Y (N, Ds)`` the student's, and the bias row
``P_b`` not penalised.
"""
from __future__ import annotations

import torch
from torch import Tensor


def fit_projection(x: Tensor, y: Tensor, ridge: float = 1e-3) -> Tensor:
    """``(N, Dt), (N, Ds) -> P (Dt + 1, Ds)``, the closed-form ridge solution above (float64)."""
    if x.dim() != 2 or y.dim() != 2 or x.shape[0] != y.shape[0]:
        raise ValueError(f"expected (N, Dt) and (N, Ds) with the same N, got {tuple(x.shape)} and {tuple(y.shape)}")
    if ridge < 0:
        raise ValueError(f"ridge must be >= 0, got {ridge}")
    a = torch.cat([x.double(), torch.ones(x.shape[0], 1, dtype=torch.float64, device=x.device)], dim=1)
    penalty = torch.ones(a.shape[1], dtype=torch.float64, device=x.device)
    penalty[-1] = 0.0
    gram = a.T @ a + ridge * x.shape[0] * torch.diag(penalty)
    return torch.linalg.lstsq(gram, a.T @ y.double()).solution


def project(x: Tensor, projection: Tensor) -> Tensor:
    """``(N, Dt) -> (N, Ds)``: ``[X 1] P``, in ``x``'s dtype."""
    return (x.double() @ projection[:-1] + projection[-1]).to(x.dtype)
