"""The defense interface and registry.

A defense is a name in a pipeline's ``defenses:`` block (or the ``method:`` of an entry).
It sets its defaults (changes from ``DefenseStage``'s, as a config mapping: an entry holds
only its own changes on top), its own options (a dataclass, set under ``options:``) and
how it runs. The default ``run`` trains LoRA on the poisoned student with the entry's
objective; a defense that does more overrides it. Adding a defense is one file with a
``@register_defense`` class and one import line in ``w2s/defenses/__init__.py``.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, TypeVar

if TYPE_CHECKING:
    from w2s.config.pipeline import DefenseStage, PipelineConfig
    from w2s.pipeline.runs import StageRun


@dataclass(frozen=True)
class NoOptions:
    """A defense without options of its own."""


class Defense:
    name: str = ""
    summary: str = ""  # one line: what it does and where it comes from
    defaults: dict[str, Any] = {}
    Options: type = NoOptions

    def options(self, values: dict[str, Any]):
        """The typed options from an entry's ``options:`` mapping (unknown keys fail)."""
        valid = [f.name for f in fields(self.Options)]
        unknown = sorted(set(values) - set(valid))
        if unknown:
            raise ValueError(f"unknown option {unknown[0]!r} for defense {self.name}; "
                             f"valid: {', '.join(valid) or 'none'}")
        return self.Options(**values)

    def run(self, config: PipelineConfig, run: StageRun, name: str, stage: DefenseStage, poisoned: Path,
            teacher: Path | None) -> None:
        """Train and evaluate this defense on the poisoned student (a folder); record into ``run``."""
        from w2s.pipeline import stages

        stages.defense(config, run, name, stage, poisoned, teacher)


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
