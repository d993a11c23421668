"""What several test files share: tiny pipeline arguments and configs, a Trainer, a killed run,
fixed loss inputs. Fixtures live in conftest.py; test files import helpers from here, never
from each other."""
import json
import signal
import subprocess
import sys

from w2s.cli import main

BACKDOOR = dict(name="badnet", mode="dirty-label", target_label=0, count=None, poison_rate=0.15)


def make_trainer(max_epochs: int = 1, callbacks=(), **kwargs):
    import pytorch_lightning as pl

    return pl.Trainer(max_epochs=max_epochs, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks), **kwargs)


def tiny_args(models, runs, rows=(0, 48), defense_rows=(48, 96)):
    """Overrides that shrink any experiment to tiny models and a few rows, on the bundled data,
    in full precision (bitsandbytes 4-bit cannot pack the 32-wide tiny student: the quantized
    path has its own test with a 64-wide one)."""
    return ["--runs_dir", str(runs), "--student.name", models["llama"], "--teacher.model", models["bert"],
            "--poison.train_rows", json.dumps(list(rows)), "--teacher.train_rows", json.dumps(list(rows)),
            "--defense_rows", json.dumps(list(defense_rows)), "--max_eval_rows", "24", "--max_length", "24",
            "--poison.epochs", "1", "--teacher.epochs", "1", "--trainer.accelerator", "cpu",
            "--trainer.progress_bar", "false", "--trainer.precision", "null",
            "--attack.count", "5", "--attack.poison_rate", "null", "--poison.dataset", "null",
            "--student.quantization", "null"]


DEFENSES = ("defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n"
            "  w2s: {epochs: 1, lora: {r: 4}, objective: {ce: 1, kd: 1, fa: 1, normalize_features: true}}\n")


def write_config(tmp_path, task, text="", defenses=DEFENSES):
    path = tmp_path / "exp.yaml"
    path.write_text(f"experiment: tiny\ndataset: {task}\n{defenses}{text}")
    return path


def run(config, models, runs, *extra):
    return main(["pipeline", "--config", str(config), *tiny_args(models, runs), *extra])


# Runs `w2s pipeline ARGS` and SIGKILLs itself after optimizer step STEP of the fit named NAME.
KILLER = """
import os, signal, sys
import pytorch_lightning as pl
from w2s.pipeline import stages

class Kill(pl.Callback):
    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step == {step}:
            os.kill(os.getpid(), signal.SIGKILL)

make_trainer = stages.make_trainer
def killing_trainer(config, run, stage, name, **overrides):
    trainer = make_trainer(config, run, stage, name, **overrides)
    if name == {name!r}:
        trainer.callbacks.insert(0, Kill())
    return trainer
stages.make_trainer = killing_trainer

from w2s.cli import main
sys.exit(main(sys.argv[1:]))
"""

# 48 rows in batches of 4: 12 steps an epoch, a checkpoint every 5 steps; killed at step 17
# (mid-epoch 1, after a validation) a stage resumes from step 15. The poisoned student keeps its
# best dev epoch (the callback's state must survive); the teacher and the defense keep their
# last weights, so that every step after the resume shows in them (dropout: the random state).
LONGER = ["--poison.epochs", "3", "--poison.batch_size", "4", "--teacher.epochs", "3", "--teacher.batch_size", "4",
          "--teacher.keep", "last", "--trainer.checkpoint_every", "5"]


def kill_during(name: str, args: list[str], cwd) -> None:
    script = KILLER.format(step=17, name=name)
    done = subprocess.run([sys.executable, "-c", script, "pipeline", *args], cwd=cwd, capture_output=True, text=True)
    assert done.returncode == -signal.SIGKILL, done.stderr[-3000:]


def unlearn_data(task, trained, **kwargs):
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule

    return W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=trained["teacher"] + "/encoder",
                         attack=PoisonConfig(**BACKDOOR), batch_size=16, **kwargs)


def loss_inputs():
    """Fixed random inputs for every loss term but Obliviate's."""
    import torch

    from w2s.losses import LossInputs

    g = torch.Generator().manual_seed(2)
    return LossInputs(student_logits=torch.randn(4, 2, generator=g), labels=torch.tensor([0, 1, 1, 0]),
                      student_features=torch.randn(4, 6, generator=g), student_hidden=torch.randn(4, 3, 6, generator=g),
                      teacher_logits=torch.randn(4, 2, generator=g), teacher_features=torch.randn(4, 6, generator=g))
