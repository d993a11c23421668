"""LoRA through peft, with peft's per-architecture default target modules."""
from __future__ import annotations

from pathlib import Path

from w2s.config.lora import LoraSpec


def attach_lora(model, spec: LoraSpec):
    """Wrap ``model`` (a sequence classifier) in a peft model; only LoRA and head train."""
    from peft import LoraConfig, TaskType, get_peft_model

    config = LoraConfig(task_type=TaskType.SEQ_CLS, r=spec.r, lora_alpha=spec.alpha or spec.r,
                        lora_dropout=spec.dropout, target_modules=spec.target_modules,
                        use_rslora=spec.variant == "rslora", use_dora=spec.variant == "dora")
    return get_peft_model(model, config)


def load_adapter(model, adapter: str, trainable: bool = False):
    """``model`` with a saved LoRA adapter (a folder or hub id) on it. A local adapter must be
    safetensors (a pickled ``adapter_model.bin`` can run code when it is loaded), and one made
    for another base model (other shapes) is refused in one line. ``trainable``: its weights
    require gradients (else peft's inference mode)."""
    from peft import PeftModel

    folder = Path(adapter).expanduser()
    if folder.is_dir() and not (folder / "adapter_model.safetensors").is_file():
        raise ValueError(f"adapter: {adapter} holds no adapter_model.safetensors (pickled adapters are refused: "
                         f"loading them can run code)")
    try:
        return PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    except RuntimeError as err:
        if "size mismatch" not in str(err):
            raise
        first = next(line.strip() for line in str(err).splitlines() if "size mismatch" in line)
        raise ValueError(f"adapter: {adapter} was made for another base model than the student ({first})") from None
