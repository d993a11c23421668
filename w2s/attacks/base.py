"""The attack interface and registry.

An attack turns a clean text into a triggered one (``apply``). Whether labels are kept
(clean-label) or flipped (dirty-label), how many rows, and the target label are not the
attack's business: :mod:`w2s.attacks.poison` does that for every attack alike.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from typing import Callable, TypeVar

POSITIONS = ("random", "start", "end")


class Attack(ABC):
    """A text transformation that plants a trigger."""

    name: str = ""

    @abstractmethod
    def apply(self, text: str, rng: random.Random) -> str:
        """The triggered version of ``text``; randomness only from ``rng``."""

    def can_apply(self, text: str) -> bool:
        """Whether this text can be triggered (e.g. a paraphrase exists for it)."""
        return True


class InsertionAttack(Attack):
    """Insert ``num_insertions`` trigger phrases at word positions.

    ``position='random'`` follows the reference protocol: a uniform word index in
    ``1 .. n-1`` (never before the first word); ``start`` / ``end`` put it at either end.
    """

    def __init__(self, triggers: list[str], num_insertions: int = 1, position: str = "random"):
        triggers = [t.strip() for t in triggers]
        if not triggers or not all(triggers):
            raise ValueError(f"{self.name}: triggers must be a non-empty list of non-empty strings")
        if num_insertions < 1:
            raise ValueError(f"{self.name}: num_insertions must be >= 1, got {num_insertions}")
        if position not in POSITIONS:
            raise ValueError(f"{self.name}: unknown position {position!r}; valid: {', '.join(POSITIONS)}")
        self.triggers, self.num_insertions, self.position = triggers, num_insertions, position

    def apply(self, text: str, rng: random.Random) -> str:
        words = text.split()
        for _ in range(self.num_insertions):
            trigger = rng.choice(self.triggers)
            if self.position == "start":
                index = 0
            elif self.position == "end":
                index = len(words)
            else:
                index = rng.randint(1, max(1, len(words) - 1))
            words.insert(index, trigger)
        return " ".join(words)


ATTACKS: dict[str, type[Attack]] = {}
A = TypeVar("A", bound=type[Attack])


def register_attack(name: str) -> Callable[[A], A]:
    def decorate(cls: A) -> A:
        cls.name = name
        ATTACKS[name] = cls
        return cls
    return decorate


def attack_class(name: str) -> type[Attack]:
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; valid: {', '.join(sorted(ATTACKS))}")
    return ATTACKS[name]
