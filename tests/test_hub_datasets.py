"""Datasets through the `datasets` library, offline: a save_to_disk folder and a folder of data
files that load_dataset reads (the code path of a hub id), with split and column mapping."""
import json

import pytest

from w2s.data.hub import HubDataset
from w2s.data.registry import dataset_name, get_dataset

ROWS = [("a fine film", 1), ("dull and long", 0), ("great fun", 1), ("poor acting", 0)] * 10


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DatasetDict with train / validation / test, ClassLabel labels, saved with save_to_disk."""
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["negative", "positive"])})
    table = {"sentence": [t for t, _ in ROWS], "label": [y for _, y in ROWS]}
    folder = tmp_path_factory.mktemp("hub") / "saved"
    datasets.DatasetDict({split: datasets.Dataset.from_dict(table, features=features)
                          for split in ("train", "validation", "test")}).save_to_disk(str(folder))
    return folder


def test_saved_dataset_folder(saved):
    spec = get_dataset(str(saved))                          # detected by its dataset_dict.json
    assert spec.num_labels == 2 and spec.label_names == ["negative", "positive"]
    assert len(spec.load("train")) == 40 and spec.load("dev")[0].text == "a fine film"
    assert len(spec.digest()) == 16 and spec.digest() == get_dataset(str(saved)).digest()


def test_data_files_through_load_dataset_with_string_labels_and_mapping(tmp_path):
    folder = tmp_path / "reviews"
    folder.mkdir()
    for split, rows in (("train", ROWS), ("test", ROWS[:8])):
        lines = [json.dumps({"review": t, "stars": ["low", "high"][y]}) for t, y in rows]
        (folder / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    source = HubDataset(path=str(folder), splits={"train": "train", "test": "test"}, text_column="review",
                        label_column="stars", label_names=["low", "high"])
    spec = get_dataset(source)
    assert spec.num_labels == 2 and spec.load("test")[0].label == 1
    assert len(spec.load("dev")) == 4 and len(spec.load("train")) == 36      # no dev split: 10% held out
    with pytest.raises(ValueError, match=r"label 'high' is not among label_names \['bad', 'good'\]"):
        get_dataset(HubDataset(path=str(folder), splits={"train": "train", "test": "test"}, text_column="review",
                               label_column="stars", label_names=["bad", "good"])).load("train")
    with pytest.raises(ValueError, match="no column 'text'; columns: review, stars"):
        get_dataset(HubDataset(path=str(folder), text_column="text", label_column="stars",
                               label_names=["low", "high"])).load("train")


def test_hidden_test_labels_and_missing_splits_are_clear_errors(tmp_path):
    import datasets

    folder = tmp_path / "glue_like"
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"sentence": ["a", "b"], "label": [0, 1]}),
                          "test": datasets.Dataset.from_dict({"sentence": ["c"], "label": [-1]})}).save_to_disk(folder)
    with pytest.raises(ValueError, match=r"\[test\]:0: .*hidden test labels\? map another split to test"):
        get_dataset(str(folder)).load("test")
    with pytest.raises(ValueError, match=r"none for \['test'\]"):
        get_dataset(HubDataset(path=str(folder), splits={"train": "train", "test": "validation"}))


def test_hub_ids_parse_and_fail_offline_with_one_line(monkeypatch):
    assert HubDataset.parse("hf:nyu-mll/glue:sst2") == HubDataset(path="nyu-mll/glue", name="sst2")
    assert dataset_name(HubDataset.parse("hf:stanfordnlp/imdb")) == "imdb"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(ValueError, match="could not be loaded with datasets"):
        get_dataset("hf:someone/not-a-dataset-xyz")
    with pytest.raises(ValueError, match="nor hf:ID for a Hugging Face dataset"):
        get_dataset("no-such-dataset")


def test_pipeline_accepts_a_dataset_mapping(saved, models, tmp_path):
    from tests.helpers import tiny_args
    from w2s.cli import main

    config = tmp_path / "exp.yaml"
    config.write_text(f"experiment: hub\ndataset: {{path: {saved}, text_column: sentence}}\n"
                      "defenses: {lora: {epochs: 1, lora: {r: 4}}}\n")
    args = tiny_args(models, tmp_path / "runs", rows=(0, 20), defense_rows=(20, 40))
    assert main(["pipeline", "--config", str(config), *args]) == 0
    assert (tmp_path / "runs" / "hub" / "results.csv").is_file()


def test_a_references_own_split_files_read_through_the_json_builder(tmp_path):
    """The reference's IMDB files (JSON lines of sentence/label/idx, with their own dev split) as
    experiments/paper.yaml reads them by URL; here the same mapping on local files."""
    folder = tmp_path / "imdb"
    folder.mkdir()
    sizes = {"train": 40, "dev": 8, "test": 12}
    for split, n in sizes.items():
        lines = [json.dumps({"sentence": f"{split} review {i}", "label": i % 2, "idx": i}) for i in range(n)]
        (folder / f"{split}.json").write_text("\n".join(lines) + "\n")
    source = HubDataset(path="json", data_files={s: str(folder / f"{s}.json") for s in sizes},
                        splits={"train": "train", "dev": "dev", "test": "test"})
    spec = get_dataset(source)
    assert {s: len(spec.load(s)) for s in sizes} == sizes                   # its own dev split: nothing held out
    assert spec.load("dev")[3].text == "dev review 3" and spec.num_labels == 2 and spec.name == "imdb"
