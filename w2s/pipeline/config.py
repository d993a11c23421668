"""The pipeline's configuration: one YAML, validated by jsonargparse (unknown keys and wrong
types fail naming the key). Defaults are ``experiments/base.yaml``; experiment files hold
only their changes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

from students.build import StudentSpec
from students.lora import LoraSpec
from students.quantization import QUANTIZATIONS
from w2s.attacks.poison import PoisonConfig
from w2s.data.hub import HubDataset
from w2s.lit.base import OptimConfig
from w2s.losses.class_weights import check_class_weights
from w2s.losses.objective import ObjectiveConfig

LOGGERS = ("csv", "wandb")
KEEP = ("best", "last")
Dataset = Union[str, HubDataset]


@dataclass(frozen=True)
class TrainStage:
    """What every training stage sets.

    ``warmup_ratio``/``weight_decay``: AdamW with linear decay after a linear warm-up;
    ``keep``: ``best`` restores the weights of the epoch with the best clean dev accuracy
    (the reference protocol), ``last`` keeps the final ones; ``class_weights: balanced``
    weights cross-entropy by inverse class frequency (imbalanced data).
    """

    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    keep: str = "best"
    class_weights: Optional[str] = None

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.keep not in KEEP:
            raise ValueError(f"unknown keep {self.keep!r}; valid: {', '.join(KEEP)}")
        check_class_weights(self.class_weights)
        self.optim()

    def optim(self) -> OptimConfig:
        return OptimConfig(lr=self.lr, weight_decay=self.weight_decay, warmup_ratio=self.warmup_ratio)


@dataclass(frozen=True)
class TeacherStage(TrainStage):
    """Full fine-tuning of the small clean teacher (reference: 5 epochs, lr 2e-5, batch 32)."""

    epochs: int = 3
    lr: float = 5e-5
    model: str = "minilm-l6"
    train_rows: Optional[tuple[int, int]] = None


@dataclass(frozen=True)
class PoisonStage(TrainStage):
    """Weight poisoning: fine-tune the full-precision student on poisoned ``dataset`` rows
    (default: the experiment's dataset; another one gives 'poison on A, defend on B').
    ``attack.count``/``poison_rate`` apply to ``train_rows``."""

    epochs: int = 2
    lr: float = 2e-5
    dataset: Optional[Dataset] = None
    train_rows: Optional[tuple[int, int]] = None
    lora: Optional[LoraSpec] = None  # None: full fine-tuning; else LoRA, merged into the saved weights


@dataclass(frozen=True)
class DefenseStage(TrainStage):
    """One defense: LoRA on the poisoned student with an objective (kd = fa = 0: clean LoRA).
    ``quantization``: how this defense loads the poisoned student; ``None`` takes
    ``student.quantization``, ``"none"`` forces full precision."""

    objective: ObjectiveConfig = ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0)
    lora: LoraSpec = LoraSpec(r=8)
    quantization: Optional[str] = None

    def __post_init__(self):
        super().__post_init__()
        if self.quantization not in (None, "none", *QUANTIZATIONS):
            raise ValueError(f"unknown quantization {self.quantization!r}; valid: {', '.join(QUANTIZATIONS)}, "
                             f"none (full precision) or null (student.quantization)")

    def student_quantization(self, student: StudentSpec) -> Optional[str]:
        chosen = student.quantization if self.quantization is None else self.quantization
        return None if chosen == "none" else chosen

    @property
    def is_clean_lora(self) -> bool:
        """Cross-entropy only: the baseline that shows whether the backdoor survives clean fine-tuning."""
        return not self.objective.needs_teacher


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

    ``dataset``: a registered name, a folder, ``hf:ID[:CONFIG]`` or a :class:`HubDataset`
    mapping (``w2s.data.hub``). ``defense_rows`` are the rows of ``dataset``'s train split the defenses train on;
    ``defense_data_poisoned`` poisons them with ``attack`` too (the poisoned fine-tuning
    threat model); otherwise they are clean (weight poisoning, then clean PEFT).
    """

    experiment: str = "default"
    runs_dir: str = "runs"
    seed: int = 0
    dataset: Dataset = "sst2"
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
        if self.student.quantization not in (None, *QUANTIZATIONS):
            raise ValueError(f"unknown student.quantization {self.student.quantization!r}; "
                             f"valid: {', '.join(QUANTIZATIONS)} or null")
        if self.logger not in LOGGERS:
            raise ValueError(f"unknown logger {self.logger!r}; valid: {', '.join(LOGGERS)}")
        if not self.defenses:
            raise ValueError("defenses: name at least one defense")
        for name in self.defenses:
            if name in ("poisoned", "teacher") or not name.replace("_", "").replace("-", "").isalnum():
                raise ValueError(f"defenses: invalid name {name!r} (letters, digits, - and _; "
                                 f"not 'poisoned' or 'teacher')")
