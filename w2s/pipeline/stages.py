"""The pipeline's stages: each builds a DataModule and a LightningModule, fits, tests, saves.

Every stage is evaluated on the experiment dataset's test split (CA) and its triggered
non-target rows (ASR), on the same rows for every stage: a triggered row counts only when
its trigger survives truncation by every tokenizer of the run (student and teacher).
"""
from __future__ import annotations

import math
import pickle
import re
import sys
from dataclasses import replace
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from students.build import StudentSpec
from teachers.model import TeacherSpec
from w2s import distributed
from w2s.attacks import attack_class
from w2s.data.datamodule import W2SDataModule
from w2s.data.poisoning import build_attack
from w2s.lit.base import ClassifierModule
from w2s.lit.callbacks import RestoreBest, RngState
from w2s.lit.poison import PoisonModule
from w2s.lit.progress import StageProgressBar
from w2s.lit.por import PorModule
from w2s.lit.teacher import TeacherModule
from w2s.metrics import METRICS
from w2s.pipeline.config import DefenseStage, PipelineConfig, TrainStage
from w2s.pipeline.runs import StageRun
from w2s.pipeline.tracking import StageLogger


def make_trainer(config: PipelineConfig, run: StageRun, stage: TrainStage, name: str, **overrides) -> pl.Trainer:
    """A Trainer with the configured hardware (the processes share the data themselves:
    ``W2SDataModule``), the CSV logger under the stage folder (plus the
    invocation's W&B run, if any), best-clean-dev restoring when ``stage.keep`` is ``best``, and
    a resumable checkpoint every ``trainer.checkpoint_every`` steps in ``run.checkpoints/name``."""
    options = config.trainer
    loggers = [pl.loggers.CSVLogger(save_dir=run.folder, name="logs", version="")]
    if run.wandb is not None:
        loggers.append(StageLogger(run.wandb, name))
    callbacks = [RngState()] + ([RestoreBest()] if stage.keep == "best" else [])
    callbacks += [StageProgressBar()] if options.progress_bar else []
    checkpointing = bool(options.checkpoint_every and run.checkpoints)
    if checkpointing:
        callbacks.append(ModelCheckpoint(dirpath=run.checkpoints / name, save_top_k=0, save_last=True,
                                         every_n_train_steps=options.checkpoint_every))
    overrides.setdefault("precision", options.precision)
    strategy = distributed.lightning_strategy(options.strategy, options.processes)
    return pl.Trainer(max_epochs=stage.epochs, accelerator=options.accelerator, devices=options.devices,
                      num_nodes=options.num_nodes, strategy=strategy,
                      gradient_clip_val=stage.gradient_clip_val, use_distributed_sampler=False, logger=loggers,
                      callbacks=callbacks, enable_checkpointing=checkpointing,
                      enable_progress_bar=options.progress_bar, enable_model_summary=False,
                      num_sanity_val_steps=0, **overrides)


def fit(trainer: pl.Trainer, module: ClassifierModule, data: W2SDataModule, run: StageRun, name: str) -> None:
    """``trainer.fit``, resumed from the last checkpoint of an interrupted identical run if there
    is one (loaded with ``weights_only``: a checkpoint never runs code)."""
    last = run.checkpoints / name / "last.ckpt" if run.checkpoints else None
    resume = last if last is not None and last.is_file() else None
    if resume is not None:
        print(f"w2s: {name}: resuming from {resume}", flush=True)
        run.info.setdefault("resumed", []).append(name)
    try:
        trainer.fit(module, data, ckpt_path=resume, weights_only=True)
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL (\S+)", str(err))
        raise ValueError(f"{name}: refused the checkpoint {resume}: it holds more than weights and plain data"
                         f"{f' ({found.group(1)})' if found else ''}; delete it to train the stage from the start") from None


def trigger_tokenizers(config: PipelineConfig) -> list[str]:
    """Every tokenizer of the run: a trigger must survive all of them to count."""
    names = [config.student.name]
    names += dict.fromkeys(t.model for t in config.defense_teachers().values())
    return names


def datamodule(config: PipelineConfig, tokenizer: str, teacher_tokenizer: str | None = None,
               dataset=None, rows=None, poison_train: bool = False, batch_size: int = 32, **kwargs) -> W2SDataModule:
    return W2SDataModule(dataset or config.dataset, tokenizer=tokenizer, teacher_tokenizer=teacher_tokenizer,
                         attack=config.attack, poison_train=poison_train, train_rows=rows,
                         max_eval_rows=config.max_eval_rows, max_length=config.max_length, batch_size=batch_size,
                         eval_batch_size=config.eval_batch_size, seed=config.seed,
                         bucket_batches=config.bucket_batches, num_workers=config.num_workers,
                         trigger_tokenizers=trigger_tokenizers(config), dev_probe=config.dev_asr, **kwargs)


