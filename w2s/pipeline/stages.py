"""The pipeline's stages: each builds a DataModule and a LightningModule, fits, tests, saves.

Every stage is evaluated on the experiment dataset's test split (CA) and its triggered
non-target rows (ASR), so all rows of the results table are comparable.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl

from teachers.model import TeacherSpec
from w2s.data.datamodule import W2SDataModule
from w2s.lit.base import ClassifierModule, OptimConfig, RestoreBest
from w2s.lit.poison import PoisonModule
from w2s.lit.teacher import TeacherModule
from w2s.lit.unlearn import UnlearnModule
from w2s.pipeline.config import DefenseStage, PipelineConfig
from w2s.pipeline.runs import StageRun


def make_trainer(config: PipelineConfig, run: StageRun | None, epochs: int = 1, stage: str = "") -> pl.Trainer:
    """A Trainer with the configured hardware; when fitting, best-clean-dev restoring and
    the CSV logger (plus W&B if selected) under the stage folder."""
    options = config.trainer
    loggers = False
    if run is not None:
        loggers = [pl.loggers.CSVLogger(save_dir=run.folder, name="logs", version="")]
        if config.logger == "wandb":
            loggers.append(pl.loggers.WandbLogger(project="w2s", name=f"{config.experiment}/{stage}",
                                                  save_dir=str(run.folder), offline=True))
    return pl.Trainer(max_epochs=epochs, accelerator=options.accelerator, devices=options.devices,
                      strategy=options.strategy, precision=options.precision, logger=loggers,
                      callbacks=[RestoreBest()] if run is not None else [], enable_checkpointing=False,
                      enable_progress_bar=options.progress_bar, enable_model_summary=False,
                      num_sanity_val_steps=0)


def datamodule(config: PipelineConfig, tokenizer: str, teacher_tokenizer: str | None = None,
               dataset: str | None = None, rows=None, poison_train: bool = False, batch_size: int = 32) -> W2SDataModule:
    return W2SDataModule(dataset or config.dataset, tokenizer=tokenizer, teacher_tokenizer=teacher_tokenizer,
                         attack=config.attack, poison_train=poison_train, train_rows=rows, eval_rows=config.eval_rows,
                         max_length=config.max_length, batch_size=batch_size,
                         eval_batch_size=config.eval_batch_size, seed=config.seed)


def fit_and_test(config: PipelineConfig, run: StageRun, name: str, module: ClassifierModule,
                 train: W2SDataModule, epochs: int, evaluation: W2SDataModule | None = None) -> None:
    """Fit on ``train``, then test on ``evaluation`` (default: ``train``'s test split); metrics go to ``run``."""
    pl.seed_everything(config.seed, verbose=False)
    trainer = make_trainer(config, run, epochs, name)
    trainer.fit(module, train)
    for logger in trainer.loggers:  # one W&B run per stage: close it before the folder is renamed
        if isinstance(logger, pl.loggers.WandbLogger):
            logger.experiment.finish()
    clean, triggered = make_trainer(config, None).test(module, evaluation or train, verbose=False)
    run.metrics = {"ca": clean["test/ca"], "asr": triggered["test/asr"],
                   "asr_clean_correct": triggered.get("test/asr_clean_correct"),  # None: pre-paraphrased
                   "majority_share": clean["test/majority_share"]}
    run.trainable_params = sum(p.numel() for p in module.parameters() if p.requires_grad)


def poison(config: PipelineConfig, run: StageRun) -> None:
    stage = config.poison
    data = datamodule(config, config.student.name, dataset=stage.dataset, rows=stage.train_rows,
                      poison_train=True, batch_size=stage.batch_size)
    module = PoisonModule(config.student, data.num_labels, stage.lora, OptimConfig(lr=stage.lr),
                          config.attack.target_label)
    elsewhere = stage.dataset not in (None, config.dataset)  # poison on A, evaluate on the experiment's B
    evaluation = datamodule(config, config.student.name) if elsewhere else None
    fit_and_test(config, run, "poisoned", module, data, stage.epochs, evaluation)
    module.save_artifact(run.folder / "model")


def teacher(config: PipelineConfig, run: StageRun) -> None:
    stage = config.teacher
    data = datamodule(config, stage.model, rows=stage.train_rows, batch_size=stage.batch_size)
    spec = TeacherSpec(stage.model, student=config.student.name, num_labels=data.num_labels,
                       trust_remote_code=config.student.trust_remote_code)
    module = TeacherModule(spec, OptimConfig(lr=stage.lr), config.attack.target_label)
    fit_and_test(config, run, "teacher", module, data, stage.epochs)
    module.save_artifact(run.folder / "model")


def defense(config: PipelineConfig, run: StageRun, name: str, stage: DefenseStage, poisoned: Path,
            teacher_folder: Path | None) -> None:
    student = replace(config.student, name=str(poisoned))
    teacher_tokenizer = str(teacher_folder / "encoder") if teacher_folder is not None else None
    data = datamodule(config, student.name, teacher_tokenizer, rows=config.defense_rows,
                      poison_train=config.defense_data_poisoned, batch_size=stage.batch_size)
    module = UnlearnModule(student, str(teacher_folder) if teacher_folder else None, stage.lora, stage.objective,
                           data.num_labels, OptimConfig(lr=stage.lr), config.attack.target_label)
    fit_and_test(config, run, name, module, data, stage.epochs)
    module.save_artifact(run.folder / "model")

