"""The optimizer's settings (``w2s.lit.base.ClassifierModule.configure_optimizers``) and the
class weighting of cross-entropy."""
from __future__ import annotations

from dataclasses import dataclass

CLASS_WEIGHTS = ("balanced",)  # how cross-entropy weights the classes (w2s.losses.class_weights)


def check_class_weights(mode: str | None) -> None:
    """``mode`` must be ``None`` or one of ``CLASS_WEIGHTS``."""
    if mode is not None and mode not in CLASS_WEIGHTS:
        raise ValueError(f"unknown class_weights {mode!r}; valid: {', '.join(CLASS_WEIGHTS)} or null")


@dataclass(frozen=True)
class OptimConfig:
    """AdamW over the trainable parameters; linear decay after ``warmup_ratio`` of the steps
    (the reference: 6% for the teacher, none for the defense, weight decay 0.01 there)."""

    lr: float = 2e-5
    weight_decay: float = 0.0
    warmup_ratio: float = 0.06

    def __post_init__(self):
        if self.lr <= 0 or not 0 <= self.warmup_ratio < 1 or self.weight_decay < 0:
            raise ValueError(f"invalid optimizer settings: lr={self.lr} (> 0), warmup_ratio={self.warmup_ratio} "
                             f"([0, 1)), weight_decay={self.weight_decay} (>= 0)")
