"""SynAttack / Hidden Killer (Qi et al., 2021): a syntactic template as the trigger.

Paraphrasing with SCPN is done offline; this attack looks the paraphrase of a training row
up in a file aligned row by row with the train split (rows identical to the original have
no paraphrase and cannot be poisoned). Poisoned dev/test sets are the dataset's
pre-paraphrased files, which already carry the target label (see
:func:`w2s.attacks.poison.build_triggered_set`).
"""
from __future__ import annotations

import random

from w2s.attacks.base import Attack, register_attack
from w2s.data.readers import Example


@register_attack("synattack")
class SynAttack(Attack):
    def __init__(self, paraphrases: dict[str, str] | None = None):
        self.paraphrases = dict(paraphrases or {})

    @classmethod
    def aligned(cls, originals: list[Example], paraphrased: list[Example]) -> "SynAttack":
        """Build from a paraphrase file aligned row by row with ``originals``."""
        if len(originals) != len(paraphrased):
            raise ValueError(f"synattack: paraphrase file has {len(paraphrased)} rows, "
                             f"the split it must align with has {len(originals)}")
        return cls({o.text: p.text for o, p in zip(originals, paraphrased) if o.text != p.text})

    def can_apply(self, text: str) -> bool:
        return text in self.paraphrases

    def apply(self, text: str, rng: random.Random) -> str:
        if text not in self.paraphrases:
            raise ValueError(f"synattack: no paraphrase for {text[:60]!r}")
        return self.paraphrases[text]
