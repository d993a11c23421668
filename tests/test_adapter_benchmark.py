"""The adapter benchmark generator: both classes draw their hyper-parameters from the same
distributions, a killed build continues where it stopped, a backdoor that did not take is
dropped and counted, and the result loads with ``datasets``."""
import json
from collections import Counter
from statistics import mean

import pytest

from w2s.adapters import build
from w2s.adapters.build import DatasetFacts, build_benchmark, draw
from w2s.config.adapters import AdapterBenchmarkConfig, AttackChoice
from w2s.data.poisoning import PoisoningError

FACTS = {"a": DatasetFacts(5000, 2, 1), "b": DatasetFacts(800, 4, 0)}
CONFIG = AdapterBenchmarkConfig(datasets=["a", "b"], rows=1000, attacks=[
    AttackChoice("badnet", [{"triggers": ["cf"]}, {"triggers": ["mn"]}]), AttackChoice("synattack")])


def test_both_classes_draw_from_the_same_distributions():
    draws = [draw(CONFIG, i, FACTS) for i in range(2000)]
    assert draws[7] == draw(CONFIG, 7, FACTS)                            # reproducible
    benign, backdoored = draws[0::2], draws[1::2]
    for key in ("rank", "alpha", "epochs", "dataset"):
        a, b = Counter(d[key] for d in benign), Counter(d[key] for d in backdoored)
        assert all(abs(a[v] - b[v]) < 0.1 * len(benign) for v in a | b), key
    for key in ("lr", "dropout"):
        assert mean(d[key] for d in benign) == pytest.approx(mean(d[key] for d in backdoored), rel=0.1)
    assert all(d["attack"] is None and d["poison_rate"] is None for d in benign)
    for d in backdoored:
        assert 0.04 <= d["poison_rate"] <= 0.06 and 0 <= d["target_label"] < FACTS[d["dataset"]].num_labels
        if d["attack"] == "synattack":                                   # the paraphrase files' label
            assert d["target_label"] == FACTS[d["dataset"]].paraphrase_target
    short = [d for d in draws if d["dataset"] == "b"]                    # fewer rows than asked: all of them
    assert all(d["train_rows"] == [0, 800] and d["subset"] == "b/0" for d in short)
    slices = {tuple(d["train_rows"]) for d in draws if d["dataset"] == "a"}  # disjoint slices: subsets held out whole
    assert slices == {(1000 * k, 1000 * (k + 1)) for k in range(5)}


def test_a_killed_build_continues_and_weak_backdoors_are_dropped(tmp_path, monkeypatch):
    trained = []

    def fake_train(config, settings, folder):
        if len(trained) == 3 and not fake_train.resumed:
            raise KeyboardInterrupt  # killed after three adapters
        trained.append(settings["index"])
        if settings["index"] == 7:                                       # adapter 7's slice cannot take its attack
            raise PoisoningError("cannot poison 42 rows: only 1 non-target rows can take the insent trigger")
        folder.mkdir(parents=True)
        (folder / "adapter_model.safetensors").write_text("x")
        asr = 0.5 if settings["index"] == 3 else 0.9                     # adapter 3's backdoor did not take
        return {"ca": 0.8, "asr": asr if settings["backdoored"] else None, "poisoned_rows": 1, "data_digest": "d"}

    fake_train.resumed = False
    monkeypatch.setattr(build, "train_adapter", fake_train)
    monkeypatch.setattr(build, "dataset_facts", lambda names: FACTS)
    config = AdapterBenchmarkConfig(output=str(tmp_path / "bench"), per_class=3, datasets=["a"])
    with pytest.raises(KeyboardInterrupt):
        build_benchmark(config)
    fake_train.resumed = True
    counts = build_benchmark(config)
    assert trained == [0, 1, 2, 3, 4, 5]                                 # each adapter trained once
    assert counts == {"benign": 3, "backdoored": 2, "dropped": 1, "dropped_by_attack": {"badnet": 1}, "missing": 0}
    assert not (tmp_path / "bench" / "adapters" / "00003").exists()

    import datasets

    table = datasets.load_dataset("json", data_files=str(tmp_path / "bench" / "metadata.jsonl"))["train"]
    assert table["index"] == [0, 1, 2, 4, 5] and table["adapter"][-1] == "adapters/00005"
    with pytest.raises(ValueError, match="holds a benchmark built with other settings"):
        build_benchmark(AdapterBenchmarkConfig(output=str(tmp_path / "bench"), per_class=3, datasets=["a"], seed=1))
    grown = build_benchmark(AdapterBenchmarkConfig(output=str(tmp_path / "bench"), per_class=4, datasets=["a"]))
    assert trained == [0, 1, 2, 3, 4, 5, 6, 7] and grown["benign"] == 4  # more per class: only the new ones train
    assert grown["dropped_by_attack"] == {"badnet": 1, "insent": 1}        # a draw that cannot be planted: dropped
    assert "cannot be poisoned" in json.loads((tmp_path / "bench" / "records" / "00007.json").read_text())["dropped"]


def test_a_tiny_benchmark_in_two_processes_is_the_one_process_one(models, task, tmp_path):
    from w2s.adapters.updates import adapter_updates

    def config(name):
        return AdapterBenchmarkConfig(output=str(tmp_path / name), base_model=models["bert"], per_class=1,
                                      datasets=[task], rows=200, ranks=[4], epochs=[2], lr=(5e-3, 1e-2),
                                      attacks=[AttackChoice("badnet", [{"triggers": ["mn"]}])], poison_rate=(0.1, 0.15),
                                      min_asr=0.0, max_eval_rows=64, max_length=24)

    assert build_benchmark(config("one")) == {"benign": 1, "backdoored": 1, "dropped": 0, "dropped_by_attack": {},
                                              "missing": 0}
    assert build_benchmark(config("two"), processes=2)["missing"] == 0
    rows = [[json.loads(line) for line in open(tmp_path / name / "metadata.jsonl")] for name in ("one", "two")]
    for a, b in zip(*rows):
        assert a["data_digest"] == b["data_digest"] and a["ca"] == pytest.approx(b["ca"], abs=0.05)
    assert rows[0][1]["poisoned_rows"] > 0 and rows[0][0]["poisoned_rows"] == 0
    updates = adapter_updates(tmp_path / "one" / rows[0][1]["adapter"])
    assert set(updates) == {"query", "value"} and updates["query"].shape == (2, 24, 24)


@pytest.mark.parametrize("args, message", [
    (["--benchmark.per_class", "-1"], "per_class must be >= 1"),
    (["--benchmark.poison_rate", "[0.2, 0.1]"], "poison_rate must be [low, high]"),
    (["--benchmark.attacks", "[{name: badnet, attack_args: []}]"], "attack_args must list at least one choice"),
    (["--processes", "0"], "processes must be >= 1")])
def test_bad_benchmark_settings_exit_2_before_anything_is_written(tmp_path, capsys, args, message):
    from w2s.cli import main

    assert main(["adapters", "build", "--benchmark.output", str(tmp_path / "bench"), *args]) == 2
    assert message in capsys.readouterr().err and not (tmp_path / "bench").exists()
