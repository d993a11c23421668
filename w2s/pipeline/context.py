"""What the pipeline hands a defense: the run's settings, where its inputs are, and the
pipeline's own steps (load the student the defender's way, the defender's data, fit and test,
record, save), so that a defense never imports the pipeline (``w2s.defenses.base.StageContext``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from students.build import StudentSpec
from w2s.pipeline.config import DefenseStage, PipelineConfig
from w2s.data.datamodule import W2SDataModule
from w2s.lit.base import ClassifierModule
from w2s.pipeline import stages
from w2s.pipeline.runs import StageRun


@dataclass
class PipelineContext:
    """One defense stage of a pipeline run: ``name`` in ``defenses:``, the poisoned student's
    folder, the teacher's folder (when its objective uses one), ``run`` (its record), and for a
    detector the adapters of the stages before it."""

    config: PipelineConfig
    run: StageRun
    name: str
    poisoned: Path
    teacher: Path | None = None
    adapters: dict[str, Path] = field(default_factory=dict)

    def student(self, stage: DefenseStage, poisoned: Path | None = None) -> StudentSpec:
        return stages.defender_student(self.config, self.run, stage, poisoned or self.poisoned)

    def data(self, stage: DefenseStage, student: StudentSpec, teacher: Path | None = None) -> W2SDataModule:
        return stages.defense_data(self.config, stage, student, teacher)

    def fit_and_test(self, module: ClassifierModule, stage: DefenseStage, data: W2SDataModule,
                     **trainer_options) -> tuple[dict, dict]:
        return stages.fit_and_test(self.config, self.run, self.name, module, stage, data, **trainer_options)

    def save(self, module: ClassifierModule) -> None:
        self.run.save(module, "model")
