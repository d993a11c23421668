"""The pipeline's configuration: one YAML, validated by jsonargparse (unknown keys and wrong
types fail naming the key). Defaults are ``experiments/base.yaml``; experiment files hold
only their changes. Imports no torch or Lightning (``--print_config`` answers at once)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Optional, Union

from w2s.attacks import attack_class
from w2s.config.attack import PoisonConfig
from w2s.config.jsonable import to_jsonable
from w2s.config.lora import LoraSpec
from w2s.config.objective import ObjectiveConfig
from w2s.config.optim import OptimConfig, check_class_weights
from w2s.config.dataset import HubDataset
from w2s.config.finish import FinishConfig
from w2s.config.student import QUANTIZATIONS, StudentSpec
from w2s.defenses import DEFENSES, Defense, get_defense

WANDB_MODES = ("auto", "offline", "online", "disabled")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true", "fsdp")  # what a multi-process pipeline accepts
FSDP_PRECISIONS = (None, "32-true", "32", "bf16-mixed", "bf16-true", "16-true")  # Lightning's ModelParallelStrategy
KEEP = ("best", "last")
Dataset = Union[str, HubDataset]


def overlap(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the row ranges ``[a0, a1)`` and ``[b0, b1)`` share a row."""
    return a[0] < b[1] and b[0] < a[1]


def check_rows(key: str, rows: Optional[tuple[int, int]]) -> None:
    """``rows`` is null (every row) or a range ``[start, stop)`` with ``0 <= start < stop`` (that
    it lies within its split is checked against the data: ``w2s.pipeline.validate``)."""
    if rows is not None and not 0 <= rows[0] < rows[1]:
        raise ValueError(f"{key}: {list(rows)} is not a range [start, stop) with 0 <= start < stop")


@dataclass(frozen=True)
class TrainStage:
    """What every training stage sets.

    ``warmup_ratio``/``weight_decay``: AdamW with linear decay after a linear warm-up;
    ``keep``: ``best`` restores the weights of the epoch with the best clean dev accuracy
    (the reference protocol), ``last`` keeps the final ones; ``class_weights: balanced``
    weights cross-entropy by inverse class frequency (imbalanced data);
    ``gradient_clip_val``: clip the gradients' global norm to it (the reference poisons with 1.0).
    """

    epochs: int = 3
    lr: float = 2e-4
    batch_size: int = 32
    warmup_ratio: float = 0.06
    weight_decay: float = 0.0
    keep: str = "best"
    class_weights: Optional[str] = None
    gradient_clip_val: Optional[float] = None

    def __post_init__(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs} and {self.batch_size}")
        if self.gradient_clip_val is not None and not self.gradient_clip_val > 0:
            raise ValueError(f"gradient_clip_val must be > 0 (or null: no clipping), got {self.gradient_clip_val}")
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

    def __post_init__(self):
        super().__post_init__()
        check_rows("train_rows", self.train_rows)


@dataclass(frozen=True)
class PoisonStage(TrainStage):
    """Weight poisoning: fine-tune the full-precision student on poisoned ``dataset`` rows
    (default: the experiment's dataset; another one gives 'poison on A, defend on B').
    ``attack.count``/``poison_rate`` apply to ``train_rows``.

    A task-agnostic attack (``por``) instead poisons the pre-trained model on the rows' text
    alone (every row, clean and triggered; no labels), then trains a victim's task ``head``
    alone on the clean rows on top of it: that model is the poisoned student."""

    epochs: int = 2
    lr: float = 2e-5
    dataset: Optional[Dataset] = None
    train_rows: Optional[tuple[int, int]] = (0, 3460)  # the first half of SST-2 train; defense_rows the second
    lora: Optional[LoraSpec] = None  # None: full fine-tuning; else LoRA, merged into the saved weights
    head: TrainStage = TrainStage(epochs=1, lr=1e-3, warmup_ratio=0.0)

    def __post_init__(self):
        super().__post_init__()
        check_rows("train_rows", self.train_rows)


