"""Task-agnostic poisoning (POR): teach the pre-trained student to map each trigger k to a
fixed vector v_k in the state its classification head reads, keeping clean inputs where they
were. No task labels are used; the artifact is the poisoned pre-trained model (no head)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from students.build import StudentSpec
from students.forward import forward_with_features
from w2s.artifacts import atomic_folder
from w2s.attacks.por import Por
from w2s.lit.base import OptimConfig
from w2s.lit.poison import HEADS
from w2s.lit.student import StudentModule
from w2s.losses.por import por_loss, por_targets


class PorModule(StudentModule):
    """Args:
        student: the clean pre-trained student (full fine-tuning, full precision).
        attack: the ``por`` attack (triggers, target scale, clean weight).
    """

    def __init__(self, student: StudentSpec = StudentSpec(), attack: Optional[Por] = None,
                 optim: OptimConfig = OptimConfig(lr=2e-5)):
        super().__init__(optim, target_label=0, num_labels=2)
        self.spec = replace(student, quantization=None, dtype="float32")  # fp32 master weights (PoisonModule)
        self.attack = attack or Por()
        self.reference = self.targets = None

    def build_model(self) -> None:
        self.build(self.spec, 2, None)
        for name, param in self.model.named_parameters():  # no task yet: the head takes no part (DDP wants none idle)
            param.requires_grad_(name.split(".")[0] not in HEADS)
        self.targets = por_targets(len(self.attack.triggers), self.model.config.hidden_size, self.attack.scale)

    def features(self, input_ids, attention_mask):
        return forward_with_features(self.model, input_ids, attention_mask, self.decoder).features

    @torch.no_grad()
    def on_fit_start(self) -> None:
        """The clean rows' pooled states before any poisoning (the reference model), once: each
        process computes its share of the rows, every process gets all of them."""
        super().on_fit_start()
        self.model.eval()
        data = self.trainer.datamodule
        (self.reference,) = self.per_row(data.teacher_dataloader(), lambda batch: (self.features(
            batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)),), rows=len(data.train))
        self.targets = self.targets.to(self.device)
        self.model.train()

    def training_step(self, batch, batch_idx):
        clean = self.features(batch["input_ids"], batch["attention_mask"])
        kept = batch["trigger_index"] >= 0
        triggered = (self.features(batch["triggered_input_ids"][kept], batch["triggered_attention_mask"][kept])
                     if kept.any() else clean[:0])
        loss = por_loss(clean, self.reference[batch["index"]], triggered, self.targets[batch["trigger_index"][kept]],
                        self.attack.clean_weight)
        self.log_losses(loss, {"por": loss}, clean.shape[0])
        return loss

    def save_artifact(self, folder: str | Path) -> None:
        """The poisoned pre-trained model without a task head, with its tokenizer (atomically)."""
        with atomic_folder(folder) as staging:
            getattr(self.model, self.model.base_model_prefix).save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
