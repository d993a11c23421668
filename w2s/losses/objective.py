"""The objective as a weighted sum of named pure terms: ``L = sum_k w_k * term_k``.

W2SDefense is ``alpha * ce + beta * kd + gamma * fa``; the clean-LoRA baseline is the same
objective with ``kd = fa = 0``; Obliviate adds ``amp * L_amp + attn * L_attn``. Terms with
weight 0 are not computed at all (so a baseline needs no teacher, and attention
probabilities are requested only when ``attn > 0``). A term declares what it needs from the
step (``w2s.config.objective.NEEDS``); a new one registers with :func:`register_term` and takes its
weight from ``objective.extra``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from students.pooling import mean_pool
from w2s.config.objective import NEEDS, TERM_NEEDS, ObjectiveConfig
from w2s.losses.class_weights import weighted_cross_entropy
from w2s.losses.feature_alignment import feature_alignment_loss, feature_alignment_reference, feature_alignment_tokens
from w2s.losses.kd import kd_loss
from w2s.losses.obliviate import amplification_loss, attention_loss
from w2s.losses.schedule import schedule_factors


@dataclass
class LossInputs:
    """What one training step produced. Shapes: logits ``(B, C)``, labels ``(B,)``,
    features ``(B, H)``, ``student_hidden`` ``(B, L, H)``, ``class_weights`` ``(C,)``;
    ``adapter_weights`` the trainable adapter matrices, ``attentions`` per layer ``(B, H, L, L)``
    with ``attention_mask`` ``(B, L)`` and ``query_index`` ``(B,)`` (the row the head reads)."""

    student_logits: Tensor
    labels: Tensor
    class_weights: Tensor | None = None
    student_features: Tensor | None = None
    student_hidden: Tensor | None = None
    teacher_logits: Tensor | None = None
    teacher_features: Tensor | None = None
    adapter_weights: list[Tensor] | None = None
    attentions: tuple[Tensor, ...] | None = None
    attention_mask: Tensor | None = None
    query_index: Tensor | None = None


def _ce(x: LossInputs, c: ObjectiveConfig) -> Tensor:
    return weighted_cross_entropy(x.student_logits, x.labels, x.class_weights)


def _kd(x: LossInputs, c: ObjectiveConfig) -> Tensor:
    return kd_loss(x.student_logits, x.teacher_logits, c.temperature)


def _fa(x: LossInputs, c: ObjectiveConfig) -> Tensor:
    if c.fa_mode == "compat":
        return feature_alignment_reference(x.teacher_features, x.student_hidden, c.normalize_features)
    if c.fa_pool == "tokens":
        return feature_alignment_tokens(x.teacher_features, x.student_hidden, x.attention_mask, c.normalize_features)
    return feature_alignment_loss(x.teacher_features, pooled(c, x.student_features, x.student_hidden, x.attention_mask),
                                  c.normalize_features)


def pooled(c: ObjectiveConfig, features: Tensor, hidden: Tensor, attention_mask: Tensor) -> Tensor:
    """The student's ``(B, H)`` feature under ``c.fa_pool`` (``tokens`` pools by the mean):
    ``features`` the state the head reads, ``hidden`` ``(B, L, H)`` the aligned layer."""
    return features if c.fa_pool == "read" else mean_pool(hidden, attention_mask)


def _amp(x: LossInputs, c: ObjectiveConfig) -> Tensor:
    return amplification_loss(x.adapter_weights or [])


def _attn(x: LossInputs, c: ObjectiveConfig) -> Tensor:
    return attention_loss(x.attentions or (), x.attention_mask, x.query_index)


Term = Callable[[LossInputs, ObjectiveConfig], Tensor]
TERMS: dict[str, Term] = {"ce": _ce, "kd": _kd, "fa": _fa, "amp": _amp, "attn": _attn}  # needs: TERM_NEEDS


def register_term(name: str, needs: tuple[str, ...] = ()) -> Callable[[Term], Term]:
    """Decorator: ``fn(inputs: LossInputs, config) -> scalar`` becomes the loss term ``name``,
    weighted by ``objective.extra[name]``; ``needs`` (of ``NEEDS``) is what the training step must
    put into ``inputs`` for it (``teacher``: teacher logits and features, and a teacher stage;
    ``attentions``: eager attention probabilities; ``adapter_weights``: the LoRA matrices)."""
    if name in TERMS:
        raise ValueError(f"loss term {name!r} is registered already")
    unknown = sorted(set(needs) - set(NEEDS))
    if unknown:
        raise ValueError(f"loss term {name!r}: unknown needs {unknown}; valid: {', '.join(NEEDS)}")

    def register(fn: Term) -> Term:
        TERMS[name], TERM_NEEDS[name] = fn, frozenset(needs)
        return fn
    return register

def weights(config: ObjectiveConfig, progress: float = 0.0) -> dict[str, float]:
    """Each non-zero term's weight at ``progress`` (the share of training done) under
    ``config.schedule`` (which changes nothing without a teacher term)."""
    teacher, ce = schedule_factors(config.schedule, progress, config.hold) if config.needs_teacher else (1.0, 1.0)
    scale = {name: teacher for name in config.terms if "teacher" in TERM_NEEDS[name]} | {"ce": ce}
    return {name: config.weight(name) * scale.get(name, 1.0) for name in config.terms}


def compose(config: ObjectiveConfig, inputs: LossInputs, progress: float = 0.0) -> tuple[Tensor, dict[str, Tensor]]:
    """Return ``(total, {term: unweighted value})``: ``sum_k w_k(progress) * term_k`` over the
    terms with non-zero weight (a term whose scheduled weight is 0 now is not computed)."""
    if not config.terms:
        raise ValueError("every loss weight is 0: nothing to optimise")
    now = {name: w for name, w in weights(config, progress).items() if w > 0}
    values = {name: TERMS[name](inputs, config) for name in now}
    total = sum(now[name] * value for name, value in values.items())
    return total, values
