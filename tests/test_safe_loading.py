"""Safe loading: weights come from safetensors or ``torch.load(weights_only=True)``; a pickled
payload with code in it is refused with one line (exit 2) and never runs."""
import os

import pytest
import torch

from tests.helpers import run, tiny_args, write_config
from tests.helpers import LONGER, kill_during
from w2s.cli import main


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_checkpoint_with_code_is_refused_and_not_run(tmp_path, task, models, capsys):
    config = write_config(tmp_path, task)
    args = ["pipeline", "--config", str(config), *tiny_args(models, tmp_path / "runs"), *LONGER]
    kill_during("poisoned", args[1:], tmp_path)
    (last,) = (tmp_path / "runs" / "tiny").glob(".poisoned.resume-*/poisoned/last.ckpt")
    marker = tmp_path / "ran"
    torch.save({"state_dict": {}, "loops": Payload(marker)}, last)
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: poisoned: refused the checkpoint") and "posix.system" in err
    assert not marker.exists() and last.is_file()             # not run; left for the user to inspect


@pytest.mark.parametrize("weights", ["pytorch_model.bin", "model.pt"])
def test_a_student_with_pickled_weights_only_is_refused_before_anything_runs(tmp_path, task, models, capsys, weights):
    student = tmp_path / "student"
    student.mkdir()
    (student / "config.json").write_text(open(os.path.join(models["llama"], "config.json")).read())
    marker = tmp_path / "ran"
    torch.save({"model.embed_tokens.weight": Payload(marker)}, student / weights)
    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--student.name", str(student)) == 2
    err = capsys.readouterr().err
    assert "student.name" in err and "no .safetensors weights" in err and "pickled" in err
    assert not marker.exists() and not (tmp_path / "runs").exists()


def test_a_pickled_adapter_is_refused(tmp_path, task, models, capsys):
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text("{}")
    marker = tmp_path / "ran"
    torch.save({"lora": Payload(marker)}, adapter / "adapter_model.bin")
    assert main(["evaluate", "--student", models["llama"], "--adapter", str(adapter), "--dataset", task,
                 "--max_eval_rows", "8"]) == 2
    assert "no adapter_model.safetensors" in capsys.readouterr().err and not marker.exists()
