"""The pipeline's configuration: one YAML, validated by jsonargparse (unknown keys and wrong
types fail naming the key). Defaults are ``experiments/base.yaml``; experiment files hold
only their changes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from students.build import StudentSpec
from students.lora import LoraSpec
from w2s.attacks.poison import PoisonConfig
from w2s.losses.objective import ObjectiveConfig

LOGGERS = ("csv", "wandb")


@dataclass(frozen=True)
class TeacherStage:
    """Full fine-tuning of the small clean teacher (reference: 5 epochs, lr 2e-5, batch 32)."""

    model: str = "minilm-l6"
    train_rows: Optional[tuple[int, int]] = None
    epochs: int = 3
    lr: float = 5e-5
    batch_size: int = 32


@dataclass(frozen=True)
class PoisonStage:
    """Weight poisoning: fine-tune the student on poisoned ``dataset`` rows (default: the
    experiment's dataset; another one gives 'poison on A, defend on B')."""

    dataset: Optional[str] = None
    train_rows: Optional[tuple[int, int]] = None
    epochs: int = 2
    lr: float = 2e-5
    batch_size: int = 32
    lora: Optional[LoraSpec] = None  # None: full fine-tuning


@dataclass(frozen=True)
class DefenseStage:
    """One defense: LoRA on the poisoned student with an objective (kd = fa = 0: clean LoRA)."""

    objective: ObjectiveConfig = ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0)
    lora: LoraSpec = LoraSpec(r=8)
    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 32


@dataclass(frozen=True)
class TrainerOptions:
    """Passed to ``pl.Trainer``; ``precision`` e.g. ``bf16-mixed`` on a GPU."""

    accelerator: str = "auto"
    devices: int = 1
    strategy: str = "auto"
    precision: Optional[str] = None
    progress_bar: bool = True


def default_defenses() -> dict[str, DefenseStage]:
    return {"lora": DefenseStage(),
            "w2s": DefenseStage(objective=ObjectiveConfig(ce=1.0, kd=1.0, fa=10.0, normalize_features=True),
                                lora=LoraSpec(r=512))}


@dataclass(frozen=True)
class PipelineConfig:
    """attack -> clean teacher -> poisoned student -> defenses -> CA / ASR.

    ``defense_rows`` are the rows of ``dataset``'s train split the defenses train on;
    ``defense_data_poisoned`` poisons them with ``attack`` too (the poisoned fine-tuning
    threat model); otherwise they are clean (weight poisoning, then clean PEFT).
    """

    experiment: str = "default"
    runs_dir: str = "runs"
    seed: int = 0
    dataset: str = "sst2"
    attack: PoisonConfig = PoisonConfig(mode="dirty-label", count=None, poison_rate=0.1)
    student: StudentSpec = StudentSpec()
    teacher: TeacherStage = TeacherStage()
    poison: PoisonStage = PoisonStage()
    defense_rows: Optional[tuple[int, int]] = None
    defense_data_poisoned: bool = False
    defenses: dict[str, DefenseStage] = field(default_factory=default_defenses)
    max_length: int = 128
    eval_rows: Optional[int] = None
    eval_batch_size: int = 64
    trainer: TrainerOptions = TrainerOptions()
    logger: str = "csv"

    def __post_init__(self):
        if self.trainer.devices != 1:
            raise ValueError("trainer.devices: the pipeline runs in one process; for multi-device (DDP) training "
                             "run the stages with `w2s teacher|poison|unlearn fit --trainer.devices N`")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; valid: {', '.join(LOGGERS)}")
        if not self.defenses:
            raise ValueError("defenses: name at least one defense")
        for name in self.defenses:
            if name in ("poisoned", "teacher") or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"defenses: invalid name {name!r} (letters, digits, - and _; "
                                 f"not 'poisoned' or 'teacher')")
