"""Dataset registry: bundled datasets, the AG News split, user directories."""
from collections import Counter

import pytest

from w2s.data.readers import read_examples

from w2s.data.registry import DATASETS, get_dataset


def test_bundled_splits():
    sst2 = get_dataset("sst2")
    assert [len(sst2.load(s)) for s in ("train", "dev", "test")] == [6920, 872, 1821]
    agnews = get_dataset("agnews")
    train, dev, test = (agnews.load(s) for s in ("train", "dev", "test"))
    assert (len(train), len(dev), len(test)) == (8000, 2000, 7600)
    assert Counter(train) + Counter(dev) == Counter(read_examples(agnews.path("agnews/dev.tsv")))  # a partition
    assert agnews.load("dev") == dev  # deterministic
    assert {e.label for e in train} == {0, 1, 2, 3}


def test_unknown_name_lists_valid(tmp_path):
    with pytest.raises(ValueError, match="unknown dataset 'imdb'.*agnews, sst2"):
        get_dataset("imdb")
    with pytest.raises(ValueError, match="unknown split"):
        DATASETS["sst2"].load("validation")


def test_user_directory(tmp_path):
    (tmp_path / "train.csv").write_text("text,label\n" + "".join(f"row {i},{i % 3}\n" for i in range(20)))
    (tmp_path / "test.jsonl").write_text('{"sentence": "x", "label": 2}\n')
    spec = get_dataset(tmp_path)
    assert spec.num_labels == 3
    assert len(spec.load("train")) == 18 and len(spec.load("dev")) == 2 and len(spec.load("test")) == 1
    (tmp_path / "test.jsonl").unlink()
    with pytest.raises(ValueError, match="needs at least train and test"):
        get_dataset(tmp_path)