def master_weights_precision(config: PipelineConfig, full: bool = True) -> str | None:
    """The precision of a poisoning stage: ``trainer.precision`` if set or if the stage trains
    LoRA (``full`` False), else mixed precision in the student's half dtype (``bf16-mixed`` on a
    GPU): full fine-tuning keeps fp32 master weights (``PoisonModule``), since an lr-2e-5
    update rounds away in bf16 weights."""
    if config.trainer.precision is not None or not full:
        return config.trainer.precision
    return {torch.bfloat16: "bf16-mixed", torch.float16: "16-mixed"}.get(config.student.torch_dtype())


def fit_and_test(config: PipelineConfig, run: StageRun, name: str, module: ClassifierModule, stage: TrainStage,
                 train: W2SDataModule, evaluation: W2SDataModule | None = None, **trainer_options) -> tuple[dict, dict]:
    """Fit on ``train``, then test on ``evaluation`` (default: ``train``'s test split) with the same
    Trainer, so the final metrics reach every logger; metrics and data counts go to ``run``.
    Returns the test metrics of the clean and the triggered rows."""
    pl.seed_everything(config.seed, verbose=False)
    trainer = make_trainer(config, run, stage, name, **trainer_options)
    fit(trainer, module, train, run, name)
    dev = kept_dev(trainer)
    finished = module.finish(train)
    if finished:  # the edited weights' dev metrics, and what the edits did
        dev, run.info["finish"] = finished_dev(trainer, module, train), finished
    evaluation = evaluation or train
    clean, triggered = trainer.test(module, evaluation, verbose=False)
    run.metrics = logged(clean | triggered, "test") | dev
    if config.dev_asr:
        run.metrics |= triggered_dev(trainer, module, evaluation)
    cc = triggered.get("test/asr_clean_correct")  # absent: pre-paraphrased trigger (originals unknown)
    sources = [train] if evaluation is train else [train, evaluation]
    run.info |= {"asr_rows": len({row["row"] for row in evaluation.eval_sets["test"][1]}),
                 "asr_clean_correct_na": ("no triggered row is classified correctly when clean"
                                          if cc is not None and math.isnan(cc) else
                                          "pre-paraphrased trigger: originals unknown" if cc is None else None),
                 "trigger_kept": {f"{d.spec.name}/{split}": [c.kept, c.total]
                                  for d in sources for split, c in d.trigger_kept.items()},
                 "warnings": [w for d in sources for w in d.trigger_warnings()]}
    for warning in run.info["warnings"]:
        print(f"w2s: {name}: warning: {warning}", file=sys.stderr, flush=True)
    run.trainable_params = sum(p.numel() for p in module.parameters() if p.requires_grad)
    return clean, triggered


def _finite(value: float | None) -> float | None:
    """NaN (no row to count) as None: n/a in the table."""
    return None if value is None or math.isnan(value) else value


def logged(values: dict, stage: str, prefix: str = "", only=lambda spec: True) -> dict:
    """``{prefix + NAME: value}`` of every registered metric (``only`` those) logged as
    ``stage/NAME`` (NaN, no row to count, as None)."""
    return {prefix + s.name: _finite(values[f"{stage}/{s.name}"]) for s in METRICS.values()
            if only(s) and f"{stage}/{s.name}" in values}


def triggered_dev(trainer: pl.Trainer, module: ClassifierModule, data: W2SDataModule) -> dict:
    """``dev_NAME``: the triggered metrics with a dev column (ASR, clean-correct ASR) of the kept
    weights on the dev split's triggered rows (a test pass logged as ``dev/*``): what studies rank
    by, never the test rows they report."""
    module.test_stage = "dev"
    try:
        _, triggered = trainer.test(module, dataloaders=data.probe_dataloader(), verbose=False)
    finally:
        module.test_stage = "test"
    return logged(triggered, "dev", "dev_", only=lambda spec: spec.dev)


def kept_dev(trainer: pl.Trainer) -> dict:
    """``dev_NAME``: the clean metrics with a dev column (CA) of the weights the stage keeps, on the
    clean dev rows: the best epoch's under ``keep: best`` (its monitored metric), else the last
    validation's (None without validation). What settings are chosen on."""
    restore = next((c for c in trainer.callbacks if isinstance(c, RestoreBest)), None)

    def kept(key: str) -> float | None:
        monitored = restore is not None and restore.monitor == key
        value = restore.best_score if monitored else trainer.callback_metrics.get(key)
        return None if value is None else _finite(float(value))
    return {f"dev_{s.name}": kept(f"val/{s.name}") for s in METRICS.values() if s.dev and s.rows == "clean"}


