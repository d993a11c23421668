"""The end-to-end pipeline: config, cached stages, results."""
from w2s.config.pipeline import DefenseStage, PipelineConfig, PoisonStage, TeacherStage, TrainerOptions
from w2s.pipeline.run import run_pipeline

__all__ = ["DefenseStage", "PipelineConfig", "PoisonStage", "TeacherStage", "TrainerOptions", "run_pipeline"]
