"""Bad input, caught before any training: one line on stderr naming the key (or FILE:LINE),
exit code 2, nothing written and nothing already written damaged."""
import pytest

from tests.helpers import run, write_config
from w2s.cli import main

CASES = [  # (extra arguments, YAML appended to the config, what the line must say)
    (["--teacher.lr", "-1"], "", "teacher: invalid optimizer settings: lr=-1.0"),
    (["--poison.epochs", "-2"], "", "poison: epochs and batch_size must be >= 1, got -2"),
    (["--teacher.batch_size", "0"], "", "teacher: epochs and batch_size must be >= 1"),
    (["--teacher.epochs", "many"], "", 'teacher.epochs'),
    (["--teacher.epochz", "3"], "", "unrecognized arguments: --teacher.epochz 3"),
    ([], "teacher: {epochz: 3}\n", "epochz"),
    (["--student.quantization", "3bit"], "", "unknown student.quantization '3bit'"),
    (["--student.attn_implementation", "nope"], "", "unknown attn_implementation 'nope'"),
    (["--attack.poison_rate", "2", "--attack.count", "null"], "", "attack: poison_rate must lie in [0, 1], got 2.0"),
    (["--attack.name", "nope"], "", "unknown attack 'nope'"),
    (["--attack.mode", "sideways"], "", "unknown poison mode 'sideways'"),
    (["--poison.keep", "sometimes"], "", "unknown keep 'sometimes'"),
    (["--defenses.w2s.objective.fa=-1"], "", "defenses.w2s: loss weight fa must be >= 0"),
    (["--defenses.w2s.objective.schedule=sometimes"], "", "defenses.w2s: unknown schedule 'sometimes'"),
    (["--defenses.w2s.objective.fa_pool=max"], "", "defenses.w2s: unknown fa_pool 'max'"),
    (["--defenses.w2s.method=nope"], "", "defenses.w2s: unknown defense 'nope'"),
    (["--defenses.w2s.lora.r=0"], "", "defenses.w2s: LoRA rank r must be >= 1"),
    ([], "defenses:\n  lmsanitator: {options: {victim: adapter}}\n", "unknown lmsanitator victim 'adapter'"),
    ([], "defenses:\n  lmsanitator: {options: {victim: prompt, prompt_tokens: 0}}\n", "prompt_tokens must be >= 1"),
    (["--wandb.mode", "sometimes"], "", "unknown wandb.mode"),
    (["--trainer.devices", "0"], "", "trainer.devices and trainer.num_nodes must be >= 1"),
    (["--trainer.devices", "2", "--trainer.strategy", "deepspeed"], "", "a pipeline in several processes runs under"),
    (["--trainer.strategy", "fsdp", "--trainer.precision", "16-mixed"], "",
     "trainer.precision '16-mixed': trainer.strategy fsdp runs in None, 32-true"),
    (["--trainer.strategy", "fsdp"], "defenses:\n  psim: {}\n",
     "trainer.strategy fsdp cannot shard psim's p-tuning module"),
    (["--trainer.strategy", "fsdp", "--student.quantization", "4bit"], "",
     "trainer.strategy fsdp shards full-precision weights, but lora, w2s load the student quantized"),
    (["--trainer.checkpoint_every=-5"], "", "trainer: checkpoint_every must be >= 0"),
    (["--bucket_batches=-1"], "", "bucket_batches and num_workers must be >= 0, got -1, 0"),
    (["--attack.target_label", "7"], "", "attack.target_label: 7 is not a class of"),
    (["--defense_rows", "[300, 900]"], "", "defense_rows: [300, 900] is not a range"),
    (["--defense_dev_rows", "[60, 100]"], "", "defense_dev_rows [60, 100] overlap defense_rows [48, 96]"),
    (["--defense_rows", "[40, 96]"], "", "defense_rows: [40, 96] overlap poison.train_rows [0, 48] of"),
    (["--max_eval_rows", "-5"], "", "max_eval_rows >= 1 (or null: every row), got 24, 64, -5"),
    (["--teacher.train_rows", "[50, 10]"], "", "teacher: train_rows: [50, 10] is not a range [start, stop)"),
    (["--defenses.w2s.objective.temperature=0"], "", "defenses.w2s: temperature must be > 0, got 0.0"),
    (["--defenses.w2s.lora.alpha=-3"], "", "defenses.w2s: LoRA alpha must be >= 1 (or null: alpha = r), got -3"),
    (["--poison.gradient_clip_val", "0"], "", "poison: gradient_clip_val must be > 0 (or null: no clipping), got 0"),
    (["--trainer.precision", "bf16-true"], "", "full fine-tuning (the poisoning stage) keeps fp32 master weights"),
    (["--defenses.w2s.objective.fa_mode=compat", "--defenses.w2s.objective.fa_layer=-2"], "",
     "defenses.w2s: fa_mode compat is the reference code's own alignment"),
    (["--dataset", "/no/such/folder"], "", "unknown dataset '/no/such/folder'"),
    (["--poison.dataset", "sst2"], "", "poison.dataset: sst2 has 2 classes"),
    (["--student.name", "/nope/model"], "", "student.name: no model folder /nope/model (not found)"),
    (["--teacher.model", "/nope/teacher"], "", "teacher.model: no model folder /nope/teacher"),
    (["--teacher.model", "nope-org/nope-model"], "", "teacher.model: 'nope-org/nope-model' is neither a model folder"),
    (["--defenses.w2s.teacher.model=/nope/own"], "", "defenses.w2s.teacher.model: no model folder /nope/own"),
    (["--defenses.w2s.teacher.train_rows=[0, 9000]"], "", "defenses.w2s.teacher.train_rows: [0, 9000] is not a range"),
    (["--student.name", "{classifier2}"], "", "student.name: {classifier2} has a classification head for 2 classes, "
                                              "the data has 4"),
]