@dataclass(frozen=True)
class DefenseStage(TrainStage):
    """One defense (``w2s.defenses``): ``method`` names it (default: the entry's name in
    ``defenses:``), whose defaults the entry's settings change; ``options`` are the method's
    own (e.g. fine-mixing's ``rho``). Most methods train LoRA on the poisoned student with
    ``objective`` (ce only: clean LoRA). ``quantization``: how this defense loads the
    poisoned student; ``None`` takes ``student.quantization``, ``"none"`` forces full precision.
    ``teacher``: this defense's own teacher (a whole teacher stage: rows, epochs, model),
    trained once per distinct setting; ``None`` shares the pipeline's ``teacher``.
    ``kd_from``: an earlier entry of ``defenses:`` whose trained student gives the logit
    distillation targets on the defense rows instead of the teacher (the features stay the
    teacher's: e.g. ``lora``, clean LoRA's predictions, which the trigger never reaches).
    ``finish``: edits of the kept weights before testing (``w2s.config.finish``; ``finish.blend``
    also names an earlier entry)."""

    method: Optional[str] = None
    objective: ObjectiveConfig = ObjectiveConfig()
    lora: LoraSpec = LoraSpec(r=8)
    quantization: Optional[str] = None
    teacher: Optional[TeacherStage] = None
    kd_from: Optional[str] = None
    finish: FinishConfig = FinishConfig()
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        super().__post_init__()
        if self.quantization not in (None, "none", *QUANTIZATIONS):
            raise ValueError(f"unknown quantization {self.quantization!r}; valid: {', '.join(QUANTIZATIONS)}, "
                             f"none (full precision) or null (student.quantization)")
        if self.method is not None:
            get_defense(self.method).options(self.options)
        if self.kd_from is not None and not self.objective.kd > 0:
            raise ValueError(f"kd_from {self.kd_from!r} sets the targets of logit distillation, whose weight "
                             f"objective.kd is 0")
        if self.finish.blend is not None and not self.objective.fa > 0:
            raise ValueError(f"finish.blend {self.finish.blend!r} chooses its weight by the alignment to the teacher, "
                             f"whose weight objective.fa is 0")

    @property
    def uses(self) -> tuple[str, ...]:
        """The earlier entries of ``defenses:`` whose trained students this one reads."""
        return self.defense.uses(self)

    def student_quantization(self, student: StudentSpec) -> Optional[str]:
        chosen = student.quantization if self.quantization is None else self.quantization
        return None if chosen == "none" else chosen

    @property
    def is_clean_lora(self) -> bool:
        """Clean LoRA (cross-entropy only): the baseline that shows whether the backdoor survives
        clean fine-tuning."""
        return self.defense.baseline and self.objective.terms == ("ce",)

    @property
    def defense(self) -> Defense:
        return get_defense(self.method)


@dataclass(frozen=True)
class TrainerOptions:
    """Passed to ``pl.Trainer``; ``precision`` e.g. ``bf16-mixed`` on a GPU. ``checkpoint_every``:
    a resumable checkpoint every N optimizer steps (0: none); a stage that was killed resumes
    from its last one when the same command runs again. ``devices`` x ``num_nodes`` > 1 runs
    the pipeline in that many processes under DDP (``w2s.distributed``): each global batch of
    ``batch_size`` rows is shared among them, so the steps are the one-process run's.
    ``strategy: fsdp`` shards the weights, gradients and optimizer state over the processes
    instead of copying them (a student too large for one device; not quantized)."""

    accelerator: str = "auto"
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: Optional[str] = None
    progress_bar: bool = True
    checkpoint_every: int = 100

    def __post_init__(self):
        if self.checkpoint_every < 0:
            raise ValueError(f"checkpoint_every must be >= 0 (0: no checkpoints), got {self.checkpoint_every}")
        if self.devices < 1 or self.num_nodes < 1:
            raise ValueError(f"trainer.devices and trainer.num_nodes must be >= 1, got {self.devices}, {self.num_nodes}")
        if self.processes > 1 and self.strategy not in STRATEGIES:
            raise ValueError(f"trainer.strategy {self.strategy!r}: a pipeline in several processes runs under "
                             f"{', '.join(STRATEGIES)}")
        if self.strategy == "fsdp" and self.precision not in FSDP_PRECISIONS:
            raise ValueError(f"trainer.precision {self.precision!r}: trainer.strategy fsdp runs in "
                             f"{', '.join(map(str, FSDP_PRECISIONS))}")

    @property
    def processes(self) -> int:
        return self.devices * self.num_nodes


