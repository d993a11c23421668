"""Attacks and poisoning: triggers exactly as configured, exact counts, determinism."""
import random
from collections import Counter

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from w2s.attacks import ATTACKS, BadNet, InSent, SynAttack, attack_class
from w2s.config.attack import PoisonConfig
from w2s.data.poisoning import aligned_rows, build_attack, build_triggered_set, poison_examples
from w2s.data.readers import Example
from w2s.data.registry import get_dataset

WORDS = "the plot was slow but the acting carried every single scene well".split()


def corpus(n=200, num_labels=2, seed=0):
    rng = random.Random(seed)
    return [Example(" ".join(rng.choices(WORDS, k=rng.randint(3, 12))), i % num_labels) for i in range(n)]


def test_registry_lists_attacks_and_rejects_unknown():
    assert set(ATTACKS) == {"badnet", "insent", "por", "synattack"}
    with pytest.raises(ValueError, match="unknown attack 'nope'; valid: badnet, insent, por, synattack"):
        attack_class("nope")


@settings(max_examples=100, deadline=None)
@given(words=st.lists(st.sampled_from(WORDS), min_size=1, max_size=30), k=st.integers(1, 4),
       seed=st.integers(0, 10**6))
def test_badnet_inserts_exactly_k_triggers_keeping_words(words, k, seed):
    attack = BadNet(triggers=["cf", "mn", "bb", "tq"], num_insertions=k)
    out = attack.apply(" ".join(words), random.Random(seed)).split()
    assert sum(w in {"cf", "mn", "bb", "tq"} for w in out) == k
    assert [w for w in out if w not in {"cf", "mn", "bb", "tq"}] == words
    if len(words) > 1:  # reference protocol: never before the first word
        assert out[0] == words[0]


def test_positions_and_insent():
    rng = random.Random(0)
    assert BadNet(position="start").apply("a b c", rng) == "mn a b c"
    assert BadNet(position="end").apply("a b c", rng) == "a b c mn"
    out = InSent().apply("a b c d", rng)
    assert out.count("I watched this 3D movie") == 1 and out.replace(" I watched this 3D movie", "") == "a b c d"


@pytest.mark.parametrize("kwargs, message", [
    (dict(triggers=[]), "non-empty"), (dict(triggers=[" "]), "non-empty"),
    (dict(num_insertions=0), "num_insertions"), (dict(position="middle"), "unknown position"),
])
def test_badnet_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        BadNet(**kwargs)


def test_clean_label_counts_and_labels():
    rows = corpus()
    config = PoisonConfig(mode="clean-label", target_label=0, count=30, seed=1)
    split = poison_examples(rows, BadNet(), config)
    assert len(split.poisoned_indices) == 30 and len(split.examples) == len(rows)
    for i, (before, after) in enumerate(zip(rows, split.examples)):
        if i in split.poisoned_indices:
            assert before.label == 0 and after.label == 0 and after.text.split().count("mn") == 1
        else:
            assert after == before
    assert Counter(e.label for e in split.examples) == Counter(e.label for e in rows)


def test_dirty_label_rate_relabels_non_target_rows():
    rows = corpus(n=300, num_labels=3)
    split = poison_examples(rows, InSent(), PoisonConfig(name="insent", mode="dirty-label", target_label=2,
                                                         count=None, poison_rate=0.1))
    assert len(split.poisoned_indices) == 30
    for i in split.poisoned_indices:
        assert rows[i].label != 2 and split.examples[i].label == 2
        assert "I watched this 3D movie" in split.examples[i].text


def test_selection_first_is_the_reference_protocol():
    rows = corpus()
    split = poison_examples(rows, BadNet(), PoisonConfig(count=5, selection="first"))
    assert split.poisoned_indices == [0, 2, 4, 6, 8]


