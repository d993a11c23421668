"""SynAttack / Hidden Killer (Qi et al., 2021): a syntactic template as the trigger.

Paraphrasing with SCPN is done offline. With a file aligned row by row with the train split
(SST-2), a row is poisoned by replacing it with its own paraphrase (rows identical to the
original have none). Without one (AG News), dirty-label poisoning replaces a row by a
paraphrase drawn from a ``pool`` of pre-paraphrased sentences, the Hidden Killer way of
injecting templated sentences labelled with the target. Poisoned dev/test sets are the
dataset's pre-paraphrased files, which already carry the target label (see
`w2s.data.poisoning.build_triggered_set`).
"""
from __future__ import annotations

import random

from w2s.attacks.base import Attack, register_attack


@register_attack("synattack")
class SynAttack(Attack):
    def __init__(self, paraphrases: dict[str, str] | None = None, pool: list[str] | None = None):
        self.paraphrases = dict(paraphrases or {})
        self.pool = list(pool or [])

    @classmethod
    def aligned(cls, originals: list[str], paraphrased: list[str]) -> "SynAttack":
        """Build from the texts of a paraphrase file aligned row by row with ``originals``."""
        if len(originals) != len(paraphrased):
            raise ValueError(f"synattack: paraphrase file has {len(paraphrased)} rows, "
                             f"the split it must align with has {len(originals)}")
        return cls({o: p for o, p in zip(originals, paraphrased) if o != p})

    def can_apply(self, text: str) -> bool:
        return text in self.paraphrases or bool(self.pool)

    def apply(self, text: str, rng: random.Random) -> str:
        if text in self.paraphrases:
            return self.paraphrases[text]
        if self.pool:
            return rng.choice(self.pool)
        raise ValueError(f"synattack: no paraphrase for {text[:60]!r}")
