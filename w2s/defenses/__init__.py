"""Defenses: one per module, looked up by name in ``DEFENSES`` (see ``base``)."""
from w2s.defenses.base import DEFENSES, FAMILIES, Defense, NoOptions, StageContext, get_defense, register_defense
# importing a defense's module registers it
from w2s.defenses import fa, fine_mixing, kd, lora, obliviate, psim, w2s_obliviate, weak_to_strong  # noqa: F401

__all__ = ["DEFENSES", "FAMILIES", "Defense", "NoOptions", "StageContext", "get_defense", "register_defense"]