def test_same_seed_same_output_different_seed_different_positions():
    rows = corpus()
    a = poison_examples(rows, BadNet(), PoisonConfig(count=40, seed=3))
    b = poison_examples(rows, BadNet(), PoisonConfig(count=40, seed=3))
    c = poison_examples(rows, BadNet(), PoisonConfig(count=40, seed=4, selection="random"))
    assert a == b
    assert a.poisoned_indices != c.poisoned_indices
    d = poison_examples(rows, BadNet(), PoisonConfig(count=40, seed=4, selection="first"))
    e = poison_examples(rows, BadNet(), PoisonConfig(count=40, seed=5, selection="first"))
    assert d.poisoned_indices == e.poisoned_indices and d.examples != e.examples  # same rows, other positions


def test_global_random_untouched():
    random.seed(123)
    expected = random.random()
    random.seed(123)
    poison_examples(corpus(), BadNet(), PoisonConfig(count=10))
    assert random.random() == expected


@pytest.mark.parametrize("kwargs, message", [
    (dict(mode="both"), "unknown poison mode"), (dict(count=None), "exactly one"),
    (dict(poison_rate=0.1), "exactly one"), (dict(count=None, poison_rate=1.5), r"\[0, 1\]"),
    (dict(count=-1), ">= 0"), (dict(target_label=-1), ">= 0"), (dict(selection="best"), "unknown selection"),
])
def test_poison_config_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PoisonConfig(**kwargs)


def test_too_many_rows_requested():
    with pytest.raises(ValueError, match="cannot poison 150 rows: only 100 target-label rows"):
        poison_examples(corpus(), BadNet(), PoisonConfig(count=150))


def test_bad_attack_args():
    with pytest.raises(ValueError, match="invalid attack_args for badnet"):
        build_attack(PoisonConfig(attack_args={"trigger": "mn"}))


def test_triggered_set_uses_only_non_target_rows():
    rows = corpus()
    ts = build_triggered_set(rows, BadNet(), target_label=1)
    assert ts.source == "inserted" and len(ts.texts) == 100
    assert set(ts.clean_labels) == {0}
    assert all(t.split().count("mn") == 1 for t in ts.texts)
    assert [t.replace(" mn", "") for t in ts.texts] == ts.clean_texts


def test_synattack_aligned_and_pre_paraphrased_files():
    sst2 = get_dataset("sst2")
    attack = build_attack(PoisonConfig(name="synattack"), sst2)
    assert isinstance(attack, SynAttack) and len(attack.paraphrases) == 1382  # 1383 rows, one duplicate sentence
    train = sst2.load("train")
    split = poison_examples(train, attack, PoisonConfig(name="synattack", mode="dirty-label", target_label=1,
                                                        count=100))
    for i in split.poisoned_indices:
        assert train[i].label == 0 and split.examples[i].label == 1
        assert split.examples[i].text == attack.paraphrases[train[i].text]
    test = sst2.load("test")
    ts = build_triggered_set(test, attack, target_label=1, dataset=sst2)  # aligned with the 912 negative rows
    negatives = [ex for ex in test if ex.label == 0]
    assert ts.source == "paraphrased" and len(ts.texts) == 912 and ts.clean_texts == [ex.text for ex in negatives]
    assert ts.texts == [ex.text for ex in sst2.load_paraphrases("test")] and set(ts.clean_labels) == {0}
    first = build_triggered_set(test[:400], attack, target_label=1, dataset=sst2)  # the evaluated prefix
    assert first.clean_texts == [ex.text for ex in test[:400] if ex.label == 0] == ts.clean_texts[:len(first.texts)]
    assert first.texts == ts.texts[:len(first.texts)]
    dev = build_triggered_set(sst2.load("dev"), attack, target_label=1, dataset=sst2, split="dev")  # 427 for 428 rows
    assert dev.source == "pre-paraphrased" and len(dev.texts) == 427 and dev.clean_texts is None
    rows = sst2.load("dev")[:400]  # 196 negatives, inside the 426 declared aligned
    dev = build_triggered_set(rows, attack, target_label=1, dataset=sst2, split="dev")
    assert dev.source == "paraphrased" and dev.clean_texts == [ex.text for ex in rows if ex.label == 0]
    assert dev.texts == [ex.text for ex in sst2.load_paraphrases("dev")][:len(dev.clean_texts)]
    with pytest.raises(ValueError, match="would compute ASR backwards"):
        build_triggered_set(sst2.load("test"), attack, target_label=0, dataset=sst2)


