"""Cheap baselines a detector must beat, on the same updates (``w2s.adapters.updates``):

* spectral statistics of each update ``Delta W`` with singular values ``sigma_1 >= sigma_2 >= ...``:
  ``sigma_1``; ``||Delta W||_F = sqrt(sum sigma_i^2)``; ``sigma_1 / sum sigma_i``; the spectral
  entropy ``-sum p_i ln p_i`` with ``p_i = sigma_i / sum sigma_j``; the excess kurtosis of the
  entries ``E[(x - mu)^4] / Var(x)^2 - 3``; each averaged over layers, per projection
  (arXiv 2602.15195 reports 97-100% with these numbers);
* a per-layer norm profile: ``||Delta W_{p,l}||_F`` for every projection and layer;
* the classification head alone (left out of the detector's input; a control for what it leaks:
  a dirty-label backdoor may tilt the head toward its target), statistics that do not depend on
  the number of labels: ``max_k b_k - mean_k b_k`` and the spread of the bias ``b``, and of the row
  norms ``n_k = ||W_k||``: ``max_k n_k / mean_k n_k`` and ``std_k n_k / mean_k n_k``;

each standardised and fed to a logistic regression (scikit-learn)."""
from __future__ import annotations

import torch
from torch import Tensor

STATISTICS = ("sigma_1", "frobenius", "sigma_1_share", "spectral_entropy", "kurtosis")


def spectral_statistics(update: Tensor) -> Tensor:
    """``(5,)``: :data:`STATISTICS` of one ``(d_out, d_in)`` update (all 0 for a zero update)."""
    sigma = torch.linalg.svdvals(update.double())
    total = sigma.sum()
    if total == 0:
        return torch.zeros(len(STATISTICS), dtype=torch.float64)
    p = sigma / total
    entropy = -(p[p > 0] * p[p > 0].log()).sum()
    x = update.double().flatten()
    centred = x - x.mean()
    kurtosis = centred.pow(4).mean() / centred.pow(2).mean().pow(2) - 3
    return torch.stack([sigma[0], sigma.pow(2).sum().sqrt(), sigma[0] / total, entropy, kurtosis])


def spectral_features(updates: dict[str, Tensor]) -> tuple[list[str], Tensor]:
    """``(names, (5 P,))``: each statistic averaged over layers, per projection."""
    names = [f"{p}/{s}" for p in updates for s in STATISTICS]
    values = [torch.stack([spectral_statistics(u) for u in layers]).mean(0) for layers in updates.values()]
    return names, torch.cat(values).float()


def norm_profile(updates: dict[str, Tensor]) -> tuple[list[str], Tensor]:
    """``(names, (P L,))``: the Frobenius norm of every projection's update in every layer."""
    names = [f"{p}/{l}" for p, layers in updates.items() for l in range(len(layers))]
    return names, torch.cat([layers.flatten(1).norm(dim=1) for layers in updates.values()]).float()


def logistic_regression(seed: int = 0):
    """The baselines' classifier: standardise, then L2-regularised logistic regression."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))


def head_statistics(weight: Tensor, bias: Tensor | None) -> tuple[list[str], Tensor]:
    """``(names, (4,))``: the head statistics above (bias terms 0 for a head without bias)."""
    b = bias.double() if bias is not None else torch.zeros(len(weight), dtype=torch.float64)
    n = weight.double().norm(dim=1)
    values = torch.stack([b.max() - b.mean(), b.std(unbiased=False), n.max() / n.mean(), n.std(unbiased=False) / n.mean()])
    return ["bias_max_gap", "bias_spread", "row_norm_max_ratio", "row_norm_spread"], values.float()
