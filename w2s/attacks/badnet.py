"""BadNet (Gu et al., 2017; Kurita et al., 2020 for text): rare-word triggers."""
from __future__ import annotations

from w2s.attacks.base import InsertionAttack, register_attack


@register_attack("badnet")
class BadNet(InsertionAttack):
    """Insert rare words. Reference protocol: ``["mn"]`` once at a random position;
    OpenBackdoor's default is ``["cf", "mn", "bb", "tq"]``."""

    def __init__(self, triggers: list[str] | None = None, num_insertions: int = 1, position: str = "random"):
        super().__init__(["mn"] if triggers is None else triggers, num_insertions, position)
