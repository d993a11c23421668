"""Defenses: one per module, looked up by name in ``DEFENSES`` (see ``base``)."""
from w2s.defenses.base import DEFENSES, FAMILIES, Defense, NoOptions, StageContext, get_defense, register_defense
# importing a defense's module registers it
from w2s.defenses import (fa, fine_mixing, kd, lmsanitator, lora, obliviate, peftguard, psim,  # noqa: F401
                          w2s_obliviate, weak_to_strong)
# edit imports weak_to_strong, so it comes after lora, which the default study lists first
from w2s.defenses import edit  # noqa: F401,E402

__all__ = ["DEFENSES", "FAMILIES", "Defense", "NoOptions", "StageContext", "get_defense", "register_defense"]
