"""The defense interface and registry.

A defense is a name in a pipeline's ``defenses:`` block (or the ``method:`` of an entry).
It sets its defaults (changes from ``DefenseStage``'s, as a config mapping: an entry holds
only its own changes on top), its own options (a dataclass, set under ``options:``), what it
refuses in a configuration (:meth:`Defense.check`), the lines it adds under the results table
(:meth:`Defense.notes`) and how it runs, given a :class:`StageContext` by the pipeline (a
defense never imports the pipeline). The default ``run`` trains LoRA on the poisoned student
with the entry's objective; a defense that does more overrides it. Adding a defense is one
module (or package) with a ``@register_defense`` class and one import line in
``w2s/defenses/__init__.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Protocol, TypeVar

if TYPE_CHECKING:
    from w2s.pipeline.config import DefenseStage, PipelineConfig


# fine-tuning: trains the student (or an adapter) to unlearn; filter: flags and rejects inputs at
# test time; detector: a verdict on a model or an adapter (PEFTGuard, LMSanitator's detection)
FAMILIES = ("fine-tuning", "filter", "detector")


@dataclass(frozen=True)
class NoOptions:
    """A defense without options of its own."""


class StageContext(Protocol):
    """What the pipeline hands a defense's :meth:`Defense.run` (``w2s.pipeline.context``).

    ``config`` the whole run's settings; ``name`` the entry's name; ``poisoned`` the poisoned
    student's folder; ``teacher`` the teacher's folder when the objective uses one; ``run`` the
    stage's record (``metrics``, ``info``, ``folder``, ``writer``: False in the processes beside
    process 0, which write nothing); ``adapters``, for a detector (which runs after every other
    stage): the LoRA adapters those stages saved, by their row of the results table."""

    config: PipelineConfig
    name: str
    poisoned: Path
    teacher: Optional[Path]
    run: Any
    adapters: dict[str, Path]

    def student(self, stage: DefenseStage, poisoned: Optional[Path] = None):
        """The poisoned student (``poisoned``: another folder), loaded the way the defender chooses."""

    def data(self, stage: DefenseStage, student, teacher: Optional[Path] = None):
        """The defender's rows, validated on clean rows only; with the teacher's tokens if given."""

    def fit_and_test(self, module, stage: DefenseStage, data, **trainer_options) -> tuple[dict, dict]:
        """Fit, then test on the experiment's test rows; metrics go to ``run`` (``trainer_options``:
        passed to the Trainer)."""

    def save(self, module) -> None:
        """The trained artifact, in the stage's folder."""


class Defense:
    name: str = ""
    family: str = "fine-tuning"  # one of FAMILIES: what the method does to the poisoned student
    summary: str = ""  # one line: what it does and where it comes from
    baseline: bool = False  # plain fine-tuning: with cross-entropy alone it shows whether the backdoor survives
    by_default: bool = False  # in the study a config without a defenses: block runs (clean LoRA and W2S)
    adapter_on_poisoned: bool = True  # its saved adapter applies to the poisoned student (another entry's kd_from)
    defaults: dict[str, Any] = {}
    Options: type = NoOptions

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.family not in FAMILIES:
            raise ValueError(f"{cls.__name__}.family {cls.family!r} is not one of {', '.join(FAMILIES)}")

    def options(self, values: dict[str, Any]):
        """The typed options from an entry's ``options:`` mapping (unknown keys fail)."""
        valid = [f.name for f in fields(self.Options)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for defense {self.name}; "
                             f"valid: {', '.join(valid) or 'none'}")
        return self.Options(**values)

    def check(self, name: str, stage: DefenseStage, config: PipelineConfig) -> None:
        """Refuse (``ValueError``) what this defense cannot run in ``config``; nothing by default."""

    def uses(self, stage: DefenseStage) -> tuple[str, ...]:
        """The earlier entries of ``defenses:`` whose saved adapters this entry reads (handed over as
        ``StageContext.adapters``; their stages' keys are part of its own): ``kd_from`` and
        ``finish.blend`` by default."""
        return tuple(dict.fromkeys(name for name in (stage.kd_from, stage.finish.blend) if name))

    def scores(self, manifest: dict) -> dict[str, dict[str, float]]:
        """A detector's finished stage -> ``{row of the results table: {column: value}}``, the
        columns it adds to other stages' rows; none by default."""
        return {}

    def notes(self, name: str, manifest: dict) -> list[str]:
        """Lines under the results table about this defense's finished stage; none by default."""
        return []

    def run(self, context: StageContext, stage: DefenseStage) -> None:
        """Train and evaluate this defense on the poisoned student; record into ``context.run``."""
        self.train_lora(context, stage)

    def train_lora(self, context: StageContext, stage: DefenseStage, poisoned: Optional[Path] = None,
                   adapter: Optional[Path] = None) -> None:
        """LoRA on the poisoned student (``poisoned``: another folder) with the entry's objective;
        ``adapter``: a trained one instead, not trained again (only ``finish`` edits it)."""
        from w2s.lit.unlearn import UnlearnModule

        student = context.student(stage, poisoned)
        data = context.data(stage, student, context.teacher)
        used = {name: str(context.adapters[name]) for name in stage.uses}  # the earlier entries' adapters
        module = UnlearnModule(student, str(context.teacher) if context.teacher else None, stage.lora, stage.objective,
                               data.num_labels, stage.optim(), context.config.attack.target_label,
                               data.class_weights(stage.class_weights), used.get(stage.kd_from), stage.finish,
                               used.get(stage.finish.blend), str(adapter) if adapter else None)
        context.fit_and_test(module, stage, data, **({"limit_train_batches": 0} if adapter else {}))
        context.save(module)


DEFENSES: dict[str, Defense] = {}
D = TypeVar("D", bound=type[Defense])


def register_defense(name: str) -> Callable[[D], D]:
    def decorate(cls: D) -> D:
        cls.name = name
        DEFENSES[name] = cls()
        return cls
    return decorate


def get_defense(name: str) -> Defense:
    if name not in DEFENSES:
        raise ValueError(f"unknown defense {name!r}; valid: {', '.join(sorted(DEFENSES))}")
    return DEFENSES[name]
