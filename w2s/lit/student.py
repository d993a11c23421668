"""Shared by the stages that train a student (poisoning, unlearning)."""
from __future__ import annotations

from typing import Optional

from students.build import StudentSpec, build_student
from students.forward import model_inputs
from students.lora import LoraSpec
from w2s.lit.base import ClassifierModule, OptimConfig
from w2s.tokenizers import is_decoder


class StudentModule(ClassifierModule):
    """Holds ``model``, ``tokenizer`` and whether the student is a decoder."""

    def __init__(self, optim: OptimConfig, target_label: int, num_labels: int,
                 class_weights: Optional[list[float]] = None):
        super().__init__(optim, target_label, num_labels, class_weights)
        self.tokenizer = None
        self.decoder = True

    def build(self, spec: StudentSpec, num_labels: int, lora: Optional[LoraSpec]) -> None:
        # Under FSDP only process 0 reads the weights (ClassifierModule.configure_model)
        self.model, self.tokenizer = build_student(spec, num_labels, lora, empty=self.device_mesh is not None
                                                   and self.global_rank > 0)
        self.model.train()  # from_pretrained returns eval mode; LoRA dropout must be active
        self.decoder = is_decoder(self.model.config)

    def logits(self, batch):
        return self.model(**model_inputs(batch["input_ids"], batch["attention_mask"], self.decoder)).logits
