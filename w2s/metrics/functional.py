"""Clean accuracy (CA) and attack success rate (ASR) as pure functions of predictions.

All inputs are integer class tensors of shape ``(N,)``; outputs are float scalars.
"""
from __future__ import annotations

import torch
from torch import Tensor


def _check(*tensors: Tensor) -> None:
    shape = tensors[0].shape
    if len(shape) != 1 or any(t.shape != shape for t in tensors):
        raise ValueError(f"expected 1-D tensors of one shape, got {[tuple(t.shape) for t in tensors]}")
    if shape[0] == 0:
        raise ValueError("cannot compute a rate over zero examples")


def clean_accuracy(preds: Tensor, labels: Tensor) -> Tensor:
    """CA = mean(preds == labels) over the clean test split."""
    _check(preds, labels)
    return (preds == labels).float().mean()


def attack_success_rate(triggered_preds: Tensor, target_label: int) -> Tensor:
    """ASR = mean(triggered_preds == target_label).

    ``triggered_preds`` are predictions on triggered rows whose *true* label is not the
    target (see :func:`w2s.data.poisoning.build_triggered_set`), so a clean model scores
    near 0 and a backdoored one near 1.
    """
    _check(triggered_preds)
    return (triggered_preds == target_label).float().mean()


def attack_hits(triggered_preds: Tensor, targets: Tensor, reference: Tensor | None = None) -> Tensor:
    """Which triggered rows the attack won: ``triggered_i == targets_i`` for a targeted row
    (``targets_i >= 0``); for a task-agnostic row (``targets_i = -1``) any change from
    ``reference_i``, the same row's clean prediction (or its true label).  ``(N,) -> (N,)`` bool."""
    won = triggered_preds == targets
    agnostic = targets < 0
    if agnostic.any():
        if reference is None:
            raise ValueError("task-agnostic ASR needs the clean predictions of the triggered rows")
        won = torch.where(agnostic, triggered_preds != reference, won)
    return won


def clean_correct_asr(clean_preds: Tensor, clean_labels: Tensor, triggered_preds: Tensor,
                      target_label: int) -> Tensor:
    """ASR among rows classified correctly when clean (Obliviate's variant):

        sum_i [clean_i == y_i] * [triggered_i == target] / sum_i [clean_i == y_i]

    Row ``i`` of the three tensors is the same example. NaN when no row is correct.
    """
    _check(clean_preds, clean_labels, triggered_preds)
    correct = clean_preds == clean_labels
    if not correct.any():
        return torch.tensor(float("nan"))
    return (triggered_preds[correct] == target_label).float().mean()


def confusion(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    """``(C, C)`` counts: row = true class, column = predicted class."""
    _check(preds, labels)
    index = labels.long() * num_classes + preds.long()
    return torch.bincount(index, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def balanced_accuracy_from_confusion(matrix: Tensor) -> Tensor:
    """Mean recall over the classes present among the true labels (sklearn's balanced accuracy).
    A model predicting one class everywhere scores 1/C however imbalanced the data."""
    support = matrix.sum(dim=1)
    present = support > 0
    return (matrix.diag()[present].float() / support[present]).mean()


def macro_f1_from_confusion(matrix: Tensor, classes: int | None = None) -> Tensor:
    """Mean over classes that are true or predicted somewhere of F1_c = 2 TP / (2 TP + FP + FN)
    (sklearn's ``f1_score(average="macro")``). ``classes``: average over the first ``classes``
    only (sklearn's ``labels=range(classes)``): a filter's extra *rejected* column then counts
    as a wrong prediction (a false negative of the row's true class), never as a class."""
    tp = matrix.diag().float()
    fp, fn = matrix.sum(dim=0) - tp, matrix.sum(dim=1) - tp
    seen = (tp + fp + fn) > 0
    if classes is not None:
        seen[classes:] = False
    return (2 * tp[seen] / (2 * tp[seen] + fp[seen] + fn[seen])).mean()


def balanced_accuracy(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    return balanced_accuracy_from_confusion(confusion(preds, labels, num_classes))


def macro_f1(preds: Tensor, labels: Tensor, num_classes: int) -> Tensor:
    return macro_f1_from_confusion(confusion(preds, labels, num_classes))
