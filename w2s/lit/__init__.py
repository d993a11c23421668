"""LightningModules: they orchestrate (forward, loss, log); models come from teachers/ and students/."""
from w2s.lit.base import ClassifierModule, OptimConfig
from w2s.lit.callbacks import RestoreBest, RngState
from w2s.lit.poison import PoisonModule
from w2s.lit.teacher import TeacherModule
from w2s.lit.unlearn import UnlearnModule

__all__ = ["ClassifierModule", "OptimConfig", "PoisonModule", "RestoreBest", "RngState", "TeacherModule", "UnlearnModule"]
