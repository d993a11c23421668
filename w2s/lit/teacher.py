"""Stage 2: fully fine-tune the small clean teacher (encoder + projection head)."""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from teachers.model import TeacherModel, TeacherSpec
from w2s.artifacts import atomic_folder
from w2s.lit.base import ClassifierModule, OptimConfig
from w2s.tokenizers import load_tokenizer


class TeacherModule(ClassifierModule):
    """Cross-entropy fine-tuning of every teacher parameter (reference: lr 2e-5, 5 epochs)."""

    def __init__(self, teacher: TeacherSpec = TeacherSpec(), optim: OptimConfig = OptimConfig(lr=2e-5),
                 target_label: int = 0, class_weights: Optional[list[float]] = None):
        super().__init__(optim, target_label, teacher.num_labels, class_weights)
        self.save_hyperparameters()
        self.spec = teacher

    def build_model(self) -> None:
        self.model = TeacherModel(self.spec).train()  # from_pretrained gives eval mode

    def logits(self, batch):
        return self.model(batch["input_ids"], batch["attention_mask"])[0]

    def training_step(self, batch, batch_idx):
        loss = self.cross_entropy(self.logits(batch), batch["labels"])
        self.log_losses(loss, {"ce": loss}, batch["labels"].shape[0])
        return loss

    def save_artifact(self, folder: str | Path) -> None:
        """The teacher folder (see :class:`teachers.model.TeacherModel`), written atomically."""
        with atomic_folder(folder) as staging:
            self.model.save(staging, load_tokenizer(self.spec.name))
