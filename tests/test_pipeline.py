"""The pipeline and CLI end to end on tiny models: results, reuse, errors, every experiment config."""
import csv
import json
from pathlib import Path

import pytest

import w2s
from tests.helpers import run, tiny_args, write_config
from w2s.cli import main
from w2s.pipeline.load import load_config
from w2s.pipeline.runs import load_manifest

EXPERIMENTS = sorted(Path(__file__).resolve().parents[1].glob("experiments/*.yaml"))


def test_pipeline_end_to_end_then_reuse(tmp_path, task, models, capsys):
    config = write_config(tmp_path, task)
    assert run(config, models, tmp_path / "runs") == 0
    out = capsys.readouterr().out
    root = tmp_path / "runs" / "tiny"
    rows = list(csv.DictReader(open(root / "results.csv")))
    assert [r["defense"] for r in rows] == ["poisoned", "teacher", "lora", "w2s"]
    assert {"defense", "ca", "asr", "delta_ca", "delta_asr", "asr_clean_correct", "trainable_params",
            "wall_s"} <= set(rows[0])
    assert all(0 <= float(r["asr_clean_correct"]) <= 1 for r in rows)
    assert float(rows[0]["delta_asr"]) == 0.0 and all(0 <= float(r["asr"]) <= 1 for r in rows)
    assert (root / "results.png").stat().st_size > 1000 and "| poisoned |" in (root / "results.md").read_text()
    assert (root / "frontier.png").stat().st_size > 1000 and "frontier.png" in out
    assert "| w2s |" in out and out.count("training") == 4
    manifest = load_manifest(root / "defenses" / "w2s")
    assert {"key", "config", "inputs", "seed", "versions", "metrics", "wall_s", "peak_memory_mb"} <= set(manifest)
    assert set(manifest["inputs"]) >= {"poisoned", "teacher"}
    assert (root / "defenses" / "w2s" / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert (root / "poisoned" / "logs" / "metrics.csv").is_file()
    created = {p: json.loads((p / "manifest.json").read_text())["created"] for p in root.rglob("*") if
               (p / "manifest.json").is_file()}

    assert run(config, models, tmp_path / "runs") == 0          # nothing changed: everything reused
    out = capsys.readouterr().out
    assert out.count("up to date, reused") == 4 and "training" not in out
    assert created == {p: json.loads((p / "manifest.json").read_text())["created"] for p in created}

    assert run(config, models, tmp_path / "runs", "--teacher.lr", "1e-4") == 0  # only the teacher's dependents
    out = capsys.readouterr().out
    retrained = {line.split(":")[1].strip() for line in out.splitlines() if line.endswith(")") and "training" in line}
    assert retrained == {"teacher", "w2s"}
    assert not list(root.rglob(".*.tmp-*"))                       # no staging folders left behind


def test_interrupted_stage_leaves_no_artifact(tmp_path, task, models, monkeypatch):
    from w2s.pipeline import stages

    def crash(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(stages, "teacher", crash)
    with pytest.raises(KeyboardInterrupt):
        run(write_config(tmp_path, task), models, tmp_path / "runs")
    root = tmp_path / "runs" / "tiny"
    assert load_manifest(root / "poisoned") is not None
    assert not (root / "teacher").exists() and not list(root.glob(".teacher.tmp-*"))  # its lock file stays


@pytest.mark.parametrize("text, message", [
    ("attack: {name: nope}\n", "unknown attack 'nope'"),
    ("teacher: {epochz: 3}\n", "epochz"),
    ("max_eval_rows: many\n", "max_eval_rows"),
    ("wandb: {mode: sometimes}\n", "unknown wandb.mode"),
    ("trainer: {devices: 2}\n", "several processes start from the command line"),
])
def test_config_errors_exit_2_naming_the_key(tmp_path, task, models, capsys, text, message):
    assert run(write_config(tmp_path, task, text), models, tmp_path / "runs") == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_row_range_past_the_data_fails_before_training(tmp_path, task, models, capsys):
    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--defense_rows", "[300, 900]") == 2
    assert "defense_rows: [300, 900] is not a range [start, stop) within the 400 train rows" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()


def test_print_config_and_help(capsys):
    from w2s.pipeline.reference import BASE, REFERENCE, base_yaml, reference

    assert main(["pipeline", "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "defenses:" in printed and "normalize_features: true" in printed
    stale = "is out of date with the settings' definitions: run python -m w2s.pipeline.reference"
    assert BASE.read_text() == base_yaml(), f"experiments/base.yaml {stale}"
    assert REFERENCE.read_text() == reference(), f"docs/config.md {stale}"
    assert [l for l in BASE.read_text().splitlines() if l and not l.startswith("#")] == printed.strip().splitlines()
    assert main(["--help"]) == 0
    listed = capsys.readouterr().out
    assert all(cmd in listed for cmd in ("data", "pipeline", "evaluate", "teacher", "poison", "unlearn"))


@pytest.mark.parametrize("config", EXPERIMENTS, ids=lambda p: p.stem)
def test_every_experiment_config_runs_tiny(config, models, tmp_path):
    args = tiny_args(models, tmp_path / "runs")
    own = [n for n, d in load_config(["--config", str(config)]).defenses.items() if d.teacher is not None]
    args += [f"--defenses.{name}.teacher.model={models['bert']}" for name in own]  # a defense's own teacher
    assert main(["pipeline", "--config", str(config), *args]) == 0
    rows = list(csv.DictReader(open(next((tmp_path / "runs").glob("*/results.csv")))))
    assert rows[0]["defense"] == "poisoned" and len(rows) >= 3


def test_report_marks_collapse_weak_backdoor_and_na():
    from w2s.pipeline.report import markdown, notes, result_rows

    def manifest(ca, asr, share, cc=None, info=None):
        return {"metrics": {"ca": ca, "asr": asr, "majority_share": share, "asr_clean_correct": cc,
                            "balanced_accuracy": 0.5, "macro_f1": 0.4}, "info": info or {},
                "trainable_params": 10, "wall_s": 1.0}

    manifests = {"poisoned": manifest(0.7, 1.0, 0.6, 0.9), "lora": manifest(0.7, 0.3, 1.0),
                 "w2s": manifest(0.8, 0.1, 0.7, info={"asr_clean_correct_na": "no triggered row is classified "
                                                                              "correctly when clean"})}
    lines = notes(manifests, clean_lora=["lora"])
    assert lines[0].startswith("warning: lora predicts one class for 100.0% of the clean test rows (collapsed")
    assert lines[1].startswith("warning: clean LoRA (lora) ends at ASR 0.300 < 0.5: the backdoor does not survive")
    assert lines[2] == "n/a: w2s's ASR (clean-correct): no triggered row is classified correctly when clean"
    table = markdown(result_rows(manifests))
    assert "| lora | 0.700 | 0.500 | 0.400 | 0.300 | n/a |" in table and table.splitlines()[3].endswith("| collapsed |")
    assert "nan" not in table and "dev CA" not in table and "detection" not in table  # columns no row has
    manifests["w2s"]["metrics"] |= {"dev_ca": 0.75, "detection_rate": 0.5}  # a filter's rate: a column of its own
    header, _, *rows = markdown(result_rows(manifests)).splitlines()
    assert header.startswith("| defense | CA | dev CA |") and "| detection |" in header
    assert rows[1].startswith("| lora | 0.700 | n/a |") and "| 0.500 | n/a |" in rows[2]
    assert notes({"poisoned": manifests["poisoned"], "lora": manifest(0.7, 0.9, 0.6)}, ["lora"]) == []


def test_quantized_defender_end_to_end_on_cpu(tmp_path, task, models):
    """The paper's setting: a full-precision poisoned student, loaded 4-bit by the defenses."""
    pytest.importorskip("bitsandbytes")
    from tests.tiny import make_llama

    student = str(make_llama(tmp_path / "llama64", hidden=64))  # bitsandbytes 4-bit blocks need width >= 64
    defenses = ("defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n"
                "  w2s_fp: {method: w2s, epochs: 1, lora: {r: 4}, quantization: none, objective: {ce: 1, kd: 1, fa: 1}}\n")
    config = write_config(tmp_path, task, defenses=defenses)
    args = tiny_args(models, tmp_path / "runs") + ["--student.name", student, "--student.quantization", "4bit"]
    assert main(["pipeline", "--config", str(config), *args]) == 0
    root = tmp_path / "runs" / "tiny"
    assert load_manifest(root / "poisoned")["config"]["student"]["quantization"] is None  # not the attacker's
    weights = (root / "poisoned" / "model" / "model.safetensors")
    from safetensors import safe_open
    with safe_open(weights, "pt") as f:                              # saved in full precision
        assert all(f.get_tensor(k).dtype.is_floating_point for k in f.keys())
    assert load_manifest(root / "defenses" / "lora")["info"]["quantization"] == "4bit"
    assert load_manifest(root / "defenses" / "w2s_fp")["info"]["quantization"] is None


def test_manifest_counts_final_metrics_in_the_logger_and_code_version(tmp_path, task, models, monkeypatch, capsys):
    config = write_config(tmp_path, task, defenses="defenses: {lora: {epochs: 1, lora: {r: 4}}}\n")
    args = tiny_args(models, tmp_path / "runs") + ["--attack.count", "7"]
    assert main(["pipeline", "--config", str(config), *args]) == 0
    root = tmp_path / "runs" / "tiny"
    poisoned = load_manifest(root / "poisoned")
    assert poisoned["info"]["poisoned_rows"] == 7 and poisoned["info"]["train_rows"] == 48
    assert poisoned["code"].startswith(f"{w2s.__version__}+")
    logged = list(csv.DictReader(open(root / "defenses" / "lora" / "logs" / "metrics.csv")))
    final = [r for r in logged if r.get("test/ca")]
    assert final and float(final[-1]["test/ca"]) == pytest.approx(load_manifest(root / "defenses" / "lora")
                                                                   ["metrics"]["ca"])
    assert {"test/asr", "test/balanced_accuracy", "test/macro_f1"} <= set(logged[0])
    capsys.readouterr()
    from w2s.pipeline import runs                                    # another code version: nothing is reused
    monkeypatch.setattr(runs, "code_version", lambda: "0.1.0+changed")
    assert main(["pipeline", "--config", str(config), *args]) == 0
    assert capsys.readouterr().out.count("training") == 2


def test_class_weights_and_keep_last_run(tmp_path, task, models):
    defenses = "defenses: {lora: {epochs: 1, lora: {r: 4}, class_weights: balanced, keep: last}}\n"
    config = write_config(tmp_path, task, defenses=defenses)
    assert run(config, models, tmp_path / "runs") == 0
    import re

    def hparams(stage):  # it holds python-object tags: read it as text, never unsafe-load it
        return (tmp_path / "runs" / "tiny" / stage / "logs" / "hparams.yaml").read_text()

    listed = re.search(r"^class_weights:\n((?:- .*\n)+)", hparams("defenses/lora"), re.M)
    assert listed and len(listed.group(1).splitlines()) == 4                 # one weight per class reached it
    assert re.search(r"^class_weights: null$", hparams("poisoned"), re.M)
    assert run(write_config(tmp_path, task, "poison: {keep: sometimes}\n"), models, tmp_path / "r2") == 2


def test_paper_config_is_the_reference_protocol(capsys):
    import yaml

    root = Path(__file__).resolve().parents[1]
    assert main(["pipeline", "--config", str(root / "experiments" / "paper.yaml"), "--print_config"]) == 0
    config = yaml.safe_load(capsys.readouterr().out)
    poison = config["poison"]                 # the reference's own IMDB subset, pinned at a commit
    assert poison["dataset"]["path"] == "json" and poison["dataset"]["splits"] == {"train": "train", "dev": "dev",
                                                                                   "test": "test"}
    commit = "https://raw.githubusercontent.com/shuaizhao95/w2sdefense/4403abcc67546cefe5c04509ef363ea64fb79de2/"
    assert poison["dataset"]["data_files"] == {s: f"{commit}word/data/imdb/{s}.json" for s in ("train", "dev", "test")}
    assert (poison["epochs"], poison["batch_size"], poison["gradient_clip_val"], poison["weight_decay"],
            poison["train_rows"]) == (5, 64, 1.0, 0.01, None)
    assert config["teacher"]["weight_decay"] == 0.01 and config["defenses"]["lora"]["lora"]["r"] == 512
    assert config["attack"] | {"attack_args": {}} == {"name": "badnet", "mode": "clean-label", "target_label": 0,
                                                      "count": 1000, "poison_rate": None, "selection": "first",
                                                      "seed": 0, "attack_args": {}}
    assert config["student"]["quantization"] == "4bit" and config["teacher"]["model"] == "bert-base-uncased"
    reference = config["defenses"]["w2s_reference"]
    assert reference["objective"]["fa_mode"] == "compat" and reference["lora"] == {
        "r": 512, "alpha": 512, "dropout": 0.1, "target_modules": None, "variant": "lora"}
    assert (reference["lr"], reference["epochs"], reference["warmup_ratio"], reference["weight_decay"]) == (
        2e-4, 5, 0.0, 0.01)
    assert config["defense_rows"] is None and config["teacher"]["train_rows"] is None   # the whole SST-2 train split


def test_report_names_each_data_warning_once_with_its_stages():
    from w2s.pipeline.report import notes

    warning = "test: the trigger survives truncation to max_length 32 in only 196 of 208 triggered rows (94.2%; ...)"
    manifest = {"metrics": {"ca": 0.9, "asr": 0.9, "majority_share": 0.5}, "info": {"warnings": [warning]}}
    assert notes({"poisoned": manifest, "lora": manifest}, clean_lora=["lora"]) == [
        f"warning (poisoned, lora): {warning}"]


def test_report_dir_keeps_every_stage_by_its_settings(tmp_path, task, models, capsys):
    """With ``report_dir`` (sweep trials over the seed or the attack) the poisoned student and
    teacher live in folders named by their settings and seed: another seed never overwrites
    them, and going back to the first reuses everything."""
    config, runs = write_config(tmp_path, task), tmp_path / "runs"
    for seed, report in ((0, "a"), (1, "b"), (0, "c")):
        assert run(config, models, runs, f"--seed={seed}", f"--report_dir={tmp_path / report}") == 0
    out = capsys.readouterr().out.split("written:")
    assert out[0].count("training") == out[1].count("training") == 4
    assert out[2].count("training") == 0 and out[2].count("up to date, reused") == 4
    stages = sorted(p.name.split("-")[0] for p in (runs / "tiny" / "stages").iterdir() if not p.name.startswith("."))
    assert stages == ["poisoned", "poisoned", "teacher", "teacher"]
    assert not (runs / "tiny" / "poisoned").exists()
    assert (tmp_path / "a" / "results.csv").read_text() == (tmp_path / "c" / "results.csv").read_text()


def test_each_stage_key_holds_what_the_stage_reads(task, models):
    """The poisoning stage poisons in full precision (the defender's quantization is not part of
    its key), but which triggered rows count depends on every tokenizer of the run (the teachers')."""
    from w2s.pipeline.run import poison_settings
    from w2s.pipeline.runs import fingerprint

    def key(*extra):
        return fingerprint(poison_settings(load_config(["--config", str(EXPERIMENTS[0]), *extra])))

    assert key("--student.quantization", "4bit") == key("--student.quantization", "null")
    assert key("--teacher.model", models["bert"]) != key("--teacher.model", models["gpt2"])
    assert key("--poison.gradient_clip_val", "1.0") != key()


def test_gradient_clipping_reaches_the_trainer(tmp_path):
    from w2s.pipeline.config import PipelineConfig, TrainStage
    from w2s.pipeline.runs import StageRun
    from w2s.pipeline.stages import make_trainer

    trainer = make_trainer(PipelineConfig(), StageRun(tmp_path), TrainStage(gradient_clip_val=1.0), "x", precision="bf16-mixed")
    assert trainer.gradient_clip_val == 1.0 and trainer.precision == "bf16-mixed"
