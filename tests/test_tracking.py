"""W&B: one offline run per pipeline invocation with the resolved config, stage curves, the
results table, the chart and the summary metrics a sweep optimises."""
import csv
import json

import pytest

from tests.helpers import run, write_config
from tests.wandb_records import run_contents
from w2s.pipeline.tracking import resolve_mode


def test_offline_run_holds_config_curves_table_and_summary(tmp_path, task, models, capsys):
    config = write_config(tmp_path, task)
    assert run(config, models, tmp_path / "runs", "--wandb.mode", "offline", "--wandb.tags", "[t1]") == 0
    out = capsys.readouterr().out
    assert "W&B run" in out and "(offline)" in out and "wandb sync" in out
    root = tmp_path / "runs" / "tiny"
    (run_dir,) = (root / "wandb").glob("offline-run-*")                # one run for the whole invocation
    contents = run_contents(run_dir)
    assert contents["config"]["experiment"] == "tiny"
    assert contents["config"]["defenses"]["w2s"]["objective"]["fa"] == 1
    rows = {r["defense"]: r for r in csv.DictReader(open(root / "results.csv"))}
    summary = contents["summary"]
    for name in ("poisoned", "teacher", "lora", "w2s"):
        for column in ("ca", "asr", "asr_clean_correct"):
            assert summary[f"{name}/{column}"] == pytest.approx(float(rows[name][column]), abs=1e-4)
    assert summary == {**summary, **json.loads((root / "summary.json").read_text())}
    history = contents["history"]
    assert {"poisoned/val/ca", "teacher/val/ca", "w2s/val/ca", "w2s/test/asr", "lora/test/ca"} <= history
    assert not [k for k in history if k.startswith(("val/", "test/"))]  # every curve is under its stage
    (table,) = (run_dir / "files" / "media" / "table").glob("results_*.table.json")
    logged = json.loads(table.read_text())
    assert logged["columns"][:2] == ["defense", "ca"] and [r[0] for r in logged["data"]] == list(rows)
    assert list((run_dir / "files" / "media" / "images").glob("chart_*.png"))


def test_disabled_writes_no_wandb_files(tmp_path, task, models):
    config = write_config(tmp_path, task, defenses="defenses: {lora: {epochs: 1, lora: {r: 4}}}\n")
    assert run(config, models, tmp_path / "runs", "--wandb.mode", "disabled") == 0
    assert not list((tmp_path / "runs").rglob("wandb"))


def test_auto_mode(monkeypatch, tmp_path):
    for name in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SWEEP_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    assert resolve_mode("auto") == "offline"                            # no account: offline
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password abc\n")
    assert resolve_mode("auto") == "online"                             # `wandb login` credentials
    (tmp_path / "netrc").unlink()
    monkeypatch.setenv("WANDB_SWEEP_ID", "abc")
    assert resolve_mode("auto") == "online"                             # a W&B agent runs this
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled" and resolve_mode("offline") == "offline"