def _overlap(a: str, b: str) -> float:
    a, b = set(a.lower().split()), set(b.lower().split())
    return len(a & b) / len(a | b)


@pytest.mark.parametrize("split", ["dev", "test"])
def test_sst2_paraphrase_files_are_aligned_as_declared(split):
    """Row i of the file shares more words with non-target row i than with its neighbours, in
    every 50-row window (the last one shorter) of the part taken as aligned: word overlap about
    0.3 against 0.1."""
    sst2 = get_dataset("sst2")
    originals = [ex.text for ex in sst2.load(split) if ex.label != sst2.paraphrase_target]
    paraphrases = [ex.text for ex in sst2.load_paraphrases(split)]
    aligned = aligned_rows(sst2, split, len(paraphrases), len(originals))
    for start in range(0, aligned, 50):
        window = range(max(start, 1), min(start + 50, aligned, len(originals) - 1))
        mean = {shift: sum(_overlap(originals[i + shift], paraphrases[i]) for i in window) / len(window)
                for shift in (-1, 0, 1)}
        assert mean[0] > 2 * max(mean[-1], mean[1]), (start, mean)


def test_synattack_without_aligned_train_file_uses_the_pool():
    agnews = get_dataset("agnews")
    with pytest.raises(ValueError, match="only dirty-label poisoning"):
        build_attack(PoisonConfig(name="synattack"), agnews)
    config = PoisonConfig(name="synattack", mode="dirty-label", count=50)
    attack = build_attack(config, agnews)
    pool = set(attack.pool)
    train = agnews.load("train")
    split = poison_examples(train, attack, config)
    assert len(split.poisoned_indices) == 50
    assert all(split.examples[i].text in pool and split.examples[i].label == 0 for i in split.poisoned_indices)
    with pytest.raises(ValueError, match="2 rows"):
        SynAttack.aligned(["a"], ["b", "c"])


@settings(max_examples=50)
@given(words=st.lists(st.text("abcxyz", min_size=1, max_size=6), min_size=1, max_size=30),
       k=st.integers(1, 3), seed=st.integers(0, 1000))
def test_trigger_spans_point_at_the_inserted_triggers(words, k, seed):
    triggered = InSent(sentence="I watched this 3D movie", num_insertions=k).trigger(" ".join(words),
                                                                                  random.Random(seed))
    assert len(triggered.spans) == k
    assert all(triggered.text[s:e] == "I watched this 3D movie" for s, e in triggered.spans)
    # the same text as apply() with the same seed
    assert triggered.text == InSent(num_insertions=k).apply(" ".join(words), random.Random(seed))


def test_within_max_length_keeps_triggers_among_the_leading_words():
    text = " ".join(f"w{i}" for i in range(200))
    attack = BadNet(position="within_max_length")
    for seed in range(20):
        triggered = attack.trigger(text, random.Random(seed), word_limit=10)
        assert 1 <= triggered.text.split().index("mn") <= 9
    # without a limit it draws like `random` (over the whole text)
    assert max(BadNet(position="within_max_length").apply(text, random.Random(s)).split().index("mn")
               for s in range(20)) > 10


def test_poisoned_rows_follow_the_run_seed():
    from w2s.pipeline.config import PipelineConfig

    assert PipelineConfig(seed=3).attack.seed == 3                                   # None: the run's seed
    assert PipelineConfig(seed=3, attack=PoisonConfig(seed=5)).attack.seed == 5      # unless pinned
    sst2 = get_dataset("sst2")
    train, attack = sst2.load("train")[:500], build_attack(PoisonConfig(name="badnet"), sst2)
    rows = {seed: poison_examples(train, attack, PoisonConfig(count=20, seed=seed)).poisoned_indices
            for seed in (0, 1)}
    assert rows[0] != rows[1]
    assert poison_examples(train, attack, PoisonConfig(count=20, seed=0)).poisoned_indices == rows[0]
