"""A dev split carved out of a train split, for datasets that ship none."""
from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Sequence, TypeVar

Row = TypeVar("Row")


@dataclass(frozen=True)
class HoldOut:
    """Carve a split out of another file: ``size`` rows chosen by a seeded shuffle."""

    size: int
    seed: int = 0

    def take(self, rows: Sequence[Row], split: str) -> list[Row]:
        """The held-out rows for ``split == "dev"``, the rest for ``"train"``, in file order."""
        order = list(range(len(rows)))
        random.Random(self.seed).shuffle(order)
        held = set(order[: self.size])
        return [r for i, r in enumerate(rows) if (i in held) == (split == "dev")]
