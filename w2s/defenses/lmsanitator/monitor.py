"""LMSanitator's monitoring and purging at inference (``3-PV_monitoring``): an input is flagged
when its monitored output agrees in sign with a found attack vector on more than ``agreement``
of the dimensions (no extra forward pass); a flagged text loses one word (with every other
occurrence of it) at a time, in order, until the flag clears, and the prediction is made on
that text."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import Tensor

from w2s.losses.attack_vectors import sign_agreement


def flags(outputs: Tensor, vectors: Tensor, agreement: float = 0.8) -> Tensor:
    """``(B,)`` bool: rows whose output agrees in sign with some vector on more than ``agreement``."""
    if not 0.5 <= agreement < 1.0:
        raise ValueError(f"lmsanitator agreement must lie in [0.5, 1), got {agreement}")
    return sign_agreement(outputs, vectors) > agreement


def deletions(text: str) -> list[tuple[str, str]]:
    """``(word, text without every occurrence of it)`` for each distinct word, in reading order."""
    words = text.split()
    return [(word, " ".join(w for w in words if w != word)) for word in dict.fromkeys(words)]


@dataclass(frozen=True)
class Purged:
    text: str         # the text predicted on (the original when no deletion cleared the flag)
    deleted: str | None
    passes: int       # forward passes spent: the deletions tried, in order, up to the first that cleared
    cleared: bool


def purge(text: str, flagged: Callable[[list[str]], list[bool]], batch: int = 16) -> Purged:
    """Try :func:`deletions` in order, ``batch`` at a time, until one is not ``flagged``."""
    candidates = deletions(text)
    for start in range(0, len(candidates), batch):
        chunk = candidates[start:start + batch]
        for offset, ((word, purged), still) in enumerate(zip(chunk, flagged([t for _, t in chunk]))):
            if not still:
                return Purged(purged, word, start + offset + 1, True)
    return Purged(text, None, len(candidates), False)
