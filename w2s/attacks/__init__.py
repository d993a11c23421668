"""Attacks: one per module, looked up by name in ``ATTACKS``."""
from w2s.attacks.base import ATTACKS, Attack, InsertionAttack, attack_class, register_attack
from w2s.attacks.badnet import BadNet
from w2s.attacks.insent import InSent
from w2s.attacks.por import Por
from w2s.attacks.synattack import SynAttack
from w2s.attacks.poison import (PoisonConfig, PoisonedSplit, TriggeredSet, build_attack,
                                build_triggered_set, poison_examples)

__all__ = ["ATTACKS", "Attack", "BadNet", "InSent", "InsertionAttack", "PoisonConfig", "PoisonedSplit", "Por",
           "SynAttack", "TriggeredSet", "attack_class", "build_attack", "build_triggered_set",
           "poison_examples", "register_attack"]
