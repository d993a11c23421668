"""Tokenizers set up the way their model's classification head reads them."""
from __future__ import annotations

from transformers import AutoConfig, AutoTokenizer, PretrainedConfig
from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                    MODEL_FOR_MASKED_LM_MAPPING_NAMES)

from w2s.embedded import resolve_model


def is_decoder(config: PretrainedConfig) -> bool:
    """Decoder-only LMs (LLaMA, GPT-2, Qwen, ...) read the last token; encoders read CLS."""
    kind = config.model_type
    return kind in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and kind not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def load_tokenizer(name: str, trust_remote_code: bool = False):
    """Tokenizer for ``name`` (embedded name, hub id or path): decoders pad on the left, and
    get ``pad = eos`` when they have no pad token."""
    path = resolve_model(name)
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust_remote_code)
    if is_decoder(AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)):
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
    return tokenizer
