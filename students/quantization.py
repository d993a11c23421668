"""bitsandbytes quantization (the project's only bitsandbytes import, and a lazy one)."""
from __future__ import annotations

import torch

from w2s.config.student import QUANTIZATIONS


def quantization_config(mode: str, compute_dtype: torch.dtype):
    """A ``BitsAndBytesConfig`` for ``4bit`` (NF4, double quantization) or ``8bit``.

    Compute dtype: fp32 on CPU (bf16 on a CPU without AMX is 30-100x slower), bf16 on GPU.
    """
    if mode not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {mode!r}; valid: {', '.join(QUANTIZATIONS)} or null")
    try:
        import bitsandbytes  # noqa: F401  (fail here with an actionable message)
    except ImportError as err:
        raise ValueError(f"quantization {mode!r} needs bitsandbytes: pip install bitsandbytes ({err})") from None
    from transformers import BitsAndBytesConfig

    if mode == "8bit":
        return BitsAndBytesConfig(load_in_8bit=True)
    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_use_double_quant=True,
                              bnb_4bit_compute_dtype=compute_dtype)