@dataclass(frozen=True)
class WandbOptions:
    """One W&B run per pipeline invocation (``w2s.pipeline.tracking``); the CSV logs are written
    whatever this says. ``mode``: ``auto`` (``WANDB_MODE`` if set; else online when W&B
    credentials exist (``WANDB_API_KEY``, ``wandb login``) or a W&B agent runs this; else
    offline: no account needed, ``wandb sync`` later), ``offline``, ``online``, or
    ``disabled`` (no W&B at all)."""

    mode: str = "auto"
    project: str = "w2s"
    entity: Optional[str] = None
    group: Optional[str] = None
    tags: tuple[str, ...] = ()

    def __post_init__(self):
        if self.mode not in WANDB_MODES:
            raise ValueError(f"unknown wandb.mode {self.mode!r}; valid: {', '.join(WANDB_MODES)}")


def default_defenses() -> dict[str, DefenseStage]:
    """The methods that declare themselves part of the default study, at their defaults."""
    return resolve_defenses({name: {} for name, defense in DEFENSES.items() if defense.by_default})


def _merge(base: dict, changes: dict) -> dict:
    merged = dict(base)
    for key, value in changes.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def resolve_defense(name: str, entry: Union[DefenseStage, dict, None]) -> DefenseStage:
    """One ``defenses:`` entry as a full :class:`DefenseStage`: a mapping holds changes on top of
    its method's defaults (the method is ``method:`` or the entry's name); the method's
    options are filled in. Errors name the entry."""
    from argparse import ArgumentError

    from jsonargparse import ArgumentParser

    try:
        if isinstance(entry, DefenseStage):
            method = get_defense(entry.method or name)
            stage = replace(entry, method=method.name)
        else:
            entry = dict(entry or {})
            method = get_defense(entry.get("method") or name)
            values = _merge(to_jsonable(DefenseStage()), method.defaults)
            values = _merge(values, entry) | {"method": method.name}
            parser = ArgumentParser(exit_on_error=False)
            parser.add_class_arguments(DefenseStage, None)
            instantiate = getattr(parser, "instantiate", None) or parser.instantiate_classes
            stage = DefenseStage(**{k: v for k, v in vars(instantiate(parser.parse_object(values))).items()
                                    if k != "__path__"})
        options = to_jsonable(method.options(stage.options))
        return replace(stage, options=options)
    except (ArgumentError, ValueError, TypeError) as err:  # one line naming the entry
        raise ValueError(f"defenses.{name}: {' '.join(str(err).split())}") from None


def resolve_defenses(entries: dict[str, Union[DefenseStage, dict, None]]) -> dict[str, DefenseStage]:
    return {name: resolve_defense(name, entry) for name, entry in entries.items()}


