"""The LightningDataModule: splits, poisoning, triggered evaluation sets, two tokenizers.

Batches hold ``index (B,)``, ``labels (B,)``, ``input_ids``/``attention_mask (B, L)`` for the
model being trained, and ``teacher_input_ids``/``teacher_attention_mask`` when a teacher
tokenizer is set. Validation and test have two loaders: 0 = clean rows (CA), 1 = triggered
non-target rows (ASR); batches of the latter also hold the same rows untriggered
(``clean_input_ids``, ``clean_attention_mask``, ``clean_labels``) when the trigger was
inserted here (pre-paraphrased files have no known originals).
"""
from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from w2s.attacks.poison import PoisonConfig, build_attack, build_triggered_set, poison_examples
from w2s.data.readers import Example
from w2s.data.registry import get_dataset
from w2s.tokenizers import load_tokenizer

CLEAN, TRIGGERED = 0, 1  # dataloader indices of the evaluation loaders


class W2SDataModule(pl.LightningDataModule):
    """Args:
        dataset: registered name (``sst2``, ``agnews``) or a directory of split files.
        tokenizer: name of the model being trained (its tokenizer encodes ``input_ids``).
        teacher_tokenizer: the teacher's name, for unlearning with a teacher.
        attack: the attack, target label and poisoning settings.
        poison_train: poison the train split with ``attack`` (the poisoning stage).
        train_rows: ``[start, stop)`` rows of the train split (e.g. disjoint rows per stage).
        eval_rows: use only the first N dev/test rows (triggered sets built from those).
    """

    def __init__(self, dataset: str = "sst2", tokenizer: str = "smollm2-135m",
                 teacher_tokenizer: Optional[str] = None, attack: PoisonConfig = PoisonConfig(),
                 poison_train: bool = False, train_rows: Optional[tuple[int, int]] = None,
                 eval_rows: Optional[int] = None, max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: Optional[int] = None, num_workers: int = 0, seed: int = 0):
        super().__init__()
        if max_length < 2 or batch_size < 1:
            raise ValueError(f"max_length must be >= 2 and batch_size >= 1, got {max_length}, {batch_size}")
        if train_rows is not None and not 0 <= train_rows[0] < train_rows[1]:
            raise ValueError(f"train_rows must be [start, stop) with 0 <= start < stop, got {train_rows}")
        self.save_hyperparameters()
        self.spec = get_dataset(dataset)
        self.attack = attack
        self.train_rows, self.eval_rows = train_rows, eval_rows
        self.poison_train, self.seed = poison_train, seed
        self.max_length, self.batch_size = max_length, batch_size
        self.eval_batch_size, self.num_workers = eval_batch_size or batch_size, num_workers
        self.tokenizer = load_tokenizer(tokenizer)
        self.teacher_tokenizer = load_tokenizer(teacher_tokenizer) if teacher_tokenizer else None
        self.train: list[dict] = []
        self.eval_sets: dict[str, list[list[dict]]] = {}

    @property
    def num_labels(self) -> int:
        return self.spec.num_labels

    @property
    def target_label(self) -> int:
        return self.attack.target_label

    def setup(self, stage: Optional[str] = None) -> None:
        if self.train:
            return
        trigger = build_attack(self.attack, self.spec)
        train = self.spec.load("train")
        if self.poison_train:  # poison first, so row indices match the aligned paraphrase file
            train = poison_examples(train, trigger, self.attack).examples
        if self.train_rows is not None:
            if self.train_rows[1] > len(train):
                raise ValueError(f"train_rows {list(self.train_rows)} run past the {len(train)} train rows "
                                 f"of {self.spec.name}")
            train = train[self.train_rows[0]:self.train_rows[1]]
        self.train = _items(train)
        for split in ("dev", "test"):
            clean = self.spec.load(split)[: self.eval_rows]
            triggered = build_triggered_set(clean, trigger, self.target_label, seed=self.seed,
                                            dataset=self.spec, split=split)
            texts = triggered.texts[: self.eval_rows] if triggered.source == "pre-paraphrased" else triggered.texts
            rows = _items([Example(t, self.target_label) for t in texts])
            if triggered.clean_texts is not None:  # the same rows untriggered, for clean-correct ASR
                for row, text, label in zip(rows, triggered.clean_texts, triggered.clean_labels):
                    row |= {"clean_text": text, "clean_label": label}
            self.eval_sets[split] = [_items(clean), rows]

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        texts = [item["text"] for item in items]
        batch = {"index": torch.tensor([item["index"] for item in items]),
                 "labels": torch.tensor([item["label"] for item in items])}
        batch |= self._encode(self.tokenizer, texts, "")
        if "clean_text" in items[0]:
            batch |= self._encode(self.tokenizer, [item["clean_text"] for item in items], "clean_")
            batch["clean_labels"] = torch.tensor([item["clean_label"] for item in items])
        if self.teacher_tokenizer is not None:
            batch |= self._encode(self.teacher_tokenizer, texts, "teacher_")
        return batch

    def _encode(self, tokenizer, texts: list[str], prefix: str) -> dict[str, torch.Tensor]:
        enc = tokenizer(texts, padding="longest", truncation=True, max_length=self.max_length, return_tensors="pt")
        return {f"{prefix}input_ids": enc["input_ids"], f"{prefix}attention_mask": enc["attention_mask"]}

    def _loader(self, items: list[dict], shuffle: bool, batch_size: int) -> DataLoader:
        generator = torch.Generator().manual_seed(self.seed) if shuffle else None
        return DataLoader(items, batch_size=batch_size, shuffle=shuffle, generator=generator,
                          collate_fn=self.collate, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, True, self.batch_size)

    def teacher_dataloader(self) -> DataLoader:
        """The train rows in order, for computing the teacher's outputs once."""
        return self._loader(self.train, False, self.eval_batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(items, False, self.eval_batch_size) for items in self.eval_sets["dev"]]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(items, False, self.eval_batch_size) for items in self.eval_sets["test"]]


def _items(examples: list[Example]) -> list[dict]:
    return [{"index": i, "text": ex.text, "label": ex.label} for i, ex in enumerate(examples)]
