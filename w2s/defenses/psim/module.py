"""PSIM's LightningModule (Zhao et al., arXiv 2402.12168; shuaizhao95/PSIM): an input filter.

A parameter-efficient module (P-tuning with 5 virtual tokens, or LoRA) on top of the frozen
poisoned model is trained on clean rows whose labels are drawn at random, so it learns to be
unsure on clean inputs; a trigger still drives the poisoned weights to one confident class.
At test time an input whose top class probability under the module exceeds ``threshold``
(or the threshold that flags a ``false_alarm`` share of the clean dev rows) is flagged and
rejected; the others get the poisoned model's own prediction.

Predictions are the task classes ``0..C-1`` or ``C`` for *rejected*, so CA (rejected clean
rows count as wrong) and ASR (rejected triggered rows count as stopped) are after filtering;
``{val,test}/false_alarm_rate`` (clean rows flagged) and ``{val,test}/detection_rate``
(triggered rows flagged) are logged too.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from students.build import StudentSpec, build_student
from students.forward import model_inputs
from students.lora import LoraSpec, attach_lora
from w2s.artifacts import atomic_folder
from w2s.data.datamodule import CLEAN
from w2s.defenses.psim.options import PsimOptions
from w2s.lit.base import EVAL_STAGES, OptimConfig
from w2s.lit.student import StudentModule
from w2s.metrics import BalancedAccuracy, FlagRate, MacroF1


class PsimModule(StudentModule):
    """Args:
        student: the poisoned student (a folder).
        options: threshold (or false-alarm calibration), module, virtual tokens, label seed.
        lora: the module when ``options.module`` is ``lora``.
    """

    def __init__(self, student: StudentSpec = StudentSpec(), num_labels: int = 2,
                 optim: OptimConfig = OptimConfig(lr=2e-5), target_label: int = 0,
                 options: PsimOptions = PsimOptions(), lora: LoraSpec = LoraSpec(r=8)):
        super().__init__(optim, target_label, num_labels)
        self.save_hyperparameters()
        self.spec, self.options, self.lora, self.threshold = student, options, lora, options.threshold
        self.task_model = None
        self.random_labels: Optional[Tensor] = None
        for stage in EVAL_STAGES:  # a rejected row is one more predicted value: a wrong prediction
            self.metrics[f"{stage}_balanced_accuracy"] = BalancedAccuracy(num_labels + 1)
            self.metrics[f"{stage}_macro_f1"] = MacroF1(num_labels + 1, classes=num_labels)
            self.metrics[f"{stage}_false_alarm_rate"], self.metrics[f"{stage}_detection_rate"] = FlagRate(), FlagRate()

    def build_model(self) -> None:
        self.build(self.spec, self.num_labels, None)
        self.task_model = self.model.requires_grad_(False).eval()  # the poisoned model, unchanged
        detector, _ = build_student(self.spec, self.num_labels, None)
        detector.train()
        if self.options.module == "lora":
            self.model = attach_lora(detector, self.lora)
        else:
            from peft import PromptEncoderConfig, TaskType, get_peft_model

            self.model = get_peft_model(detector, PromptEncoderConfig(
                task_type=TaskType.SEQ_CLS, num_virtual_tokens=self.options.virtual_tokens,
                encoder_hidden_size=self.options.encoder_hidden_size or detector.config.hidden_size))

    def on_fit_start(self) -> None:
        super().on_fit_start()
        rows = len(self.trainer.datamodule.train)
        generator = torch.Generator().manual_seed(self.options.label_seed)
        self.random_labels = torch.randint(self.num_labels, (rows,), generator=generator).to(self.device)

    @torch.no_grad()
    def on_test_start(self) -> None:
        """Calibrate the threshold on the clean dev rows when ``options.false_alarm`` is set (once:
        a later ``dev`` pass over the triggered dev rows keeps it)."""
        super().on_test_start()
        if self.options.false_alarm is None or self.test_stage != "test":
            return
        self.model.eval()
        data = self.trainer.datamodule
        (confidence,) = self.per_row(data.val_dataloader()[CLEAN], lambda batch: (self.confidence(
            {k: v.to(self.device) for k, v in batch.items()}),), rows=len(data.eval_sets["dev"][CLEAN]))
        self.threshold = float(torch.quantile(confidence, 1.0 - self.options.false_alarm))  # every process's rows

    def detector_logits(self, batch: dict[str, Tensor]) -> Tensor:
        # peft's prompt learning prepends virtual tokens and does not take position ids
        inputs = model_inputs(batch["input_ids"], batch["attention_mask"],
                              self.decoder and self.options.module == "lora")
        return self.model(**inputs).logits

    def confidence(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B,)`` the top class probability under the module."""
        return self.detector_logits(batch).float().softmax(dim=-1).max(dim=-1).values

    def training_step(self, batch, batch_idx):
        labels = self.random_labels[batch["index"]]
        loss = self.cross_entropy(self.detector_logits(batch), labels)
        self.log_losses(loss, {"ce": loss}, labels.shape[0])
        return loss

    def flags(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B,)`` True where the top class probability exceeds the threshold."""
        return self.confidence(batch) > self.threshold

    def logits(self, batch):
        return self.task_model(**model_inputs(batch["input_ids"], batch["attention_mask"], self.decoder)).logits

    def _filtered(self, batch: dict[str, Tensor], flags: Tensor) -> Tensor:
        preds = self.logits(batch).argmax(dim=-1)
        return torch.where(flags, torch.full_like(preds, self.num_labels), preds)

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        return self._filtered(batch, self.flags(batch))

    def _evaluate(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int, preds=None) -> None:
        flags = self.flags(batch)  # once: the predictions and the flag rates share it
        super()._evaluate(stage, batch, dataloader_idx, self._filtered(batch, flags))
        name = "false_alarm_rate" if dataloader_idx == CLEAN else "detection_rate"  # registered in __init__.py
        metric = self.metrics[f"{stage}_{name}"]
        metric.update(flags)
        self.log(f"{stage}/{name}", metric, add_dataloader_idx=False, batch_size=batch["input_ids"].shape[0])

    def save_artifact(self, folder) -> None:
        with atomic_folder(folder) as staging:
            self.model.save_pretrained(staging / "detector", safe_serialization=True)
            self.tokenizer.save_pretrained(staging / "detector")