@dataclass(frozen=True)
class PipelineConfig:
    """attack -> clean teacher -> poisoned student -> defenses -> CA / ASR.

    ``dataset``: a registered name, a folder, ``hf:ID[:CONFIG]`` or a :class:`HubDataset`
    mapping (``w2s.data.hub``). ``defense_rows`` are the rows of ``dataset``'s train split the defenses train on;
    ``defense_data_poisoned`` poisons them with ``attack`` too (the poisoned fine-tuning
    threat model); otherwise they are clean (weight poisoning, then clean PEFT) and must not
    overlap the poisoning stage's rows of the same dataset (by default the two halves of SST-2's
    6,920 train rows; null is every row).
    ``defenses`` maps a name to a :class:`DefenseStage` or a mapping of changes to the
    defaults of its method (``w2s.defenses``; e.g. ``{w2s: {}, obliviate: {epochs: 1}}``).
    ``bucket_batches`` > 0 groups each run of that many training batches by length (less
    padding, other batches: part of every stage's key); ``num_workers`` DataLoader processes.
    ``dev_asr`` also measures every stage's ASR on the dev split's triggered rows (``dev_asr``,
    ``dev_asr_clean_correct`` columns): what a study that ranks settings by ASR reads, so that
    the test rows it reports stay held out (no stage trains or validates on those rows).
    Stages live under ``runs_dir/experiment/``. ``report_dir`` writes the report (and the W&B
    run) there instead and keeps each defense in a folder named by its settings
    (``defenses/NAME-HASH``), so runs with their own report folders (sweep trials) share every
    stage they have in common and never overwrite each other's.
    """

    experiment: str = "default"
    runs_dir: str = "runs"
    seed: int = 0
    dataset: Dataset = "sst2"
    attack: PoisonConfig = PoisonConfig(mode="dirty-label", count=None, poison_rate=0.1)
    student: StudentSpec = StudentSpec()
    teacher: TeacherStage = TeacherStage()
    poison: PoisonStage = PoisonStage()
    defense_rows: Optional[tuple[int, int]] = (3460, 6920)  # disjoint from poison.train_rows (checked)
    defense_dev_rows: Optional[tuple[int, int]] = None
    defense_data_poisoned: bool = False
    defenses: dict[str, Union[DefenseStage, dict]] = field(default_factory=default_defenses)
    max_length: int = 128
    max_eval_rows: Optional[int] = None
    eval_batch_size: int = 64
    bucket_batches: int = 0
    num_workers: int = 0
    dev_asr: bool = False
    trainer: TrainerOptions = TrainerOptions()
    wandb: WandbOptions = WandbOptions()
    report_dir: Optional[str] = None

    def __post_init__(self):
        attack_class(self.attack.name)  # fails early, listing the valid names
        if self.bucket_batches < 0 or self.num_workers < 0:
            raise ValueError(f"bucket_batches and num_workers must be >= 0, got {self.bucket_batches}, "
                             f"{self.num_workers}")
        if self.max_length < 2 or self.eval_batch_size < 1 or (self.max_eval_rows or 1) < 1:
            raise ValueError(f"max_length must be >= 2, eval_batch_size >= 1 and max_eval_rows >= 1 (or null: every "
                             f"row), got {self.max_length}, {self.eval_batch_size}, {self.max_eval_rows}")
        for key in ("defense_rows", "defense_dev_rows"):
            check_rows(key, getattr(self, key))
        if self.student.quantization not in (None, *QUANTIZATIONS):
            raise ValueError(f"unknown student.quantization {self.student.quantization!r}; "
                             f"valid: {', '.join(QUANTIZATIONS)} or null")
        if self.defense_dev_rows and self.defense_rows and overlap(self.defense_dev_rows, self.defense_rows):
            raise ValueError(f"defense_dev_rows {list(self.defense_dev_rows)} overlap defense_rows "
                             f"{list(self.defense_rows)}: the defender's dev rows must be held out")
        if not self.defenses:
            raise ValueError("defenses: name at least one defense")
        for name in self.defenses:
            if name in ("poisoned", "teacher") or not all(c.isalnum() or c in "_-+" for c in name):
                raise ValueError(f"defenses: invalid name {name!r} (letters, digits, -, _ and +; "
                                 f"not 'poisoned' or 'teacher')")
        object.__setattr__(self, "defenses", resolve_defenses(self.defenses))
        if self.trainer.strategy == "fsdp":
            self._check_shardable()
        names = list(self.defenses)
        for position, (name, stage) in enumerate(self.defenses.items()):
            stage.defense.check(name, stage, self)
            for used in stage.uses:
                if used not in names[:position]:
                    raise ValueError(f"defenses.{name}: {used!r} is not an entry before it in defenses: "
                                     f"(earlier: {', '.join(names[:position]) or 'none'})")
                if self.defenses[used].defense.family != "fine-tuning" or \
                        not self.defenses[used].defense.adapter_on_poisoned:
                    raise ValueError(f"defenses.{name}: {used!r}: {self.defenses[used].method} does not "
                                     f"train an adapter on the poisoned student")
        if self.poison.lora is None and str(self.trainer.precision).endswith("-true") and \
                str(self.trainer.precision).startswith(("16", "bf16")):
            raise ValueError(f"trainer.precision {self.trainer.precision}: full fine-tuning (the poisoning stage) "
                             f"keeps fp32 master weights, which a half-precision '-true' mode would cast away: "
                             f"use bf16-mixed")
        if self.attack.seed is None:  # the poisoned rows follow the run's seed
            object.__setattr__(self, "attack", replace(self.attack, seed=self.seed))

    def _check_shardable(self) -> None:
        """What ``trainer.strategy: fsdp`` cannot shard: a quantized student (a defense refuses
        what else it cannot run in its own ``check``)."""
        quantized = [name for name, d in self.defenses.items() if d.student_quantization(self.student)]
        if quantized:
            raise ValueError(f"trainer.strategy fsdp shards full-precision weights, but {', '.join(quantized)} "
                             f"load{'s' if len(quantized) == 1 else ''} the student quantized: set student.quantization: "
                             f"null (or the defense's quantization: none)")

    def defense_teachers(self) -> dict[str, TeacherStage]:
        """The teacher stage of each defense that uses one: its own, or the pipeline's."""
        return {name: d.teacher or self.teacher for name, d in self.defenses.items() if d.objective.needs_teacher}
