"""Evaluation only: any student (+ optional LoRA adapter) on any dataset and attack."""
from __future__ import annotations

from typing import Optional

from students.build import StudentSpec
from students.lora import load_adapter
from w2s.lit.base import OptimConfig
from w2s.lit.student import StudentModule


class EvaluateModule(StudentModule):
    """``trainer.test`` gives ``test/ca`` and ``test/asr``; nothing is trained."""

    def __init__(self, student: StudentSpec = StudentSpec(), adapter: Optional[str] = None, num_labels: int = 2,
                 target_label: int = 0):
        super().__init__(OptimConfig(), target_label, num_labels)
        self.spec, self.adapter = student, adapter

    def build_model(self) -> None:
        self.build(self.spec, self.num_labels, None)
        if self.adapter is not None:
            self.model = load_adapter(self.model, self.adapter)
        self.model.eval()