@pytest.mark.parametrize("extra, text, message", CASES, ids=[c[2][:40] for c in CASES])
def test_bad_value_exits_2_before_anything_is_written(tmp_path, task, models, capsys, monkeypatch, extra, text,
                                                      message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if "{classifier2}" in " ".join(extra):  # a student saved with a 2-class head; the task has 4
        from transformers import AutoModelForSequenceClassification

        AutoModelForSequenceClassification.from_pretrained(models["llama"], num_labels=2).save_pretrained(
            tmp_path / "classifier2")
        extra = [a.replace("{classifier2}", str(tmp_path / "classifier2")) for a in extra]
        message = message.replace("{classifier2}", str(tmp_path / "classifier2"))
    assert run(write_config(tmp_path, task, text), models, tmp_path / "runs", *extra) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message.lower() in err[0].lower(), err
    assert not (tmp_path / "runs").exists()


def test_config_file_errors_name_the_file_and_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("experiment: x\nteacher: {epochs: 3\nmax_length: 3\n")
    assert main(["pipeline", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip() == (f"error: {bad}:3: expected ',' or '}}', but got ':' "
                                               f"(while parsing a flow mapping at line 2)")
    assert main(["pipeline", f"--config={tmp_path / 'missing.yaml'}"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {tmp_path / 'missing.yaml'}: no such file or directory"
    assert main(["nope"]) == 2 and capsys.readouterr().err.count("\n") == 1


def test_output_folder_and_model_folder_problems(tmp_path, task, models, capsys):
    (tmp_path / "a_file").write_text("")
    assert run(write_config(tmp_path, task), models, tmp_path / "a_file" / "runs") == 2
    assert f"runs_dir: {tmp_path / 'a_file'} is a file, not a folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--student.name", str(tmp_path / "empty")) == 2
    assert "student.name: " in (err := capsys.readouterr().err) and "is not a model folder (no config.json)" in err
    assert not (tmp_path / "runs").exists()


def test_not_enough_disk_space(tmp_path, task, models, capsys, monkeypatch):
    import shutil

    monkeypatch.setattr("w2s.pipeline.validate.shutil.disk_usage", lambda path: shutil._ntuple_diskusage(1, 1, 1024))
    assert run(write_config(tmp_path, task), models, tmp_path / "runs") == 2
    assert "runs_dir: the run writes about" in (err := capsys.readouterr().err) and "GiB free" in err
    assert not (tmp_path / "runs").exists()


def test_a_bad_rerun_damages_nothing(tmp_path, task, models, capsys):
    runs = tmp_path / "runs"
    assert run(write_config(tmp_path, task), models, runs) == 0
    before = {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()}
    assert run(write_config(tmp_path, task), models, runs, "--attack.target_label", "9") == 2
    assert run(write_config(tmp_path, task), models, runs, "--teacher.lr", "-1") == 2
    assert {p: p.read_bytes() for p in runs.rglob("*") if p.is_file()} == before


def test_an_adapter_made_for_another_base_model_is_refused(tmp_path, task, models, capsys):
    from transformers import AutoModelForSequenceClassification

    from students.lora import LoraSpec, attach_lora
    from tests import tiny

    other = tiny.make_llama(tmp_path / "wider", hidden=64)
    attach_lora(AutoModelForSequenceClassification.from_pretrained(other, num_labels=4), LoraSpec(r=4)) \
        .save_pretrained(tmp_path / "adapter")
    assert main(["evaluate", "--student", models["llama"], "--adapter", str(tmp_path / "adapter"), "--dataset", task,
                 "--max_eval_rows", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: adapter:") and "was made for another base model" in err and "size mismatch" in err


def test_a_teacher_trained_for_other_classes_is_refused(trained, models):
    from students import StudentSpec
    from w2s.lit import UnlearnModule
    from w2s.losses import ObjectiveConfig

    module = UnlearnModule(StudentSpec(models["llama"]), teacher=trained["teacher"], num_labels=2,
                           objective=ObjectiveConfig(ce=1, kd=1, fa=1))
    with pytest.raises(ValueError, match=r"teacher: .* was trained for 4 classes, the data has 2"):
        module.configure_model()
