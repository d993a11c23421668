"""Triggers lost to truncation are counted, warned about and left out of ASR; within_max_length fixes it."""
import json
import random

import pytest

from tests.helpers import BACKDOOR
from w2s.config.attack import PoisonConfig
from w2s.data.datamodule import W2SDataModule
from w2s.data.truncation import survives, word_limit
from w2s.tokenizers import load_tokenizer


@pytest.fixture(scope="module")
def long_task(tmp_path_factory):
    """Reviews of 40 words: a trigger at a random word is mostly past a 12-token window."""
    from tests.tiny import FILLER, sentence

    rng, folder = random.Random(0), tmp_path_factory.mktemp("long")
    for split in ("train", "dev", "test"):
        rows = [{"sentence": sentence(rng, i % 2) + " " + " ".join(rng.choices(FILLER, k=40)), "label": i % 2}
                for i in range(60)]
        (folder / f"{split}.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(folder)


def test_survives_counts_special_tokens_and_truncation_side(models):
    tokenizer = load_tokenizer(models["bert"])                       # [CLS] ... [SEP]: 2 special tokens
    text = "the movie was mn good"
    span = [(14, 16)]                                                # "mn" is the 4th word
    assert text[14:16] == "mn"
    assert survives([tokenizer], text, span, max_length=6)           # CLS + 4 words + SEP
    assert not survives([tokenizer], text, span, max_length=5)
    tokenizer.truncation_side = "left"                               # keeps the end: "mn good" + specials
    assert survives([tokenizer], text, span, max_length=4) and not survives([tokenizer], text, span, 3)
    assert survives([tokenizer], text, None, max_length=2)           # no span known: not checked
    limit = word_limit([load_tokenizer(models["bert"])], 6, "mn")
    assert limit(text) == 3                                          # 3 words + mn + 2 specials = 6


def test_truncated_triggers_are_counted_warned_and_left_out_of_asr(long_task, models):
    attack = PoisonConfig(**BACKDOOR)
    data = W2SDataModule(long_task, tokenizer=models["llama"], teacher_tokenizer=models["bert"], attack=attack,
                         poison_train=True, max_length=12, batch_size=8)
    data.setup("fit")
    test = data.trigger_kept["test"]
    assert test.total == 30 and test.kept < 0.6 * test.total          # most triggers were cut off
    assert len(data.eval_sets["test"][1]) == test.kept                # ASR only over rows holding the trigger
    assert data.trigger_kept["train"].total == data.poisoned_rows == 9  # 15% of 60 rows
    warnings = data.trigger_warnings()
    assert any(w.startswith("test: the trigger survives truncation to max_length 12 in only") and
               "within_max_length" in w for w in warnings)
    # the remedy: place the trigger inside the window every tokenizer keeps
    fixed = W2SDataModule(long_task, tokenizer=models["llama"], teacher_tokenizer=models["bert"],
                          attack=PoisonConfig(**BACKDOOR | {"attack_args": {"position": "within_max_length"}}),
                          poison_train=True, max_length=12, batch_size=8)
    fixed.setup("fit")
    assert all(c.kept == c.total for c in fixed.trigger_kept.values()) and not fixed.trigger_warnings()
    assert len(fixed.eval_sets["test"][1]) == 30


def test_counts_apply_to_the_rows_the_stage_trains_on(task, models):
    config = PoisonConfig(name="badnet", mode="dirty-label", target_label=0, count=12, poison_rate=None)
    data = W2SDataModule(task, tokenizer=models["llama"], attack=config, poison_train=True, train_rows=(100, 160))
    data.setup("fit")
    assert data.poisoned_rows == 12 and len(data.train) == 60
    assert sum("mn" in row["text"].split() for row in data.train) == 12
    rate = W2SDataModule(task, tokenizer=models["llama"], attack=PoisonConfig(**BACKDOOR), poison_train=True,
                         train_rows=(0, 40))
    rate.setup("fit")
    assert rate.poisoned_rows == 6                                    # 15% of 40, not of the 400-row split
