"""Fine-mixing (Zhang et al., EMNLP 2022; PEFTGuard's best mitigation): keep a random share
``rho`` of the poisoned weights, take the rest from the clean pre-trained weights, then
fine-tune the mixed model with clean LoRA."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from w2s.defenses.base import Defense, register_defense

if TYPE_CHECKING:  # torch loads when a defense runs, not when the registry is listed
    import torch
    from torch import Tensor


@dataclass(frozen=True)
class MixingOptions:
    """``rho``: the share of the poisoned weights kept (element-wise, at random with ``seed``)."""

    rho: float = 0.5
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.rho <= 1.0:
            raise ValueError(f"fine-mixing rho must lie in [0, 1], got {self.rho}")


def mix_weights(poisoned: dict[str, Tensor], clean: dict[str, Tensor], rho: float,
                generator: Optional[torch.Generator] = None) -> tuple[dict[str, Tensor], int]:
    """``W = M * W_poisoned + (1 - M) * W_clean`` with ``M ~ Bernoulli(rho)`` per element.

    Tensors without a clean counterpart of the same shape (the task head, which the
    pre-trained model lacks) keep their poisoned values. Returns the mixed state and the
    number of elements mixed (those with a clean counterpart)."""
    import torch

    mixed, count = {}, 0
    for name, weight in poisoned.items():
        other = clean.get(name)
        if other is None or other.shape != weight.shape or not weight.is_floating_point():
            mixed[name] = weight
            continue
        keep = torch.rand(weight.shape, generator=generator) < rho
        mixed[name] = torch.where(keep.to(weight.device), weight, other.to(weight.device, weight.dtype))
        count += weight.numel()
    return mixed, count


@register_defense("fine-mixing")
class FineMixing(Defense):
    summary = ("mix the poisoned weights with the clean pre-trained ones (rho = 0.5 kept), then clean "
               "LoRA (Zhang et al., EMNLP 2022; PEFTGuard's best mitigation)")
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0}, "lora": {"r": 512}}  # W2S's rank: like with like
    adapter_on_poisoned = False  # on the mixed weights
    Options = MixingOptions

    def run(self, context, stage):
        from w2s import distributed

        options = self.options(stage.options)
        folder = context.run.folder / "mixed"
        if context.run.writer:
            context.run.info["mixed_elements"] = mix_folder(context.poisoned, context.config.student, folder, options)
        distributed.barrier()  # every process trains on the mixed weights
        self.train_lora(context, stage, folder)


def mix_folder(poisoned: Path, clean_spec, folder: Path, options: MixingOptions) -> int:
    """Mix the poisoned student's folder with ``clean_spec``'s pre-trained weights into ``folder``."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from w2s.embedded import resolve_model
    from w2s.tokenizers import load_tokenizer

    kwargs = dict(dtype=clean_spec.torch_dtype(), trust_remote_code=clean_spec.trust_remote_code, use_safetensors=True)
    model = AutoModelForSequenceClassification.from_pretrained(poisoned, **kwargs)
    clean, info = AutoModelForSequenceClassification.from_pretrained(
        resolve_model(clean_spec.name), num_labels=model.config.num_labels, output_loading_info=True, **kwargs)
    missing = set(info["missing_keys"])  # the head: not in the pre-trained checkpoint
    state = {k: v for k, v in clean.state_dict().items() if k not in missing}
    mixed, count = mix_weights(model.state_dict(), state, options.rho, torch.Generator().manual_seed(options.seed))
    model.load_state_dict(mixed)
    model.save_pretrained(folder, safe_serialization=True)
    load_tokenizer(str(poisoned), clean_spec.trust_remote_code).save_pretrained(folder)
    return count
