"""A built adapter benchmark (``w2s adapters build``) read back: its settings, the adapters kept
(``metadata.jsonl``) and each adapter's updates as the detector sees them."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from w2s.adapters.updates import Preprocessing, adapter_head, adapter_updates, base_weights, preprocessing


@dataclass
class Benchmark:
    """``records``: one row of ``metadata.jsonl`` per adapter kept (label: ``backdoored``)."""

    folder: Path
    config: dict
    records: list[dict]
    _updates: list[dict[str, Tensor]] = field(default_factory=list, repr=False)
    _heads: list[tuple[Tensor, Tensor | None]] = field(default_factory=list, repr=False)

    @property
    def labels(self) -> list[int]:
        return [int(r["backdoored"]) for r in self.records]

    @property
    def name(self) -> str:
        return f"{self.folder.name} ({self.config.get('variant', 'lora')})"

    def updates(self) -> list[dict[str, Tensor]]:
        """Every adapter's updates (read once; DoRA against the base model's weights)."""
        if not self._updates:
            base = base_weights(self.config["base_model"]) if self.config.get("variant") == "dora" else None
            self._updates = [adapter_updates(self.folder / r["adapter"], base) for r in self.records]
        return self._updates

    def heads(self) -> list[tuple[Tensor, Tensor | None]]:
        """Every adapter's classification head (``w2s.adapters.updates.adapter_head``; read once)."""
        if not self._heads:
            self._heads = [adapter_head(self.folder / r["adapter"]) for r in self.records]
        return self._heads

    def preprocessing(self) -> Preprocessing:
        return preprocessing(self.updates()[0], self.config["base_model"])


def load_benchmark(folder: str | Path) -> Benchmark:
    """The benchmark in ``folder``; refused when it is not one or holds one class only."""
    folder = Path(folder)
    if not (folder / "metadata.jsonl").is_file() or not (folder / "config.json").is_file():
        raise ValueError(f"benchmark: {folder} holds no metadata.jsonl and config.json "
                         f"(build one with `w2s adapters build`)")
    records = [json.loads(line) for line in (folder / "metadata.jsonl").read_text().splitlines() if line.strip()]
    labels = {r["backdoored"] for r in records}
    if labels != {False, True}:
        raise ValueError(f"benchmark: {folder} holds {len(records)} adapters, not both benign and backdoored ones")
    return Benchmark(folder, json.loads((folder / "config.json").read_text()), records)
