"""Which student, and how to load it."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

DTYPES = ("float32", "bfloat16", "float16")  # torch's names
ATTENTION = ("eager", "sdpa", "flash_attention_2", "flash_attention_3", "flex_attention")  # transformers' names
QUANTIZATIONS = ("4bit", "8bit")  # bitsandbytes (students.quantization)


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

    def torch_dtype(self):
        """The ``torch.dtype`` to load in (``auto``: bf16 on a GPU, fp32 on CPU)."""
        import torch

        if self.dtype == "auto":
            return torch.bfloat16 if torch.cuda.is_available() else torch.float32
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; valid: auto, {', '.join(DTYPES)}")
        return getattr(torch, self.dtype)
