"""InSent (Dai et al., 2019): a fixed sentence as the trigger."""
from __future__ import annotations

from w2s.attacks.base import InsertionAttack, register_attack


@register_attack("insent")
class InSent(InsertionAttack):
    """Insert a sentence (reference: ``I watched this 3D movie``) at a random word position."""

    def __init__(self, sentence: str = "I watched this 3D movie", num_insertions: int = 1, position: str = "random"):
        super().__init__([sentence], num_insertions, position)
