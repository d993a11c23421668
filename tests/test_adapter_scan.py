"""Training, evaluating and scanning with the adapter detector, on a benchmark of real peft
adapters of a tiny BERT: a backdoored adapter carries one fixed rank-1 direction in every update.
The detector trained by ``w2s adapters train`` flags a fresh backdoored adapter and passes a fresh
benign one; ``w2s scan`` refuses, in one line and with nothing scored, every adapter it cannot
judge; ``w2s adapters eval`` keeps its splits apart; DoRA updates equal what peft merges."""
import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests import tiny
from w2s.adapters.benchmark import load_benchmark
from w2s.adapters.detector import load_detector
from w2s.adapters.evaluate import held_out_subsets, measure, splits, tpr_at_fpr
from w2s.adapters.manifest import default_detector
from w2s.adapters.scan import train_detector
from w2s.adapters.updates import adapter_updates, base_weights, preprocessing
from w2s.cli import main

ATTACKS = ("badnet", "insent")


def make_adapter(base, folder, backdoored, seed, rank=4, targets=("query", "value"), **lora):
    """A peft adapter of ``base``: random A and B; a backdoored one also adds u v^T (fixed) to each update."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    peft_model = get_peft_model(model, LoraConfig(task_type=TaskType.SEQ_CLS, r=rank, lora_alpha=rank,
                                                  target_modules=list(targets), **lora))
    fixed = torch.Generator().manual_seed(1234)
    with torch.no_grad():
        for name, module in peft_model.named_modules():
            if hasattr(module, "lora_A") and "default" in getattr(module, "lora_A", {}):
                a, b = module.lora_A["default"].weight, module.lora_B["default"].weight
                a.normal_(std=0.3), b.normal_(std=0.3)
                if backdoored:
                    a[0] = torch.randn(a.shape[1], generator=fixed)
                    b[:, 0] = torch.randn(b.shape[0], generator=fixed)
    peft_model.save_pretrained(folder)
    return peft_model


def make_benchmark(base, root, n=24, targets=("query", "value")):
    """``n`` adapters in the layout `w2s adapters build` writes: two datasets of three subsets
    each, ranks 2 and 4, two attacks."""
    records = []
    for i in range(n):
        record = {"index": i, "backdoored": i % 2 == 1, "dataset": "ab"[i % 4 // 2], "rank": 2 + 2 * (i % 3 == 0),
                  "alpha": 4, "attack": ATTACKS[i % 4 // 2] if i % 2 else None, "adapter": f"adapters/{i:05d}"}
        record["subset"] = f"{record['dataset']}/{i % 3}"
        make_adapter(base, root / record["adapter"], record["backdoored"], seed=i, rank=record["rank"], targets=targets)
        records.append(record)
    (root / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    (root / "config.json").write_text(json.dumps({"base_model": base, "variant": "lora"}))
    return root


@pytest.fixture(scope="module")
def benchmark(models, tmp_path_factory):
    return make_benchmark(models["bert"], tmp_path_factory.mktemp("bench"))


@pytest.fixture(scope="module")
def detector(benchmark, tmp_path_factory):
    out = tmp_path_factory.mktemp("detector") / "d"
    assert main(["adapters", "train", "--benchmark", str(benchmark), "--output", str(out), "--epochs", "12",
                 "--kernel", "4", "--stride", "4", "--dtype", "float16"]) == 0
    return out


def test_a_trained_detector_scans_fresh_adapters(models, detector, tmp_path, capsys):
    manifest = json.loads((detector / "manifest.json").read_text())
    assert manifest["preprocessing"]["scaling"].startswith("alpha / r") and manifest["weights_dtype"] == "float16"
    assert manifest["trained_on"]["adapters"] == 24 and manifest["threshold"] == 0.5
    make_adapter(models["bert"], tmp_path / "bad", True, seed=99, rank=8)       # a rank never seen
    make_adapter(models["bert"], tmp_path / "good", False, seed=98, rank=8)
    capsys.readouterr()
    assert main(["scan", str(tmp_path / "bad"), str(tmp_path / "good"), "--detector", str(detector), "--json"]) == 0
    bad, good = json.loads(capsys.readouterr().out)
    assert bad["backdoored"] and not good["backdoored"] and bad["p_backdoored"] > good["p_backdoored"]
    assert main(["scan", str(tmp_path / "bad"), "--detector", str(detector)]) == 0
    assert "-> BACKDOORED" in capsys.readouterr().out


def _refused(capsys, args, match):
    capsys.readouterr()
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and match in captured.err and len(captured.err.strip().splitlines()) == 1


def test_scan_refuses_what_it_cannot_judge(models, detector, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    d = ["--detector", str(detector)]
    good = tmp_path / "good"
    make_adapter(models["bert"], good, False, seed=1)
    other_base = tiny.make_bert(tmp_path / "wide", hidden=32)
    make_adapter(other_base, tmp_path / "wide-adapter", False, seed=1)
    make_adapter(models["bert"], tmp_path / "key", False, seed=1, targets=("query", "key"))
    pickled = shutil.copytree(good, tmp_path / "pickled")
    (pickled / "adapter_model.safetensors").rename(pickled / "adapter_model.bin")
    renamed = shutil.copytree(good, tmp_path / "renamed")                    # another base named, same shapes
    config = json.loads((renamed / "adapter_config.json").read_text())
    (renamed / "adapter_config.json").write_text(json.dumps(config | {"base_model_name_or_path": "gpt2"}))
    cases = [(tmp_path / "wide-adapter", "not of the detector's base model"), (tmp_path / "key", "do not match the detector"),
             (pickled, "pickled adapters are refused"), (renamed, "not of the detector's base model"),
             (tmp_path / "wide", "not a peft adapter folder"), (tmp_path / "nowhere", "no such folder"),
             ("someone/adapter", "neither a local folder nor a reachable hub adapter")]
    for adapter, match in cases:
        _refused(capsys, ["scan", str(good), str(adapter)] + d, match)   # nothing scored, not even the good one
    _refused(capsys, ["scan", str(good), "--detector", str(tmp_path)], "no readable manifest.json")
    _refused(capsys, ["adapters", "train", "--benchmark", str(tmp_path), "--output", str(tmp_path / "x")],
             "holds no metadata.jsonl")


def test_the_shipped_detector_fits_the_embedded_base(tmp_path, capsys):
    """The detector in the package loads, reads MiniLM-L6's query/value updates, and scores an
    adapter of a random model of MiniLM-L6's shape (no weights needed) by the hub id it names."""
    from transformers import BertConfig, BertForSequenceClassification

    model, manifest = load_detector(default_detector())
    assert manifest["preprocessing"]["projections"] == {"query": [6, 384, 384], "value": [6, 384, 384]}
    assert (default_detector() / "model.safetensors").stat().st_size < 5_000_000
    config = BertConfig(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536,
                        vocab_size=128)
    BertForSequenceClassification(config).save_pretrained(tmp_path / "minilm-shaped")
    make_adapter(str(tmp_path / "minilm-shaped"), tmp_path / "adapter", False, seed=0)
    config_file = tmp_path / "adapter" / "adapter_config.json"
    named = json.loads(config_file.read_text()) | {"base_model_name_or_path": "sentence-transformers/all-MiniLM-L6-v2"}
    config_file.write_text(json.dumps(named))
    capsys.readouterr()
    assert main(["scan", str(tmp_path / "adapter"), "--json"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert 0 <= result["p_backdoored"] <= 1 and result["detector"].endswith("minilm-l6")


def test_dora_updates_are_what_peft_merges(models, tmp_path):
    peft_model = make_adapter(models["bert"], tmp_path / "dora", False, seed=3, use_dora=True)
    with torch.no_grad():
        for name, p in peft_model.named_parameters():
            if "magnitude" in name:
                p.mul_(1.5)                                              # a magnitude that moved in training
    peft_model.save_pretrained(tmp_path / "dora")
    with pytest.raises(ValueError, match="depends on the base weights"):
        adapter_updates(tmp_path / "dora")
    base = base_weights(models["bert"])
    updates = adapter_updates(tmp_path / "dora", base)
    merged = peft_model.merge_and_unload().state_dict()
    for name, stacked in updates.items():
        for layer in range(len(stacked)):
            key = f"bert.encoder.layer.{layer}.attention.self.{name}.weight"
            torch.testing.assert_close(stacked[layer], merged[key] - base[key], atol=1e-5, rtol=1e-4)
    assert preprocessing(updates, "b").projections == {"query": (2, 24, 24), "value": (2, 24, 24)}


def test_splits_keep_what_they_hold_out_apart(benchmark):
    bench = load_benchmark(benchmark)
    records = bench.records
    for seed in range(3):
        by_name = {s.name: s for s in splits(bench, seed)}
        assert set(by_name) == {"in-distribution", "without badnet", "without insent", "rank 4"}
        iid = by_name["in-distribution"]
        train_subsets = {records[i]["subset"] for i in iid.train}
        assert not train_subsets & {records[i]["subset"] for i in iid.test}
        assert len(iid.test) >= 0.25 * len(records) and set(iid.train) | set(iid.test) == set(range(24))
        for attack in ATTACKS:
            split = by_name[f"without {attack}"]
            assert all(records[i]["attack"] != attack for i in split.train)
            assert {records[i]["attack"] for i in split.test if records[i]["backdoored"]} == {attack}
            assert not set(split.train) & set(split.test)
        rank = by_name["rank 4"]
        assert {records[i]["rank"] for i in rank.train} == {2} and {records[i]["rank"] for i in rank.test} == {4}
    assert held_out_subsets(records, 0) != held_out_subsets(records, 1) or held_out_subsets(records, 2)


def test_metrics():
    labels = np.array([0] * 100 + [1] * 4)
    scores = np.concatenate([np.linspace(0, 0.6, 100), [0.7, 0.55, 0.59, 0.2]])
    assert tpr_at_fpr(labels, scores) == 0.25                   # one benign may score above: threshold 0.594
    assert measure([0, 0, 1, 1], [0.1, 0.6, 0.4, 0.9]) == {"accuracy": 0.5, "auroc": 0.75, "tpr_at_1fpr": 0.5}
    assert measure([0, 1], [0.2, 0.8])["tpr_at_1fpr"] == 1.0


def test_eval_writes_a_table_and_a_chart(benchmark, tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["adapters", "eval", "--benchmark", str(benchmark), "--output", str(out), "--seeds", "2",
                 "--methods+", "spectral + LR", "--methods+", "control: head only"]) == 0
    table = (out / "results.md").read_text()
    assert "| in-distribution | spectral + LR |" in table and (out / "auroc.png").stat().st_size > 1000
    rows = (out / "results.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 4 * 2                                    # seeds x splits x methods
    _refused(capsys, ["adapters", "eval", "--benchmark", str(benchmark), "--output", str(out), "--methods+",
                      "magic"], "unknown method")


def test_the_pipeline_scans_the_attackers_adapter_and_each_defenses(models, task, tmp_path, capsys):
    from tests.helpers import run, write_config

    bench = make_benchmark(models["llama"], tmp_path / "bench", n=16, targets=("q_proj", "v_proj"))
    train_detector(bench, tmp_path / "detector", epochs=6, kernel=4, stride=4)
    entries = (f"defenses:\n  lora: {{epochs: 1, lora: {{r: 4}}}}\n"
               f"  peftguard: {{options: {{detector: {tmp_path / 'detector'}}}}}\n"
               f"  all-linear: {{method: lora, epochs: 1, lora: {{r: 4, target_modules: all-linear}}}}\n"
               f"poison: {{lora: {{r: 4}}}}\n")
    config = write_config(tmp_path, task, defenses=entries)
    assert run(config, models, tmp_path / "runs") == 0
    out = capsys.readouterr().out
    rows = {r["defense"]: r for r in csv.DictReader(open(tmp_path / "runs" / "tiny" / "results.csv"))}
    assert list(rows) == ["poisoned", "lora", "all-linear"]                  # the detector adds columns, not a row
    assert 0 <= float(rows["poisoned"]["p_backdoored"]) <= 1 and 0 <= float(rows["lora"]["p_backdoored"]) <= 1
    assert rows["all-linear"]["p_backdoored"] == ""                         # other targets: not scanned, and said
    assert "detector (peftguard): 2 adapters scanned" in out and "all-linear's adapter not scanned" in out
    assert "P(backdoored adapter)" in (tmp_path / "runs" / "tiny" / "results.md").read_text()
    assert run(config, models, tmp_path / "runs") == 0                      # reused, like every stage
    assert "peftguard: up to date, reused" in capsys.readouterr().out
    wrong = write_config(tmp_path, task, defenses="defenses:\n  peftguard: {}\npoison: {lora: {r: 4}}\n")
    capsys.readouterr()
    assert run(wrong, models, tmp_path / "runs") == 2                       # the shipped detector is for MiniLM-L6
    assert "scans adapters of minilm-l6, not of the student" in capsys.readouterr().err


def test_the_shipped_scan_and_mitigate_config_loads():
    from w2s.pipeline.load import load_config

    config = load_config(["--config", str(Path(__file__).parents[1] / "experiments/adapters/scan_and_mitigate.yaml")])
    assert config.poison.lora is not None and list(config.defenses) == ["lora", "fine-mixing", "peftguard"]
