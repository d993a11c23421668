"""The objective's settings: term weights and how the terms align and move over training
(the terms themselves: ``w2s.losses.objective``)."""
from __future__ import annotations

from dataclasses import dataclass

TERM_NAMES = ("ce", "kd", "fa", "amp", "attn")  # w2s.losses.objective.TERMS computes each
FA_MODES = ("per_sample", "compat")
FA_POOLS = ("read", "mean", "tokens")
FA_TARGETS = ("teacher", "fitted")
SCHEDULES = ("constant", "warmup", "decay", "align_first")  # w2s.losses.schedule
TEACHER_TERMS = ("kd", "fa")


def check_schedule(name: str) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Term weights and their options. Defaults are neutral: cross-entropy alone (clean LoRA);
    each method sets its own weights (``w2s.defenses``: W2S 1 / 1 / 10 normalised, Obliviate's
    amp 3e-3 and attn 3e-2), and ``w2s.losses.preset`` holds the reference's per attack. ``schedule`` moves the
    weights over training (``w2s.losses.schedule``); ``fa_layer`` is the student layer whose
    states are aligned (-1: the last, as in the paper; -k: k-th from the end; 0: the
    embeddings); ``fa_pool`` how: ``read`` the state the head reads (the paper), ``mean`` the
    mean over real tokens, ``tokens`` every real token against the teacher's vector;
    ``fa_target`` against what: ``teacher`` the teacher's own projected feature (the paper),
    ``fitted`` the teacher's feature mapped by a ridge regression fitted on the clean training
    rows to the poisoned student's pooled states (``w2s.losses.projection``)."""

    ce: float = 1.0
    kd: float = 0.0
    fa: float = 0.0
    amp: float = 0.0
    attn: float = 0.0
    temperature: float = 2.0
    fa_mode: str = "per_sample"
    normalize_features: bool = False
    schedule: str = "constant"
    fa_layer: int = -1
    fa_pool: str = "read"
    fa_target: str = "teacher"

    def __post_init__(self):
        for key, valid in (("fa_mode", FA_MODES), ("fa_pool", FA_POOLS), ("fa_target", FA_TARGETS)):
            if getattr(self, key) not in valid:
                raise ValueError(f"unknown {key} {getattr(self, key)!r}; valid: {', '.join(valid)}")
        if self.fa_mode == "compat" and (self.fa_pool, self.fa_target, self.fa_layer) != ("read", "teacher", -1):
            raise ValueError("fa_mode compat is the reference code's own alignment (every token of the last layer): "
                             "it takes no fa_pool, fa_target or fa_layer")
        check_schedule(self.schedule)
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in TERM_NAMES:
            if getattr(self, name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {getattr(self, name)}")

    @property
    def needs_teacher(self) -> bool:
        return self.kd > 0 or self.fa > 0

    @property
    def needs_attentions(self) -> bool:
        return self.attn > 0

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms with non-zero weight."""
        return tuple(name for name in TERM_NAMES if getattr(self, name) > 0)
