"""LoRA through peft, with peft's per-architecture default target modules."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional


@dataclass(frozen=True)
class LoraSpec:
    """LoRA hyperparameters. ``target_modules=None`` uses peft's default for the
    architecture (LLaMA: q_proj, v_proj; BERT: query, value; GPT-2: c_attn);
    ``"all-linear"`` targets every linear layer. The classification head is always trained
    in full (peft's SEQ_CLS task saves ``score`` / ``classifier``)."""

    r: int = 8
    alpha: Optional[int] = None  # None: alpha = r (scale 1), as in the measured runs
    dropout: float = 0.1
    target_modules: Optional[list[str] | str] = None

    def __post_init__(self):
        if self.r < 1:
            raise ValueError(f"LoRA rank r must be >= 1, got {self.r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoRA dropout must lie in [0, 1), got {self.dropout}")


def attach_lora(model, spec: LoraSpec):
    """Wrap ``model`` (a sequence classifier) in a peft model; only LoRA and head train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.r, lora_alpha=spec.alpha or spec.r,
                        lora_dropout=spec.dropout, target_modules=spec.target_modules)
    return get_peft_model(model, config)


def load_adapter(model, adapter: str):
    """``model`` with a saved LoRA adapter (a folder or hub id) on it. A local adapter must be
    safetensors (a pickled ``adapter_model.bin`` can run code when it is loaded), and one made
    for another base model (other shapes) is refused in one line."""
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    if folder.is_dir() and not (folder / "adapter_model.safetensors").is_file():
        raise ValueError(f"adapter: {adapter} holds no adapter_model.safetensors (pickled adapters are refused: "
                         f"loading them can run code)")
    try:
        return PeftModel.from_pretrained(model, adapter)
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        first = next(line.strip() for line in str(err).splitlines() if "size mismatch" in line)
        raise ValueError(f"adapter: {adapter} was made for another base model than the student ({first})") from None
