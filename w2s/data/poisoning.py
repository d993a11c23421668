"""Poisoning a training split and building the triggered sets that ASR is measured on.

Two label conventions, kept apart by name:

* ``poison_examples`` (training data): *clean-label* mode triggers rows whose label already
  is ``target_label`` and keeps it (the W2SDefense reference: the first 1,000 target rows);
  *dirty-label* mode triggers non-target rows and relabels them to the target (OpenBackdoor:
  ``poison_rate`` 0.1).
* ``build_triggered_set`` (evaluation): rows whose **true** label is not the target, with
  the trigger; ASR is the share predicted as the target. A task-agnostic attack (``por``)
  triggers every row, with target -1: ASR is the share whose prediction changes. Inserted triggers are applied to
  the clean non-target rows here; SynAttack's pre-paraphrased files already hold only such
  rows and carry the *target* label in their label column, which is checked, not trusted.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional

from w2s.attacks.base import Attack, Span, attack_class
from w2s.attacks.synattack import SynAttack
from w2s.config.attack import PoisonConfig
from w2s.data.readers import Example
from w2s.data.registry import DatasetSpec


def build_attack(config: PoisonConfig, dataset: DatasetSpec | None = None) -> Attack:
    """Instantiate ``config.name``. SynAttack reads the dataset's train paraphrases aligned
    with the train rows, else (dirty-label only) uses its dev paraphrases as a pool."""
    cls = attack_class(config.name)
    if cls is SynAttack and not config.attack_args:
        if dataset is None:
            raise ValueError("synattack needs a dataset with pre-paraphrased files")
        if "train" in dataset.paraphrases:
            return SynAttack.aligned([ex.text for ex in dataset.load("train")],
                                    [ex.text for ex in dataset.load_paraphrases("train")])
        if config.mode != "dirty-label":
            raise ValueError(f"synattack on {dataset.name}: no paraphrases aligned with its train rows, so only "
                             f"dirty-label poisoning (from the paraphrase pool) is possible")
        return SynAttack(pool=[ex.text for ex in dataset.load_paraphrases("dev")])
    try:
        return cls(**config.attack_args)
    except TypeError as err:
        raise ValueError(f"invalid attack_args for {config.name}: {err}") from None


WordLimit = Callable[[str], Optional[int]]  # text -> leading words that survive truncation


@dataclass(frozen=True)
class PoisonedSplit:
    """A training split after poisoning: all rows in their original order, which were
    poisoned, and their trigger spans (``None`` per row where the trigger is no span)."""

    examples: list[Example]
    poisoned_indices: list[int]
    spans: list[Optional[list[Span]]] = field(default_factory=list)


class PoisoningError(ValueError):
    """The rows cannot take the attack as configured (too few eligible rows)."""


def poison_examples(examples: list[Example], attack: Attack, config: PoisonConfig,
                    word_limit: WordLimit | None = None) -> PoisonedSplit:
    """Trigger ``config.num_poisoned(len(examples))`` eligible rows (see module docstring)."""
    rng = random.Random(config.seed or 0)  # None outside a run (which sets its own seed): 0
    clean_label = config.mode == "clean-label"
    eligible = [i for i, ex in enumerate(examples)
                if (ex.label == config.target_label) == clean_label and attack.can_apply(ex.text)]
    wanted = config.num_poisoned(len(examples))
    if wanted > len(eligible):
        kind = "target-label" if clean_label else "non-target"
        raise PoisoningError(f"cannot poison {wanted} rows: only {len(eligible)} {kind} rows "
                         f"can take the {attack.name} trigger")
    chosen = eligible[:wanted] if config.selection == "first" else sorted(rng.sample(eligible, wanted))
    poisoned, spans = list(examples), []
    for i in chosen:
        triggered = _trigger(attack, examples[i].text, rng, word_limit)
        poisoned[i] = Example(triggered.text, config.target_label)
        spans.append(triggered.spans)
    return PoisonedSplit(poisoned, chosen, spans)


def _trigger(attack: Attack, text: str, rng: random.Random, word_limit: WordLimit | None):
    return attack.trigger(text, rng, word_limit(text) if word_limit else None)


@dataclass(frozen=True)
class TriggeredSet:
    """Evaluation inputs for ASR: triggered rows whose true label is not ``target_label``
    (every row, ``target_label`` -1, for a task-agnostic attack).

    ``clean_texts`` / ``clean_labels`` are the same rows before triggering (for ASR among
    rows classified correctly when clean) and ``spans`` the inserted triggers' character
    spans; ``None`` for paraphrase files whose originals are not known.
    ``source`` is ``"inserted"``, ``"paraphrased"`` (a paraphrase file aligned with the
    split's non-target rows) or ``"pre-paraphrased"`` (not aligned). A task-agnostic attack gives each
    row one version per trigger (``rows`` maps a version to its row).
    """

    texts: list[str]
    target_label: int
    source: str
    clean_texts: list[str] | None = None
    clean_labels: list[int] | None = None
    spans: list[list[Span] | None] | None = None
    rows: list[int] | None = None  # the source row of each version (several per row: task-agnostic)


def build_triggered_set(examples: list[Example], attack: Attack, target_label: int, seed: int = 0,
                        dataset: DatasetSpec | None = None, split: str = "test",
                        word_limit: WordLimit | None = None) -> TriggeredSet:
    """The ASR set for ``split``: ``examples`` are that split's clean rows."""
    if isinstance(attack, SynAttack):
        return _pre_paraphrased(dataset, split, target_label, examples)
    rng = random.Random(seed)
    rows = [ex for ex in examples if (attack.task_agnostic or ex.label != target_label) and attack.can_apply(ex.text)]
    if not rows:
        raise ValueError(f"no non-target rows to trigger (target_label={target_label})")
    versions = [(row, ex, t) for row, ex in enumerate(rows)
                for t in attack.variants(ex.text, rng, word_limit(ex.text) if word_limit else None)]
    return TriggeredSet([t.text for _, _, t in versions], -1 if attack.task_agnostic else target_label, "inserted",
                        [ex.text for _, ex, _ in versions], [ex.label for _, ex, _ in versions],
                        [t.spans for _, _, t in versions], [row for row, _, _ in versions])


def aligned_rows(dataset: DatasetSpec, split: str, paraphrased: int, originals: int) -> int:
    """How many leading non-target rows of ``split`` its paraphrase file (``paraphrased`` rows,
    for ``originals`` non-target rows) paraphrases in order: as the dataset declares
    (``paraphrase_aligned``), else all when the counts match, else none."""
    return dataset.paraphrase_aligned.get(split, paraphrased if paraphrased == originals else 0)


def _pre_paraphrased(dataset: DatasetSpec | None, split: str, target_label: int,
                     examples: list[Example]) -> TriggeredSet:
    """The split's paraphrase file. When its rows paraphrase the split's non-target rows in order
    as far as ``examples`` reach (one row per non-target row, as SST-2's test file, or a prefix
    the dataset declares in ``paraphrase_aligned``, as SST-2's dev file), the originals are
    known: the paraphrases of ``examples``' non-target rows (a prefix of the split, as the
    DataModule passes) come with them, for clean-correct ASR (source ``paraphrased``).
    Otherwise the whole file, originals unknown."""
    if dataset is None:
        raise ValueError("synattack evaluation needs a dataset with pre-paraphrased files")
    if dataset.paraphrase_target != target_label:
        raise ValueError(f"{dataset.name}'s pre-paraphrased files are labelled with target "
                         f"{dataset.paraphrase_target}; target_label={target_label} would compute ASR backwards")
    rows = dataset.load_paraphrases(split)
    wrong = [ex for ex in rows if ex.label != target_label]
    if wrong:
        raise ValueError(f"{dataset.name} {split} paraphrase file: {len(wrong)} rows are not labelled "
                         f"with the target {target_label}")
    originals = [ex for ex in dataset.load(split) if ex.label != target_label]
    evaluated = [ex for ex in examples if ex.label != target_label]
    if len(evaluated) > aligned_rows(dataset, split, len(rows), len(originals)) \
            or originals[:len(evaluated)] != evaluated:
        return TriggeredSet([ex.text for ex in rows], target_label, "pre-paraphrased")
    return TriggeredSet([ex.text for ex in rows[:len(evaluated)]], target_label, "paraphrased",
                        [ex.text for ex in evaluated], [ex.label for ex in evaluated])

