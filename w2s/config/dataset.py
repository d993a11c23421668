"""Where a ``datasets`` dataset comes from and how to read it (the reader: ``w2s.data.hub``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

DEFAULT_SPLITS = {"train": "train", "dev": "validation", "test": "test"}
PREFIX = "hf:"


@dataclass(frozen=True)
class HubDataset:
    """Where a ``datasets`` dataset comes from and how to read it.

    Args:
        path: hub id (``stanfordnlp/imdb``), a ``save_to_disk`` folder, or a folder of data files.
        name: the hub config name (``sst2`` of ``nyu-mll/glue``).
        splits: project split (``train``/``dev``/``test``) -> the dataset's split name.
        text_column: default ``sentence``, else ``text``.
        label_column: integer (or ``ClassLabel``) labels, or strings listed in ``label_names``.
        label_names: for string labels: their order gives the class ids.
        revision: a hub revision (commit, tag or branch) to pin.
        data_files: split name -> a file's path or URL, read by the builder ``path`` names
            (``json`` for JSON lines); pin URLs at a commit, not a branch.
    """

    path: str
    name: Optional[str] = None
    splits: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_SPLITS))
    text_column: Optional[str] = None
    label_column: str = "label"
    label_names: Optional[list[str]] = None
    revision: Optional[str] = None
    data_files: Optional[dict[str, str]] = None

    @property
    def display_name(self) -> str:
        """``imdb`` for ``stanfordnlp/imdb``, ``glue_sst2`` for ``nyu-mll/glue`` config ``sst2``; for
        data files the folder of the first (``.../imdb/train.json``: ``imdb``)."""
        if self.data_files:
            return next(iter(self.data_files.values())).rstrip("/").split("/")[-2]
        return self.path.rstrip("/").split("/")[-1] + (f"_{self.name}" if self.name else "")

    @classmethod
    def parse(cls, text: str) -> "HubDataset":
        """``hf:ID`` or ``hf:ID:CONFIG``."""
        path, _, name = text[len(PREFIX):].partition(":")
        if not path:
            raise ValueError(f"dataset {text!r}: write hf:ID or hf:ID:CONFIG (e.g. hf:nyu-mll/glue:sst2)")
        return cls(path=path, name=name or None)
