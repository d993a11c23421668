"""How to poison: which attack, which rows, which label (the attack's name is checked against
``w2s.attacks`` where the settings are composed, ``w2s.pipeline.config``; poisoning itself:
``w2s.data.poisoning``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MODES = ("clean-label", "dirty-label")
SELECTIONS = ("random", "first")


@dataclass(frozen=True)
class PoisonConfig:
    """How to poison: ``name`` the attack (``w2s.attacks``; ``attack_args``: its options). Give
    exactly one of ``count`` (rows) and ``poison_rate`` (share of the rows being poisoned: a
    stage's ``train_rows`` are cut first, so the count is what that stage trains on).
    ``selection='first'`` takes the first eligible rows (the reference code); ``'random'``
    samples them with ``seed`` (``None``: the run's seed, so that runs with different seeds
    poison different rows; 0 outside a run)."""

    name: str = "badnet"
    mode: str = "clean-label"
    target_label: int = 0
    count: int | None = 1000
    poison_rate: float | None = None
    selection: str = "random"
    seed: int | None = None
    attack_args: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown poison mode {self.mode!r}; valid: {', '.join(MODES)}")
        if self.selection not in SELECTIONS:
            raise ValueError(f"unknown selection {self.selection!r}; valid: {', '.join(SELECTIONS)}")
        if self.target_label < 0:
            raise ValueError(f"target_label must be >= 0, got {self.target_label}")
        if (self.count is None) == (self.poison_rate is None):
            raise ValueError("give exactly one of count and poison_rate (set the other to null)")
        if self.count is not None and self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")
        if self.poison_rate is not None and not 0.0 <= self.poison_rate <= 1.0:
            raise ValueError(f"poison_rate must lie in [0, 1], got {self.poison_rate}")

    def num_poisoned(self, num_rows: int) -> int:
        return self.count if self.count is not None else round(self.poison_rate * num_rows)
