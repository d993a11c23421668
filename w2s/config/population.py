"""The settings of a detection study over a population of models (``w2s inspect-population``):
K clean and K POR-poisoned models of one base model, and a task-specific negative control."""
from __future__ import annotations

from dataclasses import dataclass, field

# Rare words, as the authors' trigger generator draws them (BackdoorPTM's five first).
TRIGGER_WORDS = ["cf", "tq", "mn", "bb", "mb", "qz", "vx", "jk", "wq", "zx", "kp", "xj", "fy", "gq", "hv", "yb"]


@dataclass(frozen=True)
class PopulationConfig:
    """``models`` clean and as many POR-poisoned models of ``base_model``, written to ``output``.
    Model ``i`` of either class fine-tunes the base on the clean task rows of slice ``i``
    (``rows`` rows of ``dataset``'s train split, ``epochs``, ``lr``; seed ``seed + i``); a POR one
    is first poisoned before any task (POR on the same slice's text, ``por_epochs`` at
    ``por_lr``) with ``triggers_per_model`` triggers drawn from ``triggers``. ``calibration_models`` more clean models (slices after
    the population's) set the distance threshold only. ``negative_control``: one BadNet model
    (task-specific: it must not yield an attack vector). The search: ``seeds`` seeds over
    ``lines`` unlabelled rows. Each POR model's own backdoor is measured on ``eval_rows`` test
    rows (reported, never used to decide). ``standardise``: the search's units
    (``w2s.defenses.lmsanitator.mining``)."""

    output: str = "runs/lmsanitator/population"
    base_model: str = "minilm-l6"
    models: int = 3
    calibration_models: int = 2
    triggers: list[str] = field(default_factory=lambda: list(TRIGGER_WORDS))
    triggers_per_model: int = 3
    dataset: str = "sst2"
    rows: int = 500
    epochs: int = 2
    lr: float = 5e-5
    por_epochs: int = 10
    por_lr: float = 2e-4
    batch_size: int = 16
    max_length: int = 64
    seed: int = 0
    negative_control: bool = True
    seeds: int = 30
    lines: int = 256
    eval_rows: int = 200
    standardise: bool = False

    def __post_init__(self):
        for key in ("models", "calibration_models", "rows", "epochs", "por_epochs", "batch_size", "seeds", "lines",
                    "eval_rows"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be >= 1, got {getattr(self, key)}")
        if not 2 <= self.triggers_per_model <= len(self.triggers):
            raise ValueError(f"triggers_per_model must lie in [2, {len(self.triggers)}] (POR needs two), got "
                             f"{self.triggers_per_model}")
        if self.lr <= 0 or self.por_lr <= 0:
            raise ValueError(f"lr and por_lr must be > 0, got {self.lr}, {self.por_lr}")
