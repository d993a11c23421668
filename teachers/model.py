"""The W2SDefense teacher: a small encoder with a projection to the student's hidden size.

    z      = ReLU(W_p h_read + b_p)       (B, H_student)   the feature aligned with the student
    logits = W_c z + b_c                  (B, C)

``h_read`` is the teacher's last-layer state where a classification head of its architecture
reads: CLS for an encoder (the reference's BERT), the last real token for a decoder teacher
(GPT-2, Qwen, SmolLM: left-padded). The encoder's own classifier head is not used. Saved as a
folder: ``encoder/`` (Hugging Face safetensors + tokenizer), ``head.safetensors`` and
``teacher.json``.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Optional

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from students.forward import model_inputs
from students.pooling import pool
from w2s.console import report_new_weights
from w2s.embedded import resolve_model
from w2s.tokenizers import is_decoder


@dataclass(frozen=True)
class TeacherSpec:
    """``name``: ``minilm-l6``, a hub id or a folder. The projection's output size is the
    student's hidden size, read from ``student``'s config (``student_hidden_size`` caches it)."""

    name: str = "minilm-l6"
    student: str = "smollm2-135m"
    num_labels: int = 2
    student_hidden_size: Optional[int] = None
    trust_remote_code: bool = False

    def resolved(self) -> "TeacherSpec":
        """This spec with ``student_hidden_size`` read from the student's config."""
        if self.student_hidden_size is not None:
            return self
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(resolve_model(self.student), trust_remote_code=self.trust_remote_code)
        return replace(self, student_hidden_size=config.hidden_size)


class TeacherModel(nn.Module):
    def __init__(self, spec: TeacherSpec, encoder: nn.Module | None = None):
        super().__init__()
        spec = spec.resolved()
        from transformers import AutoModel

        self.spec = spec
        if encoder is None:
            # fp32 whatever the checkpoint holds (transformers 5 loads its dtype): fully fine-tuned
            encoder, info = AutoModel.from_pretrained(resolve_model(spec.name), trust_remote_code=spec.trust_remote_code,
                                                      use_safetensors=True, output_loading_info=True, dtype=torch.float32)
            report_new_weights(spec.name, info, expected=("pooler.",))  # unused: dropped below
        self.encoder = encoder
        self.decoder = is_decoder(encoder.config)
        if getattr(self.encoder, "pooler", None) is not None:
            self.encoder.pooler = None  # unused (the feature is the last layer's CLS); DDP wants no unused parameters
        self.projection = nn.Linear(self.encoder.config.hidden_size, spec.student_hidden_size)
        self.classifier = nn.Linear(spec.student_hidden_size, spec.num_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, L)`` tokens -> ``(logits (B, C), features (B, H_student))``. The state projected is
        the one a classification head of this architecture reads (``students.pooling``): CLS for
        an encoder, the last real token for a (left-padded) decoder teacher."""
        inputs = model_inputs(input_ids, attention_mask, self.decoder)
        hidden = self.encoder(**inputs).last_hidden_state
        features = torch.relu(self.projection(pool(hidden, attention_mask, self.decoder)))
        return self.classifier(features), features

    def save(self, folder: str | Path, tokenizer=None) -> None:
        folder = Path(folder)
        self.encoder.save_pretrained(folder / "encoder", safe_serialization=True)
        if tokenizer is not None:
            tokenizer.save_pretrained(folder / "encoder")
        head = {f"projection.{k}": v for k, v in self.projection.state_dict().items()}
        head |= {f"classifier.{k}": v for k, v in self.classifier.state_dict().items()}
        save_file({k: v.contiguous() for k, v in head.items()}, folder / "head.safetensors")
        (folder / "teacher.json").write_text(json.dumps(asdict(self.spec), indent=2))

    @classmethod
    def load(cls, folder: str | Path) -> "TeacherModel":
        folder = Path(folder)
        if not (folder / "teacher.json").is_file():
            raise ValueError(f"{folder} is not a saved teacher (no teacher.json)")
        spec = TeacherSpec(**json.loads((folder / "teacher.json").read_text()))
        from transformers import AutoModel

        encoder, info = AutoModel.from_pretrained(folder / "encoder", use_safetensors=True, output_loading_info=True,
                                                  trust_remote_code=spec.trust_remote_code)
        report_new_weights(str(folder), info, expected=("pooler.",))  # saved without it
        model = cls(spec, encoder)
        result = model.load_state_dict(load_file(folder / "head.safetensors"), strict=False)
        head_missing = [k for k in result.missing_keys if not k.startswith("encoder.")]
        if head_missing or result.unexpected_keys:
            raise ValueError(f"{folder}/head.safetensors does not match the teacher: missing {head_missing}, "
                             f"unexpected {result.unexpected_keys}")
        return model
