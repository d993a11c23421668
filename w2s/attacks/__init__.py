"""Attacks: text transforms, one per module, looked up by name in ``ATTACKS`` (they read no
dataset: poisoning a split and building triggered sets is ``w2s.data.poisoning``)."""
from w2s.attacks.base import ATTACKS, Attack, InsertionAttack, attack_class, register_attack
from w2s.attacks.badnet import BadNet
from w2s.attacks.insent import InSent
from w2s.attacks.por import Por
from w2s.attacks.synattack import SynAttack

__all__ = ["ATTACKS", "Attack", "BadNet", "InSent", "InsertionAttack", "Por", "SynAttack", "attack_class",
           "register_attack"]
