"""torchmetrics wrappers: sum states, so values gather correctly across DDP processes."""
from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from w2s.metrics.functional import (attack_hits, balanced_accuracy_from_confusion, confusion,
                                    macro_f1_from_confusion)


class _Rate(Metric):
    """hits / total, accumulated over batches (and processes)."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("hits", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def _add(self, hit: Tensor) -> None:
        self.hits += hit.float().sum()
        self.total += hit.numel()

    def compute(self) -> Tensor:
        return self.hits / self.total if self.total > 0 else torch.tensor(float("nan"))


class CleanAccuracy(_Rate):
    """CA: share of clean rows predicted correctly. ``update(preds (N,), labels (N,))``."""

    def update(self, preds: Tensor, labels: Tensor) -> None:
        self._add(preds == labels)


def process_rank() -> tuple[int, int]:
    """``(rank, world size)`` of this process in the default process group (``(0, 1)`` without one)."""
    import torch.distributed as dist

    return (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)


class _RowRate(Metric):
    """Share of rows with a hit in at least one of their versions (``rows`` ``(N,)`` names each
    version's row; by default every version is its own row, a plain rate, with ids that stay
    distinct when the processes' states are gathered)."""

    full_state_update = False

    def __init__(self, target_label: int = -1, **kwargs):
        super().__init__(**kwargs)
        self.target_label = target_label
        self.add_state("rows", default=[], dist_reduce_fx="cat")
        self.add_state("hits", default=[], dist_reduce_fx="cat")
        self._unnamed = 0  # ids for versions given without rows (negative: never a real row)

    def _targets(self, preds: Tensor, targets: Tensor | None) -> Tensor:
        return torch.full_like(preds, self.target_label) if targets is None else targets

    def _add(self, hit: Tensor, rows: Tensor | None) -> None:
        if rows is None:  # unique across processes too: process p of W numbers its k-th version -1 - (k W + p)
            rank, world = process_rank()
            rows = -1 - rank - world * (self._unnamed + torch.arange(hit.numel(), device=hit.device))
            self._unnamed += hit.numel()
        self.rows.append(rows.long().flatten())
        self.hits.append(hit.float().flatten())

    def compute(self) -> Tensor:
        rows, hits = dim_zero_cat(self.rows), dim_zero_cat(self.hits)
        if rows.numel() == 0:
            return torch.tensor(float("nan"))
        unique, inverse = rows.unique(return_inverse=True)
        return torch.zeros(len(unique), device=hits.device).scatter_reduce(0, inverse, hits, "amax").mean()


class AttackSuccessRate(_RowRate):
    """ASR: share of triggered rows the attack wins (:func:`attack_hits`): predicted as the
    target, or (task-agnostic rows, target -1) predicted otherwise than when clean; a row with
    several versions (one per trigger) counts when any wins.
    ``update(triggered_preds (N,), targets (N,) = target_label, clean_preds (N,) = None, rows (N,) = None)``."""

    def update(self, triggered_preds: Tensor, targets: Tensor | None = None, clean_preds: Tensor | None = None,
               rows: Tensor | None = None) -> None:
        self._add(attack_hits(triggered_preds, self._targets(triggered_preds, targets), clean_preds), rows)


class CleanCorrectASR(_RowRate):
    """ASR among triggered rows whose clean version is classified correctly (Obliviate):
    ``update(clean_preds (N,), clean_labels (N,), triggered_preds (N,), targets (N,) = target_label,
    rows (N,) = None)``, position i the same example; a task-agnostic version (target -1) wins when
    its prediction leaves the true label."""

    def update(self, clean_preds: Tensor, clean_labels: Tensor, triggered_preds: Tensor,
               targets: Tensor | None = None, rows: Tensor | None = None) -> None:
        correct = clean_preds == clean_labels
        targets = self._targets(triggered_preds, targets)[correct]
        self._add(attack_hits(triggered_preds[correct], targets, clean_labels[correct]),
                  None if rows is None else rows[correct])


class FlagRate(_Rate):
    """Share of rows a filter flags. ``update(flags (N,) bool)``."""

    def update(self, flags: Tensor) -> None:
        self._add(flags)


class MajorityShare(Metric):
    """Share of the most frequent predicted class: near 1.0 means the model collapsed to a
    constant prediction (seen with SDPA + left padding + bf16: docs/measurements.md).
    ``update(preds (N,))``."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("preds", default=[], dist_reduce_fx="cat")

    def update(self, preds: Tensor) -> None:
        self.preds.append(preds.detach().long().flatten())

    def compute(self) -> Tensor:
        preds = torch.cat(self.preds) if isinstance(self.preds, list) else self.preds
        if preds.numel() == 0:
            return torch.tensor(float("nan"))
        return torch.bincount(preds).max().float() / preds.numel()


class _Confusion(Metric):
    """A summed ``(C, C)`` confusion matrix; subclasses turn it into one number."""

    full_state_update = False

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.add_state("matrix", default=torch.zeros(num_classes, num_classes, dtype=torch.long),
                       dist_reduce_fx="sum")

    def update(self, preds: Tensor, labels: Tensor) -> None:
        self.matrix += confusion(preds, labels, self.num_classes).to(self.matrix.device)


class BalancedAccuracy(_Confusion):
    """Mean per-class recall on clean rows. ``update(preds (N,), labels (N,))``."""

    def compute(self) -> Tensor:
        return balanced_accuracy_from_confusion(self.matrix)


class MacroF1(_Confusion):
    """Macro-averaged F1 on clean rows. ``update(preds (N,), labels (N,))``. ``classes``: the
    task's classes, when predictions may hold one more value (a filter's *rejected*): averaged
    over the task's classes, a rejected row a wrong prediction."""

    def __init__(self, num_classes: int, classes: int | None = None, **kwargs):
        super().__init__(num_classes, **kwargs)
        self.classes = classes

    def compute(self) -> Tensor:
        return macro_f1_from_confusion(self.matrix, self.classes)

