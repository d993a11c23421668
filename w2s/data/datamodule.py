"""The LightningDataModule: splits, poisoning, triggered evaluation sets, two tokenizers.

Batches hold ``index (B,)``, ``labels (B,)``, ``input_ids``/``attention_mask (B, L)`` for the
model being trained, and ``teacher_input_ids``/``teacher_attention_mask`` when a teacher
tokenizer is set. Poisoning with a task-agnostic attack keeps every row clean and adds its
triggered version (``triggered_input_ids``/``triggered_attention_mask``) and trigger index
(``trigger_index``, -1 where truncation removed it). Validation and test have two loaders:
0 = clean rows (CA), 1 = triggered non-target rows (ASR; every row, label -1, for a
task-agnostic attack); batches of the latter also hold the same rows untriggered
(``clean_input_ids``, ``clean_attention_mask``, ``clean_labels``) when the trigger was
inserted here or a paraphrase file is aligned with the split (otherwise the originals are unknown).

Triggered rows whose trigger every involved tokenizer cuts off by truncation are counted
(``trigger_kept``) and left out of the ASR sets: ASR is measured only on rows that hold the
trigger (``w2s.data.truncation``).
"""
from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, replace
from typing import Optional, Union

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader
from torchdata.stateful_dataloader import StatefulDataLoader

from w2s.config.attack import PoisonConfig
from w2s.data.poisoning import build_attack, build_triggered_set, poison_examples
from w2s.config.dataset import HubDataset
from w2s.config.optim import check_class_weights
from w2s.data.readers import Example
from w2s.data.registry import get_dataset
from w2s.data.sampling import EpochPermutation, LengthBuckets, ProcessBatches
from w2s.data.truncation import WARN_BELOW, survives, word_limit
from w2s.distributed import shard
from w2s.losses.class_weights import class_weights
from w2s.tokenizers import load_tokenizer

CLEAN, TRIGGERED = 0, 1  # dataloader indices of the evaluation loaders
SCALARS = {"index": "index", "labels": "label", "row": "row", "clean_labels": "clean_label",
           "trigger_index": "trigger_index"}  # batch key: row field


@dataclass(frozen=True)
class TriggerCount:
    """Of ``total`` triggered rows, ``kept`` still hold their trigger after truncation."""

    kept: int
    total: int

    @property
    def share(self) -> float:
        return self.kept / self.total if self.total else 1.0


