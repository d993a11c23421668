"""PSIM's own settings (``options:`` of a ``psim`` entry)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MODULES = ("p-tuning", "lora")


@dataclass(frozen=True)
class PsimOptions:
    """``threshold``: flag an input whose top probability under the module exceeds it (0.7 in the
    reference); ``false_alarm``: instead, set the threshold so that this share of the clean dev
    rows is flagged (a trigger-blind calibration); ``module``: ``p-tuning`` (``virtual_tokens``
    virtual tokens) or ``lora`` (the entry's ``lora``); ``label_seed``: seed of the random labels;
    ``encoder_hidden_size``: the P-tuning prompt encoder's width (null: the student's hidden
    size; the reference's is 128)."""

    threshold: float = 0.7
    false_alarm: Optional[float] = None
    module: str = "p-tuning"
    virtual_tokens: int = 5
    label_seed: int = 0
    encoder_hidden_size: Optional[int] = None

    def __post_init__(self):
        if self.module not in MODULES:
            raise ValueError(f"unknown psim module {self.module!r}; valid: {', '.join(MODULES)}")
        if self.false_alarm is not None and not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"psim false_alarm must lie in (0, 1), got {self.false_alarm}")
        if self.encoder_hidden_size is not None and self.encoder_hidden_size < 1:
            raise ValueError(f"psim encoder_hidden_size must be >= 1 (or null), got {self.encoder_hidden_size}")
        if not 0.0 < self.threshold < 1.0 or self.virtual_tokens < 1:
            raise ValueError(f"psim needs 0 < threshold < 1 and virtual_tokens >= 1, got {self.threshold}, "
                             f"{self.virtual_tokens}")
