"""LMSanitator's own settings (``options:`` of an ``lmsanitator`` entry)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

MINE_ON = ("pretrained", "victim")
VICTIMS = ("lora", "prompt")


@dataclass(frozen=True)
class LmsanitatorOptions:
    """``victim``: what the victim tunes: ``lora`` (the entry's ``lora``) or ``prompt``, a soft
    prompt of ``prompt_tokens`` virtual tokens and the head, the model frozen (the paper's
    setting; ``students.prompt``); ``mine_on``: where attack vectors are mined: ``pretrained``, the model the victim started
    from (the paper's setting: a prompt-tuned victim keeps it frozen), or ``victim``, the
    fine-tuned victim itself (LoRA moves the backbone); ``calibration``: a file ``w2s inspect
    --calibrate`` wrote (null: calibrate when the stage runs, on the student's clean pre-trained
    model, ``student.name``); ``agreement``: the sign agreement above which an input is flagged;
    ``seeds`` and ``lines``: the search's seeds and unlabelled defender rows; ``full``: search
    every seed (more vectors) instead of stopping at the first; ``standardise``: search and monitor
    in units of the clean outputs' spread (``w2s.defenses.lmsanitator.mining``)."""

    victim: str = "lora"
    prompt_tokens: int = 20
    mine_on: str = "pretrained"
    calibration: Optional[str] = None
    agreement: float = 0.8
    seeds: int = 30
    lines: int = 256
    full: bool = False
    standardise: bool = False

    def __post_init__(self):
        if self.victim not in VICTIMS:
            raise ValueError(f"unknown lmsanitator victim {self.victim!r}; valid: {', '.join(VICTIMS)}")
        if self.prompt_tokens < 1:
            raise ValueError(f"lmsanitator prompt_tokens must be >= 1, got {self.prompt_tokens}")
        if self.mine_on not in MINE_ON:
            raise ValueError(f"unknown lmsanitator mine_on {self.mine_on!r}; valid: {', '.join(MINE_ON)}")
        if not 0.5 <= self.agreement < 1.0:
            raise ValueError(f"lmsanitator agreement must lie in [0.5, 1), got {self.agreement}")
        if self.seeds < 1 or self.lines < 2:
            raise ValueError(f"lmsanitator needs seeds >= 1 and lines >= 2, got {self.seeds}, {self.lines}")
