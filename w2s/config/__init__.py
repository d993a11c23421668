"""Every setting's definition: dataclasses with their types, defaults and checks. Pure: nothing
here imports torch or Lightning (``tests/test_cli.py`` pins it), so reading, checking and
printing a configuration answers at once; what runs it imports the heavy libraries."""
from w2s.config.jsonable import to_jsonable
from w2s.config.lora import LoraSpec
from w2s.config.objective import ObjectiveConfig
from w2s.config.optim import OptimConfig
from w2s.config.pipeline import (DefenseStage, PipelineConfig, PoisonStage, TeacherStage, TrainerOptions, TrainStage,
                                 WandbOptions, default_defenses, resolve_defense, resolve_defenses)
from w2s.config.student import StudentSpec

__all__ = ["DefenseStage", "LoraSpec", "ObjectiveConfig", "OptimConfig", "PipelineConfig", "PoisonStage", "StudentSpec",
           "TeacherStage", "TrainStage", "TrainerOptions", "WandbOptions", "default_defenses", "resolve_defense",
           "resolve_defenses", "to_jsonable"]
