"""Defenses: one per module, looked up by name in ``DEFENSES`` (see ``base``)."""
from w2s.defenses.base import DEFENSES, FAMILIES, Defense, NoOptions, StageContext, get_defense, register_defense
# importing a defense's module registers it. Clean LoRA first: the default study lists its methods in
# registration order, the baseline before W2S, whose settings several other modules import.
from w2s.defenses import lora  # noqa: F401
from w2s.defenses import (edit, fa, fine_mixing, kd, lmsanitator, obliviate, peftguard, psim,  # noqa: F401,E402
                          w2s_obliviate, weak_to_strong)

__all__ = ["DEFENSES", "FAMILIES", "Defense", "NoOptions", "StageContext", "get_defense", "register_defense"]
