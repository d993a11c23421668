"""The attack interface and registry.

An attack turns a clean text into a triggered one (``apply``). Whether labels are kept
(clean-label) or flipped (dirty-label), how many rows, and the target label are not the
attack's business: :mod:`w2s.data.poisoning` does that for every attack alike.
"""
from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Callable, Optional, TypeVar

POSITIONS = ("random", "start", "end", "within_max_length")

Span = tuple[int, int]


@dataclass(frozen=True)
class Triggered:
    """A triggered text and the character spans ``[start, end)`` of the inserted triggers
    (``None`` when the trigger is not a span of the text, e.g. a syntactic paraphrase)."""

    text: str
    spans: Optional[list[Span]] = None


class Attack(ABC):
    """A text transformation that plants a trigger. A ``task_agnostic`` attack poisons the
    pre-trained model, before any task, so it has no target label: a triggered row counts as
    attacked when its prediction changes (``w2s.metrics.attack_hits``)."""

    name: str = ""
    task_agnostic: bool = False

    @abstractmethod
    def apply(self, text: str, rng: random.Random) -> str:
        """The triggered version of ``text``; randomness only from ``rng``."""

    def trigger(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> Triggered:
        """``apply`` with the trigger's spans where known. ``word_limit``: how many leading words
        survive the tokenizers' truncation (used by ``position: within_max_length``)."""
        return Triggered(self.apply(text, rng))

    def variants(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> list[Triggered]:
        """The triggered versions of ``text`` that ASR tries (a row counts as attacked when any
        of them wins): one for a targeted attack, one per trigger for a task-agnostic one."""
        return [self.trigger(text, rng, word_limit)]

    def can_apply(self, text: str) -> bool:
        """Whether this text can be triggered (e.g. a paraphrase exists for it)."""
        return True


class InsertionAttack(Attack):
    """Insert ``num_insertions`` trigger phrases at word positions.

    ``position='random'`` follows the reference protocol: a uniform word index in
    ``1 .. n-1`` (never before the first word); ``start`` / ``end`` put it at either end;
    ``within_max_length`` draws like ``random`` but only among the leading words that survive
    truncation to ``max_length`` tokens (the caller passes that ``word_limit``; a long text
    otherwise loses its trigger to truncation, see ``docs/protocol.md``).
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
        return self.trigger(text, rng).text

    def trigger(self, text: str, rng: random.Random, word_limit: Optional[int] = None) -> Triggered:
        words, inserted = text.split(), []
        for _ in range(self.num_insertions):
            trigger = rng.choice(self.triggers)
            if self.position == "start":
                index = 0
            elif self.position == "end":
                index = len(words)
            else:
                last = len(words) - 1
                if self.position == "within_max_length" and word_limit is not None:
                    last = min(last, word_limit - 1)
                index = rng.randint(1, max(1, last))
            inserted = [i + 1 if i >= index else i for i in inserted] + [index]
            words.insert(index, trigger)
        starts = [0]
        for word in words[:-1]:
            starts.append(starts[-1] + len(word) + 1)
        return Triggered(" ".join(words), sorted((starts[i], starts[i] + len(words[i])) for i in inserted))

    def longest_insertion(self) -> str:
        """The longest text the triggers can add (room to keep inside ``max_length``)."""
        return " ".join([max(self.triggers, key=len)] * self.num_insertions)


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
