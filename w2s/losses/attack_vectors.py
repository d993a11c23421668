"""LMSanitator's terms (arXiv 2308.13904; meng-wenlong/LMSanitator): the search for an *attack
vector*, the output a task-agnostic backdoor forces whatever the input, and the rule that
watches for it at inference. ``o`` ``(B, H)``: the monitored outputs of a batch with the
candidate trigger inserted; ``y`` ``(B, H)``: the same rows' clean outputs."""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.nn import functional as F


def batch_entropy(o: Tensor) -> Tensor:
    """How alike the rows' outputs are, dimension by dimension:

        H(o) = (1/H) sum_h  - sum_b p_{b,h} ln p_{b,h},   p_{., h} = softmax_b(o_{., h})

    maximal, ``ln B``, when every row gives the same vector (input-agnostic)."""
    log_p = F.log_softmax(o.float(), dim=0)
    return -(log_p.exp() * log_p).sum(dim=0).mean()


def mining_loss(o: Tensor, y: Tensor, known: list[Tensor] = ()) -> Tensor:
    """What the trigger minimises:

        L = - MSE(o, y) - H(o) - 0.5 MSE(o, v*),   v* = argmin_{v in known} MSE(o, v)

    far from the clean outputs, the same for every row, and away from the vectors already found
    (the last term only when some are known)."""
    loss = -F.mse_loss(o, y) - batch_entropy(o)
    if known:
        with torch.no_grad():
            nearest = min(known, key=lambda v: F.mse_loss(o, v.expand_as(o)).item())
        loss = loss - 0.5 * F.mse_loss(o, nearest.expand_as(o))
    return loss


def input_agnostic(entropy: float, batch: int, slack: float = 0.02) -> bool:
    """The authors' acceptance test: ``H(o) > ln B - slack`` (their ``div_th``, -3.446 at B = 32)."""
    return entropy > math.log(batch) - slack


def sign_agreement(o: Tensor, vectors: Tensor) -> Tensor:
    """``(B,)`` the largest share of dimensions on which a row's output has the sign of a found
    vector (``vectors`` ``(K, H)``): an input is flagged above 0.8."""
    return (torch.sign(o).unsqueeze(1) == torch.sign(vectors).unsqueeze(0)).float().mean(dim=-1).amax(dim=1)
