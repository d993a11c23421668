"""LoRA's settings (peft builds it: ``students.lora``)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


VARIANTS = ("lora", "rslora", "dora")


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyperparameters. ``target_modules=None`` uses peft's default for the
    architecture (LLaMA: q_proj, v_proj; BERT: query, value; GPT-2: c_attn);
    ``"all-linear"`` targets every linear layer. The classification head is always trained
    in full (peft's SEQ_CLS task saves ``score`` / ``classifier``). ``variant``: ``lora``;
    ``rslora`` (scale alpha / sqrt(r), peft's ``use_rslora``); ``dora`` (weight-decomposed,
    peft's ``use_dora``)."""

    r: int = 8
    alpha: Optional[int] = None  # None: alpha = r (scale 1), as in the measured runs
    dropout: float = 0.1
    target_modules: Optional[list[str] | str] = None
    variant: str = "lora"

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if self.alpha is not None and self.alpha < 1:
            raise ValueError(f"LoRA alpha must be >= 1 (or null: alpha = r), got {self.alpha}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must lie in [0, 1), got {self.dropout}")
        if self.variant not in VARIANTS:
            raise ValueError(f"LoRA variant must be one of {', '.join(VARIANTS)}, got {self.variant!r}")
