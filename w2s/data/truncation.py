"""Does an inserted trigger survive tokenisation with truncation to ``max_length``?

A trigger inserted at a random word of a long text is cut off when the text is truncated:
that row is then poisoned, or evaluated, without any trigger in it (on long movie reviews at
``max_length: 32``, 67-73% of the rows). The checks here count special tokens the way the
model's input does, and honour each tokenizer's ``truncation_side``.
"""
from __future__ import annotations

from typing import Optional, Sequence

from w2s.attacks.base import Span

WARN_BELOW = 0.95  # share of triggered rows that must keep their trigger, or the stage warns


def _length(tokenizer, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=True, truncation=False)["input_ids"])


def survives(tokenizers: Sequence, text: str, spans: Optional[list[Span]], max_length: int) -> bool:
    """True when every tokenizer keeps all of ``spans`` of ``text`` within ``max_length`` tokens.

    With right truncation the prefix up to the last trigger's end must fit; with left
    truncation the suffix from the first trigger's start. ``spans=None`` (no known span,
    e.g. a syntactic paraphrase) counts as surviving.
    """
    if not spans:
        return True
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    for tokenizer in tokenizers:
        part = text[start:] if getattr(tokenizer, "truncation_side", "right") == "left" else text[:end]
        if _length(tokenizer, part) > max_length:
            return False
    return True


def word_limit(tokenizers: Sequence, max_length: int, insertion: str):
    """``text -> n``: the number of leading words of ``text`` that, with ``insertion`` added,
    every (right-truncating) tokenizer keeps within ``max_length`` tokens; at least 1."""
    def limit(text: str) -> int:
        words = text.split()

        def fits(n: int) -> bool:
            candidate = " ".join(words[:n] + [insertion])
            return all(_length(t, candidate) <= max_length for t in tokenizers)

        if fits(len(words)):
            return len(words)
        low, high = 1, len(words)  # fits(high) is False; find the largest n with fits(n)
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if fits(middle) else (low, middle)
        return low
    return limit
