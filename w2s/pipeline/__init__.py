"""The end-to-end pipeline: its settings (``config``, read by ``load``: pure), cached stages,
results. ``run_pipeline`` is imported when first used, so that reading and checking settings
imports no torch or Lightning."""
from w2s.pipeline.config import DefenseStage, PipelineConfig, PoisonStage, TeacherStage, TrainerOptions
from w2s.pipeline.load import load_config

__all__ = ["DefenseStage", "PipelineConfig", "PoisonStage", "TeacherStage", "TrainerOptions", "load_config",
           "run_pipeline"]


def __getattr__(name: str):
    if name == "run_pipeline":
        from w2s.pipeline.run import run_pipeline

        return run_pipeline
    raise AttributeError(f"module 'w2s.pipeline' has no attribute {name!r}")
