"""Prompt tuning through peft: a soft prompt of virtual tokens before the input and the task
head train, the model stays frozen (the victim LMSanitator's paper assumes). Its deep form,
P-tuning v2's prefix, is refused by peft for this transformers' sequence classifiers (they take
no past key values)."""
from __future__ import annotations

import warnings


def attach_prompt(model, tokens: int):
    """Wrap ``model`` (a sequence classifier) in a peft model; only the prompt and the head train."""
    from peft import PromptTuningConfig, TaskType, get_peft_model

    if tokens < 1:
        raise ValueError(f"a soft prompt needs at least 1 virtual token, got {tokens}")
    # peft drops position ids ahead of its virtual tokens, and says so on every forward pass
    warnings.filterwarnings("ignore", message="Position ids are not supported for parameter efficient tuning")
    return get_peft_model(model, PromptTuningConfig(task_type=TaskType.SEQ_CLS, num_virtual_tokens=tokens))
