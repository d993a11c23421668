"""Build a student: any decoder or encoder as a sequence classifier, optionally quantized,
optionally with LoRA."""
from __future__ import annotations

from typing import Optional

import torch

from students.lora import LoraSpec, attach_lora
from w2s.config.student import StudentSpec
from w2s.console import report_new_weights
from w2s.embedded import resolve_model
from w2s.tokenizers import load_tokenizer



# A pre-trained checkpoint has no classification head: these weights are expected to start random.
NEW_HEADS = ("score.", "classifier.", "pre_classifier.", "classification_head.")


def check_head(name: str, config, num_labels: int) -> None:
    """A checkpoint saved with a classification head must have one class per label of the data."""
    trained = any(a.endswith("ForSequenceClassification") for a in config.architectures or [])
    if trained and config.num_labels != num_labels:
        raise ValueError(f"{name} has a classification head for {config.num_labels} classes, the data has "
                         f"{num_labels}")


def build_student(spec: StudentSpec, num_labels: int, lora: Optional[LoraSpec] = None, empty: bool = False):
    """Return ``(model, tokenizer)``; with ``lora`` only LoRA and the head are trainable (a
    quantized student can only be trained that way). ``empty``: the same model on the meta
    device, no weights read (FSDP's other processes: filled from process 0 once sharded)."""
    from transformers import AutoConfig, AutoModelForSequenceClassification

    path = resolve_model(spec.name)
    config = AutoConfig.from_pretrained(path, trust_remote_code=spec.trust_remote_code)
    check_head(spec.name, config, num_labels)
    tokenizer = load_tokenizer(spec.name, spec.trust_remote_code)
    dtype = spec.torch_dtype()
    if empty:
        if spec.quantization:
            raise ValueError("a quantized student cannot be built empty")
        config.num_labels = num_labels
        with torch.device("meta"):
            model = AutoModelForSequenceClassification.from_config(
                config, attn_implementation=spec.attn_implementation, trust_remote_code=spec.trust_remote_code).to(dtype)
    else:
        kwargs = dict(num_labels=num_labels, dtype=dtype, attn_implementation=spec.attn_implementation,
                      trust_remote_code=spec.trust_remote_code, use_safetensors=True)
        if spec.quantization:
            from students.quantization import quantization_config

            kwargs["quantization_config"] = quantization_config(spec.quantization, dtype)
        model, info = AutoModelForSequenceClassification.from_pretrained(path, output_loading_info=True, **kwargs)
        report_new_weights(spec.name, info, expected=NEW_HEADS)
    model.config.pad_token_id = tokenizer.pad_token_id
    checkpointing = {"use_reentrant": False}  # needs no inputs that require grad (LoRA on a frozen base)
    if spec.quantization and lora is not None:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=spec.gradient_checkpointing,
                                                gradient_checkpointing_kwargs=checkpointing)
    elif spec.gradient_checkpointing and hasattr(model, "activation_checkpointing_enable"):  # transformers >= 5.2x
        model.activation_checkpointing_enable(checkpointing)
    elif spec.gradient_checkpointing:
        model.gradient_checkpointing_enable(checkpointing)
    if lora is not None:
        model = attach_lora(model, lora)
    return model, tokenizer
