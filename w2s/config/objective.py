"""The objective's settings: term weights and how the terms align and move over training
(the terms themselves: ``w2s.losses.objective``)."""
from __future__ import annotations

from dataclasses import dataclass, field

NEEDS = ("teacher", "attentions", "adapter_weights")  # what a term can ask of the training step
BUILTIN_TERMS = ("ce", "kd", "fa", "amp", "attn")  # each has a weight field; w2s.losses.objective.TERMS computes it
# Every loss term and what it needs; a term registered later (``w2s.losses.register_term``) adds
# itself here and takes its weight from ``ObjectiveConfig.extra``.
TERM_NEEDS: dict[str, frozenset[str]] = {"ce": frozenset(), "kd": frozenset({"teacher"}), "fa": frozenset({"teacher"}),
                                         "amp": frozenset({"adapter_weights"}), "attn": frozenset({"attentions"})}
FA_MODES = ("per_sample", "compat")
FA_POOLS = ("read", "mean", "tokens")
FA_TARGETS = ("teacher", "fitted")
SCHEDULES = ("constant", "warmup", "decay", "align_first")  # w2s.losses.schedule


def check_schedule(name: str, hold: float = 0.0) -> None:
    if name not in SCHEDULES:
        raise ValueError(f"unknown schedule {name!r}; valid: {', '.join(SCHEDULES)}")
    if not 0.0 <= hold < 1.0:
        raise ValueError(f"hold must lie in [0, 1), got {hold}")


@dataclass(frozen=True)
class ObjectiveConfig:
    """Term weights and their options. Defaults are neutral: cross-entropy alone (clean LoRA);
    each method sets its own weights (``w2s.defenses``: W2S 1 / 1 / 10 normalised, Obliviate's
    amp 3e-3 and attn 3e-2; ``w2s.defenses.weak_to_strong.REFERENCE_OBJECTIVES``: the
    reference's per attack). ``schedule`` moves the weights over training (``w2s.losses.schedule``);
    ``hold`` the share of training ``decay`` keeps them whole before decaying (1/2 of two
    epochs: decayed only in the second); ``fa_layer`` is the student layer whose
    states are aligned (-1: the last, as in the paper; -k: k-th from the end; 0: the
    embeddings); ``fa_pool`` how: ``read`` the state the head reads (the paper), ``mean`` the
    mean over real tokens, ``tokens`` every real token against the teacher's vector;
    ``fa_target`` against what: ``teacher`` the teacher's own projected feature (the paper),
    ``fitted`` the teacher's feature mapped by a ridge regression fitted on the clean training
    rows to the poisoned student's pooled states (``w2s.losses.projection``). ``extra``: the
    weights of terms registered beyond the five built in, by name."""

    ce: float = 1.0
    kd: float = 0.0
    fa: float = 0.0
    amp: float = 0.0
    attn: float = 0.0
    temperature: float = 2.0
    fa_mode: str = "per_sample"
    normalize_features: bool = False
    schedule: str = "constant"
    hold: float = 0.0
    fa_layer: int = -1
    fa_pool: str = "read"
    fa_target: str = "teacher"
    extra: dict[str, float] = field(default_factory=dict)

    def __post_init__(self):
        for key, valid in (("fa_mode", FA_MODES), ("fa_pool", FA_POOLS), ("fa_target", FA_TARGETS)):
            if getattr(self, key) not in valid:
                raise ValueError(f"unknown {key} {getattr(self, key)!r}; valid: {', '.join(valid)}")
        if self.fa_mode == "compat" and (self.fa_pool, self.fa_target, self.fa_layer) != ("read", "teacher", -1):
            raise ValueError("fa_mode compat is the reference code's own alignment (every token of the last layer): "
                             "it takes no fa_pool, fa_target or fa_layer")
        check_schedule(self.schedule, self.hold)
        if self.hold and self.schedule != "decay":
            raise ValueError(f"hold {self.hold} delays the decay schedule's decay; schedule is {self.schedule!r}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        for name in self.extra:
            if name in BUILTIN_TERMS or name not in TERM_NEEDS:
                raise ValueError(f"objective.extra: {name!r} is " + (f"a built-in term: set objective.{name}"
                                 if name in BUILTIN_TERMS else "not a registered loss term (w2s.losses.register_term)"))
        for name in (*BUILTIN_TERMS, *self.extra):
            if self.weight(name) < 0:
                raise ValueError(f"loss weight {name} must be >= 0, got {self.weight(name)}")

    def weight(self, name: str) -> float:
        return getattr(self, name) if name in BUILTIN_TERMS else self.extra.get(name, 0.0)

    @property
    def terms(self) -> tuple[str, ...]:
        """The terms with non-zero weight: the built-in ones in order, then the registered ones."""
        return tuple(name for name in (*BUILTIN_TERMS, *sorted(self.extra)) if self.weight(name) > 0)

    @property
    def needs(self) -> frozenset[str]:
        """What the terms with non-zero weight ask of the training step (``NEEDS``)."""
        return frozenset().union(*(TERM_NEEDS[name] for name in self.terms))

    @property
    def needs_teacher(self) -> bool:
        return "teacher" in self.needs

    @property
    def needs_attentions(self) -> bool:
        return "attentions" in self.needs
