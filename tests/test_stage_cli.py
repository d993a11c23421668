"""``w2s teacher|poison|unlearn {fit,validate,test}`` (LightningCLI) and ``w2s evaluate``."""
import subprocess
import sys

import pytest
import torch

from w2s.cli import main

TRAINER = ["--trainer.max_epochs", "1", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
           "--trainer.enable_checkpointing", "false", "--trainer.enable_progress_bar", "false",
           "--trainer.limit_train_batches", "2", "--trainer.limit_val_batches", "1"]


def test_stage_commands_train_and_save(task, models, tmp_path, capsys):
    data = ["--data.dataset", task, "--data.max_eval_rows", "16", "--data.batch_size", "8",
            "--trainer.default_root_dir", str(tmp_path)]  # LightningCLI writes config.yaml there
    teacher = tmp_path / "teacher"
    assert main(["teacher", "fit", "--model.teacher.name", models["bert"], "--model.teacher.student", models["llama"],
                 "--model.teacher.num_labels", "4", *data, *TRAINER, "--output", str(teacher)]) == 0
    assert (teacher / "teacher.json").is_file()
    poisoned = tmp_path / "poisoned"
    assert main(["poison", "fit", "--model.student.name", models["llama"], "--data.poison_train", "true",
                 "--data.attack.mode", "dirty-label", "--data.attack.count", "20", *data, *TRAINER,
                 "--output", str(poisoned)]) == 0
    assert (poisoned / "model.safetensors").is_file()
    defended = tmp_path / "defended"
    assert main(["unlearn", "fit", "--model.student.name", str(poisoned), "--model.teacher", str(teacher),
                 "--model.lora.r", "4", "--model.objective.kd", "1", "--model.objective.fa", "1", *data, *TRAINER,
                 "--output", str(defended)]) == 0
    assert (defended / "adapter" / "adapter_model.safetensors").is_file()
    assert "objective:" in (tmp_path / "config.yaml").read_text()  # the resolved unlearn config
    capsys.readouterr()
    assert main(["evaluate", "--student", str(poisoned), "--adapter", str(defended / "adapter"),
                 "--dataset", task, "--max_eval_rows", "16"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith(f"{poisoned} + {defended / 'adapter'} on {task} / badnet (target 0): CA ")


def test_stage_print_config_and_errors(models, capsys):
    assert main(["unlearn", "fit", "--print_config"]) == 0
    assert "objective:" in capsys.readouterr().out
    assert main(["unlearn", "fit", "--model.objective.kd", "lots"]) == 2
    assert "kd" in capsys.readouterr().err
    # refused before any model or tokenizer loads (this student does not exist)
    assert main(["poison", "fit", "--data.attack.name", "nope", "--model.student.name", "/no/such/student",
                 "--trainer.accelerator", "cpu"]) == 2
    assert "unknown attack 'nope'" in capsys.readouterr().err


def test_console_script_exit_code(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "w2s.cli", "evaluate", "--student", str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip().splitlines()[-1].startswith("error: ")


@pytest.mark.slow
def test_unlearn_fit_under_ddp_and_fsdp_on_two_cpu_processes(task, trained, tmp_path):
    """The multi-process path (gloo): teacher cache per rank, metrics gathered, rank 0 saves;
    FSDP (sharded blocks, gathered to save) takes DDP's steps."""
    from safetensors.torch import load_file

    adapters = {}
    for strategy in ("ddp", "fsdp"):
        proc = subprocess.run(
            [sys.executable, "-m", "w2s.cli", "unlearn", "fit", "--model.student.name", trained["student"],
             "--model.teacher", trained["teacher"], "--model.lora.r", "4", "--data.dataset", task,
             "--data.batch_size", "8", "--trainer.max_epochs", "1", "--trainer.accelerator", "cpu",
             "--trainer.devices", "2", "--trainer.strategy", strategy, "--trainer.enable_progress_bar", "false",
             "--trainer.default_root_dir", str(tmp_path / strategy), "--output", str(tmp_path / strategy / "out")],
            capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-2000:]
        adapters[strategy] = load_file(tmp_path / strategy / "out" / "adapter" / "adapter_model.safetensors")
    ddp, fsdp = adapters["ddp"], adapters["fsdp"]
    assert ddp.keys() == fsdp.keys() and all(torch.allclose(ddp[k], fsdp[k], rtol=1e-4, atol=1e-6) for k in ddp)
