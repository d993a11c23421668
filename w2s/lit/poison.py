"""Stage 3 (attack): implant the backdoor by fine-tuning the student on poisoned data."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

from students.build import StudentSpec
from students.lora import LoraSpec
from w2s.artifacts import atomic_folder
from w2s.lit.base import OptimConfig
from w2s.lit.student import StudentModule


HEADS = ("score", "classifier")  # sequence-classification heads (decoders, encoders), as peft names them


class PoisonModule(StudentModule):
    """Full fine-tuning of the student on the poisoned train split, or LoRA merged into the
    weights when saving. The artifact is an ordinary full-precision Hugging Face folder
    (safetensors): in the paper's threat model the poisoned model exists in full precision and
    quantization is the defender's choice when loading it, so ``student.quantization`` is
    ignored here (the pipeline applies it to the defenses). Without LoRA the weights train in
    fp32 whatever ``student.dtype`` says (master weights; the pipeline computes under mixed
    precision in that dtype: ``w2s.pipeline.stages.master_weights_precision``).

    ``head_only`` trains the classification head alone (a victim's task head on top of a
    model poisoned before any task: the ``por`` attack)."""

    def __init__(self, student: StudentSpec = StudentSpec(), num_labels: int = 2, lora: Optional[LoraSpec] = None,
                 optim: OptimConfig = OptimConfig(lr=2e-5), target_label: int = 0,
                 class_weights: Optional[list[float]] = None, head_only: bool = False):
        super().__init__(optim, target_label, num_labels, class_weights)
        if head_only and lora is not None:
            raise ValueError("head_only trains the head alone: give no lora")
        self.save_hyperparameters()
        # Full fine-tuning keeps fp32 master weights (mixed precision computes in bf16): an lr-2e-5
        # update is below half a bf16 ulp of most weights and would round away in bf16 weights.
        self.spec = replace(student, quantization=None, dtype="float32" if lora is None else student.dtype)
        self.lora, self.head_only = lora, head_only

    def build_model(self) -> None:
        self.build(self.spec, self.num_labels, self.lora)
        if self.head_only:
            for name, param in self.model.named_parameters():
                param.requires_grad_(name.split(".")[0] in HEADS)

    def training_step(self, batch, batch_idx):
        loss = self.cross_entropy(self.logits(batch), batch["labels"])
        self.log_losses(loss, {"ce": loss}, batch["labels"].shape[0])
        return loss

    def save_artifact(self, folder: str | Path) -> None:
        """Save the poisoned student (LoRA merged) with its tokenizer, atomically; with LoRA the
        attacker's adapter too, in ``folder/adapter`` (what a detector of adapters scans)."""
        with atomic_folder(folder) as staging:
            if self.lora is not None:
                self.model.save_pretrained(staging / "adapter", safe_serialization=True)
            model = self.model.merge_and_unload() if self.lora is not None else self.model
            model.save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
        self.model = model