class W2SDataModule(pl.LightningDataModule):
    """Args:
        dataset: registered name (``sst2``, ``agnews``) or a directory of split files.
        tokenizer: name of the model being trained (its tokenizer encodes ``input_ids``).
        teacher_tokenizer: the teacher's name, for unlearning with a teacher.
        attack: the attack, target label and poisoning settings.
        poison_train: poison the train split with ``attack`` (the poisoning stage).
        train_rows: ``[start, stop)`` rows of the train split (e.g. disjoint rows per stage);
            cut before poisoning, so ``attack.count`` / ``poison_rate`` apply to these rows.
        max_eval_rows: use only the first N dev/test rows (triggered sets built from those).
        trigger_tokenizers: more tokenizers (names) whose truncation a trigger must survive,
            so every stage of a pipeline measures ASR on the same rows.
        blind: validate on clean rows only, never triggered ones (a defender does not know the
            trigger: checkpoints are selected on clean data).
        dev_rows: ``[start, stop)`` rows of the train split, clean, to validate on instead of the
            dev split (the defender's own held-out rows); implies ``blind``.
        dev_probe: also build the dev split's clean and triggered rows (``probe_dataloader``)
            for a study that ranks settings by ASR: never validated on, so a blind stage stays
            blind, and ranking never reads the test rows it reports.
        bucket_batches: length bucketing: each run of this many training batches holds rows of
            similar length (``w2s.data.sampling.LengthBuckets``; 0: off). Evaluation rows are
            always taken longest first (less padding; the metrics do not depend on the order).
        num_workers: DataLoader worker processes (batches only pad token ids made once in ``setup``).
    """

    def __init__(self, dataset: Union[str, HubDataset] = "sst2", tokenizer: str = "smollm2-135m",
                 teacher_tokenizer: Optional[str] = None, attack: PoisonConfig = PoisonConfig(),
                 poison_train: bool = False, train_rows: Optional[tuple[int, int]] = None,
                 max_eval_rows: Optional[int] = None, max_length: int = 128, batch_size: int = 32,
                 eval_batch_size: Optional[int] = None, num_workers: int = 0, seed: int = 0,
                 trigger_tokenizers: Optional[list[str]] = None, blind: bool = False,
                 dev_rows: Optional[tuple[int, int]] = None, bucket_batches: int = 0, dev_probe: bool = False):
        super().__init__()
        if max_length < 2 or batch_size < 1 or bucket_batches < 0 or num_workers < 0:
            raise ValueError(f"max_length must be >= 2, batch_size >= 1, bucket_batches and num_workers >= 0, "
                             f"got {max_length}, {batch_size}, {bucket_batches}, {num_workers}")
        for key, rows in (("train_rows", train_rows), ("dev_rows", dev_rows)):
            if rows is not None and not 0 <= rows[0] < rows[1]:
                raise ValueError(f"{key} must be [start, stop) with 0 <= start < stop, got {rows}")
        self.save_hyperparameters()
        self.spec = get_dataset(dataset)
        self.attack = attack if attack.seed is not None else replace(attack, seed=seed)  # None: the run's seed
        self.train_rows, self.max_eval_rows = train_rows, max_eval_rows
        self.poison_train, self.seed = poison_train, seed
        self.dev_rows, self.blind = dev_rows, blind or dev_rows is not None
        self.dev_probe = dev_probe
        self.max_length, self.batch_size = max_length, batch_size
        self.eval_batch_size, self.num_workers = eval_batch_size or batch_size, num_workers
        self.bucket_batches = bucket_batches
        self._train_loader: Optional[StatefulDataLoader] = None
        self._resume_train: Optional[dict] = None  # a checkpoint's train-loader state, until the loader exists
        self.tokenizer = load_tokenizer(tokenizer)
        self.teacher_tokenizer = load_tokenizer(teacher_tokenizer) if teacher_tokenizer else None
        self.trigger_tokenizers = [t for t in (self.tokenizer, self.teacher_tokenizer) if t is not None]
        self.trigger_tokenizers += [load_tokenizer(name) for name in dict.fromkeys(trigger_tokenizers or [])
                                    if name not in (tokenizer, teacher_tokenizer)]
        self.encodings = [(text, f"{prefix}input_ids", self.tokenizer)  # (row text, its ids, tokenizer)
                          for text, prefix in (("text", ""), ("clean_text", "clean_"), ("triggered_text", "triggered_"))]
        if self.teacher_tokenizer is not None:
            self.encodings.append(("text", "teacher_input_ids", self.teacher_tokenizer))
        self.train: list[dict] = []
        self.eval_sets: dict[str, list[list[dict]]] = {}
        self.poisoned_rows = 0
        self.poisoned_indices: list[int] = []  # positions in the train rows (inserted triggers)
        self.trigger_kept: dict[str, TriggerCount] = {}

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
        limit = None
        if getattr(trigger, "position", None) == "within_max_length":
            limit = word_limit(self.trigger_tokenizers, self.max_length, trigger.longest_insertion())
        train = self.spec.load("train")
        for key, rows in (("train_rows", self.train_rows), ("dev_rows", self.dev_rows)):
            if rows is not None and rows[1] > len(train):
                raise ValueError(f"{key} {list(rows)} run past the {len(train)} train rows of {self.spec.name}")
        dev = train[self.dev_rows[0]:self.dev_rows[1]] if self.dev_rows else None
        if self.train_rows is not None:
            train = train[self.train_rows[0]:self.train_rows[1]]
        if self.poison_train and trigger.task_agnostic:  # every row, clean and with one trigger k
            rng, spans = random.Random(self.attack.seed), []
            self.train = _items(train)
            for item in self.train:
                triggered, k = trigger.trigger_index(item["text"], rng, limit(item["text"]) if limit else None)
                item |= {"triggered_text": triggered.text, "trigger_index": k}
                spans.append(triggered.spans)
            kept = self._kept([item["triggered_text"] for item in self.train], spans)
            for item, keep in zip(self.train, kept):
                item["trigger_index"] = item["trigger_index"] if keep else -1  # truncated away: no target
            self.poisoned_rows = sum(kept)
            self.trigger_kept["train"] = TriggerCount(sum(kept), len(kept))
        elif self.poison_train:
            split = poison_examples(train, trigger, self.attack, limit)
            train, self.poisoned_indices = split.examples, split.poisoned_indices
            self.poisoned_rows = len(split.poisoned_indices)
            kept = self._kept([train[i].text for i in split.poisoned_indices], split.spans)
            self.trigger_kept["train"] = TriggerCount(sum(kept), len(kept))
        if not self.train:
            self.train = _items(train)
        if self.blind:  # validation sees clean rows only: the defender's own, or the dev split's
            self.eval_sets["dev"] = [_items(dev if dev is not None else self.spec.load("dev")[: self.max_eval_rows])]
        for split in ("dev", "test") if self.dev_probe or not self.blind else ("test",):
            clean = self.spec.load(split)[: self.max_eval_rows]
            triggered = build_triggered_set(clean, trigger, self.target_label, seed=self.seed,
                                            dataset=self.spec, split=split, word_limit=limit)
            texts = triggered.texts[: self.max_eval_rows] if triggered.source == "pre-paraphrased" else triggered.texts
            rows = [{"text": t, "label": triggered.target_label, "row": row}
                    for t, row in zip(texts, triggered.rows or range(len(texts)))]
            if triggered.clean_texts is not None:  # the same rows untriggered, for clean-correct ASR
                for row, text, label in zip(rows, triggered.clean_texts, triggered.clean_labels):
                    row |= {"clean_text": text, "clean_label": label}
            kept = self._kept(texts, triggered.spans)
            self.trigger_kept[split] = TriggerCount(sum(kept), len(kept))
            rows = [row for row, keep in zip(rows, kept) if keep]
            if not rows:
                raise ValueError(f"no triggered {split} row keeps its trigger within max_length {self.max_length}: "
                                 f"raise max_length or set attack.attack_args.position: within_max_length")
            self.eval_sets["probe" if self.blind and split == "dev" else split] = [
                _items(clean), [{"index": i} | row for i, row in enumerate(rows)]]
        if self.dev_probe and not self.blind:
            self.eval_sets["probe"] = self.eval_sets["dev"]
        for items in (self.train, *(rows for sets in self.eval_sets.values() for rows in sets)):
            self._tokenize(items)

    def _kept(self, texts: list[str], spans) -> list[bool]:
        if spans is None:
            return [True] * len(texts)
        return [survives(self.trigger_tokenizers, text, span, self.max_length) for text, span in zip(texts, spans)]

    def trigger_warnings(self) -> list[str]:
        """One line per split where fewer than 95% of the triggered rows keep their trigger."""
        return [f"{split}: the trigger survives truncation to max_length {self.max_length} in only "
                f"{count.kept} of {count.total} triggered rows ({count.share:.1%}; ASR counts only those): "
                f"set attack.attack_args.position: within_max_length, or raise max_length"
                for split, count in self.trigger_kept.items() if count.share < WARN_BELOW]

    def class_weights(self, mode: Optional[str]) -> Optional[list[float]]:
        """Per-class loss weights from the training labels (``"balanced"``), or ``None``."""
        check_class_weights(mode)
        if mode is None:
            return None
        self.setup("fit")
        return class_weights(torch.tensor([row["label"] for row in self.train]), self.num_labels).tolist()

    def _tokenize(self, items: list[dict]) -> None:
        """Add each text's token ids (truncated, unpadded) to its row, once: batches only pad them."""
        for text, ids, tokenizer in self.encodings:
            if items and text in items[0]:
                encoded = tokenizer([item[text] for item in items], truncation=True, max_length=self.max_length)
                for item, row in zip(items, encoded["input_ids"]):
                    item[ids] = row

    def collate(self, items: list[dict]) -> dict[str, torch.Tensor]:
        batch = {key: torch.tensor([item[name] for item in items]) for key, name in SCALARS.items() if name in items[0]}
        for _, ids, tokenizer in self.encodings:
            if ids in items[0]:
                batch |= _pad(tokenizer, [item[ids] for item in items], ids.removesuffix("input_ids"))
        return batch

    def _loader(self, items: list[dict], shuffle: bool, batch_size: int) -> DataLoader:
        """This process's loader (all rows with one process; ``w2s.distributed``). Every loader
        draws from a seeded generator of its own, never from the global one, so that evaluation
        does not move the random state training continues from. The train loader is stateful
        and its order a function of the seed and the epoch (``w2s.data.sampling``): Lightning's
        checkpoints hold where in the epoch it was, and a resumed fit continues with the next
        batch of the same order."""
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        options = dict(generator=torch.Generator().manual_seed(self.seed), collate_fn=self.collate,
                       num_workers=self.num_workers)
        if self.num_workers:  # the tokenizers were used before the workers fork
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if shuffle:
            order = EpochPermutation(len(items), self.seed)
            if self.bucket_batches:
                order = LengthBuckets(order, [len(item["input_ids"]) for item in items], batch_size,
                                      self.bucket_batches)
            batches = ProcessBatches(order, batch_size, rank, world)
            return StatefulDataLoader(items, batch_sampler=batches, **options)
        longest_first = sorted(items, key=lambda item: -len(item["input_ids"]))
        return DataLoader(shard(longest_first, rank, world), batch_size=batch_size, **options)

    def train_dataloader(self) -> DataLoader:
        self._train_loader = self._loader(self.train, True, self.batch_size)
        if self._resume_train is not None:
            self._train_loader.load_state_dict(self._resume_train)
            self._resume_train = None
        return self._train_loader

    def state_dict(self) -> dict:
        """Where the train loader is in its epoch; Lightning saves it with every checkpoint and
        hands it back through ``load_state_dict`` before asking for the loader. (Lightning's
        own saving of stateful loaders is not used: it drops the state when the optimizer
        schedule reads ``estimated_stepping_batches``, Lightning issue #20550.)"""
        return {"train_loader": self._train_loader.state_dict()} if self._train_loader is not None else {}

    def load_state_dict(self, state_dict: dict) -> None:
        """Under FSDP Lightning restores after its setup has already started the loader's first
        iterator (reading ``estimated_stepping_batches``); no batch has been drawn from it yet, so
        that iterator takes the state itself. An iterator with DataLoader workers cannot: the
        interrupted epoch then starts again, with a warning."""
        self._resume_train = state_dict.get("train_loader")
        started = getattr(self._train_loader, "_iterator", None)
        if self._resume_train is None or started is None:
            return
        if hasattr(started, "load_state_dict"):
            started.load_state_dict(self._resume_train)
        else:
            print("w2s: warning: resumed under fsdp with num_workers > 0: the interrupted epoch starts again "
                  "from its first batch", file=sys.stderr, flush=True)
        self._resume_train = None

    def teacher_dataloader(self) -> DataLoader:
        """This process's share of the train rows in order, for computing the teacher's outputs once."""
        return self._loader(self.train, False, self.eval_batch_size)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(items, False, self.eval_batch_size) for items in self.eval_sets["dev"]]

    def probe_dataloader(self) -> list[DataLoader]:
        """The dev split's clean and triggered rows (``dev_probe``), for a test pass logged as ``dev/*``."""
        return [self._loader(items, False, self.eval_batch_size) for items in self.eval_sets["probe"]]

    def test_dataloader(self) -> list[DataLoader]:
        return [self._loader(items, False, self.eval_batch_size) for items in self.eval_sets["test"]]


def _items(examples: list[Example]) -> list[dict]:
    return [{"index": i, "text": ex.text, "label": ex.label} for i, ex in enumerate(examples)]


def _pad(tokenizer, rows: list[list[int]], prefix: str) -> dict[str, torch.Tensor]:
    """``PREFIXinput_ids``/``PREFIXattention_mask`` ``(B, L)``: the rows padded to the longest,
    on the tokenizer's padding side."""
    enc = tokenizer.pad({"input_ids": rows}, padding="longest", return_tensors="pt")
    return {f"{prefix}input_ids": enc["input_ids"], f"{prefix}attention_mask": enc["attention_mask"]}
