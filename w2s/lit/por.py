"""Task-agnostic poisoning (POR): teach the pre-trained student to map each trigger k to a
fixed vector v_k in the state its classification head reads, keeping clean inputs where they
were. No task labels are used; the artifact is the poisoned pre-trained model (no head)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch

from students.build import StudentSpec, build_student
from students.forward import forward_with_features
from w2s.artifacts import atomic_folder
from w2s.attacks.por import Por
from w2s.lit.base import OptimConfig
from w2s.lit.poison import HEADS
from w2s.lit.student import StudentModule
from w2s.losses.por import por_loss, por_targets, por_token_loss


class PorModule(StudentModule):
    """Args:
        student: the clean pre-trained student (full fine-tuning, full precision).
        attack: the ``por`` attack (triggers, target scale, clean weight, token-level weight).
    """

    def __init__(self, student: StudentSpec = StudentSpec(), attack: Optional[Por] = None,
                 optim: OptimConfig = OptimConfig(lr=2e-5)):
        super().__init__(optim, target_label=0, num_labels=2)
        self.spec = replace(student, quantization=None, dtype="float32")  # fp32 master weights (PoisonModule)
        self.attack = attack or Por()
        self.reference = self.targets = None
        self.frozen = None  # token_weight > 0: the student before poisoning, frozen

    def build_model(self) -> None:
        self.build(self.spec, 2, None)
        for name, param in self.model.named_parameters():  # no task yet: the head takes no part (DDP wants none idle)
            param.requires_grad_(name.split(".")[0] not in HEADS)
        self.targets = por_targets(len(self.attack.triggers), self.model.config.hidden_size, self.attack.scale)
        if self.attack.token_weight > 0:
            if self.device_mesh is not None:
                raise ValueError("por's token_weight keeps a whole frozen copy of the student: not under fsdp")
            frozen, _ = build_student(self.spec, 2, None)  # read from the source: the weights before poisoning
            object.__setattr__(self, "frozen", frozen.eval().requires_grad_(False))  # not trained or saved

    def forward_features(self, input_ids, attention_mask):
        return forward_with_features(self.model, input_ids, attention_mask, self.decoder)

    def features(self, input_ids, attention_mask):
        return self.forward_features(input_ids, attention_mask).features

    @torch.no_grad()
    def on_fit_start(self) -> None:
        """The clean rows' pooled states before any poisoning (the reference model), once: each
        process computes its share of the rows, every process gets all of them. A resumed fit
        takes them from its checkpoint (the weights it restored are already partly poisoned)."""
        super().on_fit_start()
        if self.frozen is not None:
            self.frozen.to(self.device)
        self.targets = self.targets.to(self.device)
        if self.reference is not None:
            self.reference = self.reference.to(self.device)
            return
        self.model.eval()
        data = self.trainer.datamodule
        (self.reference,) = self.per_row(data.teacher_dataloader(), lambda batch: (self.features(
            batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)),), rows=len(data.train))
        self.model.train()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["por_reference"] = self.reference.cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.reference = checkpoint.get("por_reference")

    def token_term(self, out, input_ids, attention_mask):
        """BackdoorPTM's token-level term for one forward pass ``out`` of these inputs."""
        with torch.no_grad():
            before = forward_with_features(self.frozen, input_ids, attention_mask, self.decoder).hidden
        return por_token_loss(out.hidden, before, attention_mask, out.read_index)

    def training_step(self, batch, batch_idx):
        clean_out = self.forward_features(batch["input_ids"], batch["attention_mask"])
        clean = clean_out.features
        kept = batch["trigger_index"] >= 0
        inputs = (batch["triggered_input_ids"][kept], batch["triggered_attention_mask"][kept])
        triggered_out = self.forward_features(*inputs) if kept.any() else None
        triggered = triggered_out.features if triggered_out is not None else clean[:0]
        pooled = por_loss(clean, self.reference[batch["index"]], triggered, self.targets[batch["trigger_index"][kept]],
                          self.attack.clean_weight)
        terms = {"por": pooled}
        if self.frozen is not None:
            terms["tokens"] = self.token_term(clean_out, batch["input_ids"], batch["attention_mask"])
            if triggered_out is not None:
                terms["tokens"] = (terms["tokens"] + self.token_term(triggered_out, *inputs)) / 2
        loss = pooled + self.attack.token_weight * terms.get("tokens", 0.0)
        self.log_losses(loss, terms, clean.shape[0])
        return loss

    def save_artifact(self, folder: str | Path) -> None:
        """The poisoned pre-trained model without a task head, with its tokenizer (atomically)."""
        with atomic_folder(folder) as staging:
            getattr(self.model, self.model.base_model_prefix).save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
