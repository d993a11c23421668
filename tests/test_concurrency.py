"""Concurrency: two pipeline runs that need the same stages, started at once, train each stage
once; the other run waits on the stage's file lock and reuses what the first wrote."""
import subprocess
import sys

from tests.helpers import tiny_args, write_config
from w2s.pipeline.runs import load_manifest


def test_two_runs_at_once_train_each_stage_once(tmp_path, task, models):
    config = write_config(tmp_path, task)
    command = [sys.executable, "-m", "w2s.cli", "pipeline", "--config", str(config),
               *tiny_args(models, tmp_path / "runs")]
    runs = [subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for _ in range(2)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], [err[-2000:] for _, err in outputs]
    out = "".join(stdout for stdout, _ in outputs)
    stages = ("poisoned", "teacher", "lora", "w2s")
    trained = [line.split(":")[1].strip() for line in out.splitlines() if line.endswith(")") and ": training (" in line]
    assert sorted(trained) == sorted(stages)                      # every stage once, over both runs
    assert out.count("up to date, reused") == len(stages)         # the other run reused each
    assert "another run is training it, waiting" in out
    root = tmp_path / "runs" / "tiny"
    assert all(load_manifest(root / folder) for folder in ("poisoned", "teacher", "defenses/lora", "defenses/w2s"))
    assert outputs[0][0].split("| defense |")[1] == outputs[1][0].split("| defense |")[1]  # the same table
