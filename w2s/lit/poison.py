"""Stage 3 (attack): implant the backdoor by fine-tuning the student on poisoned data."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from students.build import StudentSpec
from students.forward import model_inputs
from students.lora import LoraSpec
from w2s.artifacts import atomic_folder
from w2s.lit.base import OptimConfig
from w2s.lit.student import StudentModule


class PoisonModule(StudentModule):
    """Full fine-tuning of the student on the poisoned train split, or LoRA merged into the
    weights when saving. The artifact is an ordinary Hugging Face folder (safetensors)."""

    def __init__(self, student: StudentSpec = StudentSpec(), num_labels: int = 2, lora: Optional[LoraSpec] = None,
                 optim: OptimConfig = OptimConfig(lr=2e-5), target_label: int = 0):
        super().__init__(optim, target_label)
        if student.quantization and lora is None:
            raise ValueError("poisoning a quantized student needs lora (only LoRA trains on quantized weights)")
        self.save_hyperparameters()
        self.spec, self.num_labels, self.lora = student, num_labels, lora

    def configure_model(self) -> None:
        if self.model is None:
            self.build(self.spec, self.num_labels, self.lora)

    def training_step(self, batch, batch_idx):
        out = self.model(**model_inputs(batch["input_ids"], batch["attention_mask"], self.decoder),
                         labels=batch["labels"])
        self.log_losses(out.loss, {"ce": out.loss}, batch["labels"].shape[0])
        return out.loss

    def save_artifact(self, folder: str | Path) -> None:
        """Save the poisoned student (LoRA merged) with its tokenizer, atomically."""
        model = self.model.merge_and_unload() if self.lora is not None else self.model
        with atomic_folder(folder) as staging:
            model.save_pretrained(staging, safe_serialization=True)
            self.tokenizer.save_pretrained(staging)
        self.model = model
