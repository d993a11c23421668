"""Quiet output: the demo config on tiny models prints its stages, one progress bar each with an
ETA, and the table; none of the libraries' chatter, which --verbose brings back."""
import re
import subprocess
import sys
from pathlib import Path

from tests.helpers import tiny_args
from w2s.console import report_new_weights

DEMO = Path(__file__).resolve().parents[1] / "experiments" / "demo.yaml"
CHATTER = ["GPU available", "TPU available", "Tip:", "LOAD REPORT", "MISSING", "newly initialized", "kernels",
           "Warning", "deprecated", "Loading weights", "Writing model shards", "estimate number of stepping",
           "`Trainer.fit` stopped"]


def demo(tmp_path, task, models, *extra) -> str:
    args = [a for a in tiny_args(models, tmp_path / "runs") if a not in ("--trainer.progress_bar", "false")]
    done = subprocess.run([sys.executable, "-m", "w2s.cli", "pipeline", "--config", str(DEMO), "--dataset", task,
                           *args, *extra], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def test_demo_prints_stages_progress_and_the_table_only(tmp_path, task, models):
    out = demo(tmp_path, task, models)
    assert [c for c in CHATTER if c in out] == []
    stages = re.findall(r"^w2s: (\w[\w-]*): training", out, flags=re.M)
    assert stages == ["poisoned", "teacher", "lora", "w2s"]
    for stage, part in zip(stages, re.split(r"^w2s: \w[\w-]*: training.*$", out, flags=re.M)[1:]):
        bars = set(re.findall(r"^(Epoch \d+|Validation|Testing|Training)", part.replace("\r", "\n"), flags=re.M))
        assert bars and all(b.startswith(("Epoch", "Training")) for b in bars), (stage, bars)  # no eval bars
        assert re.search(r"\d\d:\d\d<\d\d:\d\d", part), stage                                # elapsed<ETA
    assert "| w2s |" in out and "written:" in out
    lines = [l for l in out.replace("\r", "\n").splitlines() if l.strip()]
    other = [l for l in lines if not l.startswith(("w2s: ", "Epoch ", "Training", "|", "demo:", "warning:",
                                                   "written:"))]
    assert other == [], other


def test_verbose_brings_the_libraries_back(tmp_path, task, models):
    out = demo(tmp_path, task, models, "--verbose")
    assert "GPU available" in out                                      # Lightning's hardware lines
    assert "LOAD REPORT" in out or "were not initialized" in out       # transformers' load report (5.x, 4.x)


def test_an_unexpected_new_weight_is_still_reported(capsys):
    report_new_weights("m", {"missing_keys": ["score.weight", "model.layers.0.mlp.up_proj.weight"]}, ["score."])
    report_new_weights("m", {"missing_keys": ["score.weight"]}, ["score."])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing from the checkpoint, so random: 1 weight(s)" in err and "up_proj" in err
