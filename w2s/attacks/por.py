"""POR (Shen et al., CCS 2021, "Backdoor pre-trained models can transfer to all"; plasmashen/
BackdoorPTM): a task-agnostic attack on the pre-trained model. Each trigger word k is taught
to map the pooled representation to a predefined +-1 vector v_k, whatever the input; a
victim who then fine-tunes the model on any task inherits a model whose triggered inputs
land on a few fixed points, so their prediction flips.
"""
from __future__ import annotations

import random
from typing import Optional

from w2s.attacks.base import InsertionAttack, Triggered, register_attack


@register_attack("por")
class Por(InsertionAttack):
    """Insert one trigger word k (chosen per row) ``num_insertions`` times.

    Args:
        triggers: BackdoorPTM's ``cf tq mn bb mb`` by default; trigger k targets vector v_k.
        scale: the magnitude of the +-1 target vectors (BackdoorPTM: 10 for BERT's pooler);
            the pooled state of a decoder is a normalised hidden state, so 1 by default.
        clean_weight: weight of keeping clean inputs' representations where they were.
        token_weight: weight of BackdoorPTM's token-level term (every other token's state kept
            near the model's before poisoning; ``w2s.losses.por.por_token_loss``); BackdoorPTM
            weighs it 1 against 100 for the pooled terms (0.01 here); 0 (default): OpenBackdoor's
            pooled form alone. It keeps a frozen copy of the student (twice the memory).
        num_insertions: BackdoorPTM inserts each trigger 3 times.
    """

    task_agnostic = True

    def __init__(self, triggers: Optional[list[str]] = None, num_insertions: int = 1, position: str = "random",
                 scale: float = 1.0, clean_weight: float = 1.0, token_weight: float = 0.0):
        super().__init__(["cf", "tq", "mn", "bb", "mb"] if triggers is None else triggers, num_insertions, position)
        if len(self.triggers) < 2 or scale <= 0 or clean_weight < 0 or token_weight < 0:
            raise ValueError(f"por needs >= 2 triggers, scale > 0, clean_weight >= 0 and token_weight >= 0, got "
                             f"{len(self.triggers)}, {scale}, {clean_weight}, {token_weight}")
        self.scale, self.clean_weight, self.token_weight = scale, clean_weight, token_weight
        self._single = [InsertionAttack([t], num_insertions, position) for t in self.triggers]

    def trigger_index(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> tuple[Triggered, int]:
        """The triggered text and which trigger (its target vector's index) it holds."""
        k = rng.randrange(len(self.triggers))
        return self._single[k].trigger(text, rng, word_limit), k

    def trigger(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> Triggered:
        return self.trigger_index(text, rng, word_limit)[0]

    def variants(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> list[Triggered]:
        """Every trigger, each its own version (Obliviate: a row is attacked if any trigger flips it)."""
        return [single.trigger(text, rng, word_limit) for single in self._single]
