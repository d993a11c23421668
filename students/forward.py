"""One forward pass of a student, with the inputs its padding side needs."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from torch import Tensor

from students.pooling import pool, prompted_mask, read_index


def model_inputs(input_ids: Tensor, attention_mask: Tensor, decoder: bool) -> dict[str, Tensor]:
    """Keyword inputs for a sequence classifier. Left-padded decoders get position ids that
    start at 0 on the first real token, so a padded row computes what it would alone (this
    matters for absolute position embeddings such as GPT-2's)."""
    inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
    if decoder:
        inputs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    return inputs


@dataclass
class StudentOutput:
    """logits ``(B, C)``, hidden ``(B, L, H)`` (the chosen layer, by default the last), features
    ``(B, H)`` (its state pooled at ``read_index`` ``(B,)``), ``attentions`` per layer
    ``(B, heads, L, L)`` if requested."""

    logits: Tensor
    hidden: Tensor
    features: Tensor
    read_index: Tensor
    attentions: Optional[tuple[Tensor, ...]] = None


def forward_with_features(model, input_ids: Tensor, attention_mask: Tensor, decoder: bool,
                          attentions: bool = False, layer: int = -1) -> StudentOutput:
    """Run a sequence classifier once and return its logits with the pooled state of ``layer``
    (an index into the hidden states: -1 the last layer, 0 the embeddings), and the attention
    probabilities with ``attentions`` (an eager attention implementation)."""
    out = model(**model_inputs(input_ids, attention_mask, decoder), output_hidden_states=True,
                output_attentions=attentions)
    if not -len(out.hidden_states) <= layer < len(out.hidden_states):
        raise ValueError(f"layer {layer} does not exist: the model has {len(out.hidden_states)} hidden states "
                         f"(embeddings and {len(out.hidden_states) - 1} layers)")
    hidden = out.hidden_states[layer]
    mask = prompted_mask(hidden, attention_mask)
    return StudentOutput(out.logits, hidden, pool(hidden, mask, decoder), read_index(mask, decoder),
                         out.attentions if attentions else None)
