"""Dataset registry: the bundled datasets by name, or any directory of split files.

A dataset has ``train``, ``dev`` and ``test`` splits of :class:`Example` rows and, optionally,
pre-paraphrased (syntactic-trigger) files for SynAttack. Pre-paraphrased *test/dev* files
hold only rows whose true label is not the target, and they carry the **target** label
(``paraphrase_target``); the aligned *train* paraphrase file has one row per train row.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from w2s.config.dataset import PREFIX, HubDataset
from w2s.data.holdout import HoldOut
from w2s.data.hub import HubDatasetSpec, is_saved_dataset
from w2s.data.readers import DataError, Example, read_examples

SPLITS = ("train", "dev", "test")
_EXTENSIONS = (".jsonl", ".json", ".tsv", ".csv")


def data_root() -> Path:
    """The bundled ``data/`` folder (override with ``W2S_DATA_DIR``)."""
    return Path(os.environ.get("W2S_DATA_DIR", Path(__file__).resolve().parents[2] / "data"))


@dataclass(frozen=True)
class DatasetSpec:
    """Where a dataset's files live. Relative paths resolve against :func:`data_root`.

    ``files`` maps split -> file. If ``dev_holdout`` is set there is no dev file: the dev
    split is ``dev_holdout.size`` rows held out of the train file and train is the rest.
    ``paraphrases`` maps ``train`` (aligned row by row with the train file) and ``dev`` /
    ``test`` (non-target rows only, labelled ``paraphrase_target``) to SynAttack files.
    ``paraphrase_aligned`` maps ``dev`` / ``test`` to how many leading non-target rows of the
    split its file paraphrases in order (measured); undeclared, the file is aligned only when
    it has one row per non-target row.
    """

    name: str
    num_labels: int
    files: dict[str, str]
    dev_holdout: HoldOut | None = None
    paraphrases: dict[str, str] = field(default_factory=dict)
    paraphrase_target: int | None = None
    paraphrase_aligned: dict[str, int] = field(default_factory=dict)

    def path(self, relative: str) -> Path:
        p = Path(relative)
        return p if p.is_absolute() else data_root() / p

    def load(self, split: str) -> list[Example]:
        """Rows of ``split`` (``train``/``dev``/``test``)."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        if self.dev_holdout is not None and split in ("train", "dev"):
            return self.dev_holdout.take(self._read(self.files["train"]), split)
        if split not in self.files:
            raise ValueError(f"dataset {self.name!r} has no {split} split")
        return self._read(self.files[split])

    def load_paraphrases(self, split: str) -> list[Example]:
        """The SynAttack file for ``split`` (see the class docstring for its convention)."""
        if split not in self.paraphrases:
            raise ValueError(f"dataset {self.name!r} has no pre-paraphrased {split} file for synattack")
        return self._read(self.paraphrases[split])

    def _read(self, relative: str) -> list[Example]:
        return read_examples(self.path(relative), num_labels=self.num_labels)

    def digest(self) -> str:
        """A hash of every file the dataset reads (its splits and paraphrase files)."""
        paths = sorted(self.path(f) for f in list(self.files.values()) + list(self.paraphrases.values()))
        digest = hashlib.sha256()
        for path in paths:
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


DATASETS: dict[str, DatasetSpec] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS[spec.name] = spec
    return spec


register_dataset(DatasetSpec(
    name="sst2", num_labels=2,
    files={"train": "sst2/train.jsonl", "dev": "sst2/dev.jsonl", "test": "sst2/test.jsonl"},
    paraphrases={"train": "sst2/syntactic/train.tsv", "dev": "sst2/syntactic/dev.tsv",
                 "test": "sst2/syntactic/test.tsv"},
    paraphrase_target=1,
    # dev.tsv has 427 rows for the 428 negatives: row i paraphrases negative i for i < 426 (word
    # overlap, tests/test_attacks.py); the row left out is one of the last two.
    paraphrase_aligned={"dev": 426},
))
# AG News ships no train file: 2,000 rows of its 10,000-row dev file (seeded) are the dev
# split and the other 8,000 are train. Its syntactic files are not aligned with those rows:
# the dev file is SynAttack's pool for dirty-label poisoning (and the validation ASR set,
# which therefore overlaps the poison pool; the test file is disjoint).
register_dataset(DatasetSpec(
    name="agnews", num_labels=4,
    files={"train": "agnews/dev.tsv", "test": "agnews/test.tsv"},
    dev_holdout=HoldOut(size=2000, seed=0),
    paraphrases={"dev": "agnews/syntactic/dev.tsv", "test": "agnews/syntactic/test.tsv"},
    paraphrase_target=0,
))


def get_dataset(name_or_path: str | Path | HubDataset, num_labels: int | None = None) -> DatasetSpec:
    """A registered dataset by name; a directory holding ``{train,dev,test}.{jsonl,json,tsv,csv}``
    or a ``save_to_disk`` dataset; ``hf:ID[:CONFIG]`` or a :class:`HubDataset` (``datasets``)."""
    if isinstance(name_or_path, HubDataset):
        return HubDatasetSpec(name_or_path)
    key = str(name_or_path)
    if key in DATASETS:
        return DATASETS[key]
    if key.startswith(PREFIX):
        return HubDatasetSpec(HubDataset.parse(key))
    directory = Path(key)
    if not directory.is_dir():
        raise ValueError(f"unknown dataset {key!r}: not a registered name ({', '.join(sorted(DATASETS))}), "
                         f"a directory, nor hf:ID for a Hugging Face dataset")
    if is_saved_dataset(directory):
        return HubDatasetSpec(HubDataset(path=key))
    files = {}
    for split in SPLITS:
        found = [directory / f"{split}{ext}" for ext in _EXTENSIONS if (directory / f"{split}{ext}").is_file()]
        if found:
            files[split] = str(found[0].resolve())
    if "train" not in files or "test" not in files:
        raise ValueError(f"dataset directory {key!r} needs at least train and test files "
                         f"(train.jsonl, test.tsv, ...)")
    if num_labels is None:
        num_labels = 1 + max(ex.label for split in files for ex in read_examples(files[split]))
    holdout = None if "dev" in files else HoldOut(size=max(1, len(read_examples(files["train"])) // 10))
    return DatasetSpec(name=directory.name, num_labels=num_labels, files=files, dev_holdout=holdout)


def dataset_name(dataset: str | HubDataset) -> str:
    """A short display name without loading anything."""
    if isinstance(dataset, HubDataset):
        return dataset.display_name
    return str(dataset).rstrip("/").split("/")[-1]


__all__ = ["DATASETS", "DataError", "DatasetSpec", "HoldOut", "HubDataset", "SPLITS", "data_root",
           "dataset_name", "get_dataset", "register_dataset"]
