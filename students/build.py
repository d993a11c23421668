"""Build a student: any decoder or encoder as a sequence classifier, optionally quantized,
optionally with LoRA."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from students.lora import LoraSpec, attach_lora
from w2s.console import report_new_weights
from w2s.embedded import resolve_model
from w2s.tokenizers import load_tokenizer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")  # transformers' names


@dataclass(frozen=True)
class StudentSpec:
    """Which student and how to load it.

    Args:
        name: ``smollm2-135m``, a Hugging Face id (``meta-llama/Meta-Llama-3-8B``) or a folder.
        quantization: ``None``, ``"4bit"`` (NF4) or ``"8bit"`` (bitsandbytes).
        dtype: ``"auto"`` is bf16 on GPU, fp32 on CPU; or a key of ``DTYPES``.
        attn_implementation: ``eager`` by default: SDPA with left padding and bf16 was seen
            to collapse SmolLM2 training on a GPU (docs/measurements.md); ``sdpa`` gives eager's
            logits and gradients with left padding in fp32 (tests/test_fast_path.py).
        gradient_checkpointing: recompute each layer's activations in the backward pass instead
            of keeping them (less memory, about a third more compute; the same gradients).
    """

    name: str = "smollm2-135m"
    quantization: Optional[str] = None
    dtype: str = "auto"
    attn_implementation: str = "eager"
    trust_remote_code: bool = False
    gradient_checkpointing: bool = False

    def __post_init__(self):
        if self.attn_implementation not in ATTENTION and "/" not in self.attn_implementation:
            raise ValueError(f"unknown attn_implementation {self.attn_implementation!r}; valid: {', '.join(ATTENTION)} "
                             f"or a hub kernel (org/name)")

    def torch_dtype(self) -> torch.dtype:
        if self.dtype == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: auto, {', '.join(DTYPES)}")
        return DTYPES[self.dtype]


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