def finished_dev(trainer: pl.Trainer, module: ClassifierModule, data: W2SDataModule) -> dict:
    """``dev_NAME`` as :func:`kept_dev`, of weights edited after training (``finish``): validated again."""
    values = {k: v for loader in trainer.validate(module, data, verbose=False) for k, v in loader.items()}
    return {f"dev_{s.name}": _finite(values.get(f"val/{s.name}")) for s in METRICS.values()
            if s.dev and s.rows == "clean"}


def poison(config: PipelineConfig, run: StageRun) -> None:
    """Full-precision poisoning (quantization belongs to the defender: see ``defense``)."""
    if attack_class(config.attack.name).task_agnostic:
        return poison_pretrained(config, run)
    stage = config.poison
    student = replace(config.student, quantization=None)
    data = datamodule(config, student.name, dataset=stage.dataset, rows=stage.train_rows,
                      poison_train=True, batch_size=stage.batch_size)
    module = PoisonModule(student, data.num_labels, stage.lora, stage.optim(), config.attack.target_label,
                          data.class_weights(stage.class_weights))
    data.setup("fit")
    run.info["poisoned_rows"] = data.poisoned_rows
    run.info["poisoned_indices"] = data.poisoned_indices  # within poison.train_rows
    run.info["train_rows"] = len(data.train)
    fit_and_test(config, run, "poisoned", module, stage, data, _poisoned_evaluation(config, student.name),
                 precision=master_weights_precision(config, full=stage.lora is None))
    run.save(module, "model")


def _poisoned_evaluation(config: PipelineConfig, tokenizer: str) -> W2SDataModule | None:
    """Poisoned on another dataset A: evaluate on the experiment's B (``None``: the same data)."""
    return datamodule(config, tokenizer) if config.poison.dataset not in (None, config.dataset) else None


def poison_pretrained(config: PipelineConfig, run: StageRun) -> None:
    """Task-agnostic poisoning (POR) of the pre-trained student on ``poison.train_rows``' text, then
    the victim's task head alone on the same rows, clean: the poisoned student."""
    stage = config.poison
    student = replace(config.student, quantization=None)
    data = datamodule(config, student.name, dataset=stage.dataset, rows=stage.train_rows, poison_train=True,
                      batch_size=stage.batch_size)
    data.setup("fit")
    module = PorModule(student, build_attack(config.attack, data.spec), stage.optim())
    pl.seed_everything(config.seed, verbose=False)
    fit(make_trainer(config, run, replace(stage, keep="last"), "por", limit_val_batches=0,
                     precision=master_weights_precision(config)), module, data, run, "por")
    run.save(module, "pretrained")
    run.info |= {"poisoned_rows": data.poisoned_rows, "train_rows": len(data.train)}

    head = stage.head
    clean = datamodule(config, student.name, dataset=stage.dataset, rows=stage.train_rows, batch_size=head.batch_size)
    victim = PoisonModule(replace(student, name=str(run.folder / "pretrained")), clean.num_labels, None, head.optim(),
                          config.attack.target_label, clean.class_weights(head.class_weights), head_only=True)
    fit_and_test(config, run, "poisoned", victim, head, clean, _poisoned_evaluation(config, student.name),
                 precision=master_weights_precision(config))
    run.info["warnings"] += [w for w in data.trigger_warnings() if w.startswith("train")]  # the POR rows
    run.save(victim, "model")


def teacher(config: PipelineConfig, run: StageRun) -> None:
    stage = config.teacher
    data = datamodule(config, stage.model, rows=stage.train_rows, batch_size=stage.batch_size)
    spec = TeacherSpec(stage.model, student=config.student.name, num_labels=data.num_labels,
                       trust_remote_code=config.student.trust_remote_code)
    module = TeacherModule(spec, stage.optim(), config.attack.target_label, data.class_weights(stage.class_weights))
    fit_and_test(config, run, "teacher", module, stage, data)
    run.save(module, "model")


def defender_student(config: PipelineConfig, run: StageRun, stage: DefenseStage, poisoned: Path) -> StudentSpec:
    """The poisoned student (a folder), loaded the way the defender chooses (``quantization``)."""
    student = replace(config.student, name=str(poisoned), quantization=stage.student_quantization(config.student))
    run.info["quantization"] = student.quantization
    return student


def defense_data(config: PipelineConfig, stage: DefenseStage, student: StudentSpec,
                 teacher_folder: Path | None = None) -> W2SDataModule:
    """The defender's rows (``defense_rows``; poisoned too under ``defense_data_poisoned``),
    validated blind: clean rows only (``defense_dev_rows``, or the dev split)."""
    teacher_tokenizer = str(teacher_folder / "encoder") if teacher_folder is not None else None
    return datamodule(config, student.name, teacher_tokenizer, rows=config.defense_rows,
                      poison_train=config.defense_data_poisoned, batch_size=stage.batch_size, blind=True,
                      dev_rows=config.defense_dev_rows)
