"""Trigger-blind selection: the defenses validate (and so select checkpoints) on clean rows only,
the defender's own held-out rows when given; triggered rows are used for testing alone."""
import csv
import json

import pytest

from tests.helpers import run, write_config
from w2s.config.attack import PoisonConfig
from w2s.data.datamodule import W2SDataModule


def test_blind_datamodule_validates_on_held_out_clean_rows_only(task, models):
    data = W2SDataModule(task, tokenizer=models["llama"], attack=PoisonConfig(name="badnet"), train_rows=(0, 100),
                         dev_rows=(300, 340), max_eval_rows=30)
    data.setup("fit")
    train = data.spec.load("train")
    (dev,) = data.eval_sets["dev"]                                   # one loader: clean rows
    assert [row["text"] for row in dev] == [ex.text for ex in train[300:340]]
    assert all(set(row) == {"index", "text", "label", "input_ids"} for row in dev)
    assert len(data.eval_sets["test"]) == 2                          # ASR is still measured on test
    assert "dev" not in data.trigger_kept                            # no triggered dev rows were built
    blind = W2SDataModule(task, tokenizer=models["llama"], attack=PoisonConfig(name="badnet"), blind=True, max_eval_rows=30)
    blind.setup("fit")
    assert [row["text"] for row in blind.eval_sets["dev"][0]] == [ex.text for ex in blind.spec.load("dev")[:30]]


@pytest.mark.parametrize("dev_asr", ["false", "true"])
def test_defenses_never_validate_on_triggered_rows(tmp_path, task, models, monkeypatch, dev_asr):
    """Also when every stage measures ASR on triggered dev rows (``dev_asr``: a test pass, for
    studies that rank by ASR): the defenses still select on clean rows alone."""
    from w2s.lit.base import ClassifierModule

    seen = []
    validate = ClassifierModule.validation_step

    def spy(self, batch, batch_idx, dataloader_idx=0):
        seen.append((type(self).__name__, dataloader_idx, "row" in batch or "clean_input_ids" in batch))
        return validate(self, batch, batch_idx, dataloader_idx)

    monkeypatch.setattr(ClassifierModule, "validation_step", spy)
    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--defense_dev_rows", "[96, 140]",
               "--dev_asr", dev_asr) == 0
    defenses = [s for s in seen if s[0] == "UnlearnModule"]
    assert defenses and all(idx == 0 and not triggered for _, idx, triggered in defenses)
    assert any(triggered for name, _, triggered in seen if name == "PoisonModule")  # the attacker's stage may
    folders = [p.parent for p in (tmp_path / "runs").rglob("manifest.json")]
    assert len(folders) >= 3
    for folder in folders:                                   # dev CA: what settings are chosen on
        manifest = json.loads((folder / "manifest.json").read_text())
        logged = [float(r["val/ca"]) for r in csv.DictReader(open(folder / "logs" / "metrics.csv")) if r.get("val/ca")]
        kept = max(logged) if manifest["config"].get("keep", "best") == "best" else logged[-1]
        assert manifest["metrics"]["dev_ca"] == pytest.approx(kept)
        assert ("dev_asr" in manifest["metrics"]) == (dev_asr == "true")
    report = next((tmp_path / "runs").glob("*/frontier.png")).parent
    assert (report / "frontier_dev.png").is_file() == (dev_asr == "true")     # the dev rows' frontier: chosen on


@pytest.mark.parametrize("rows, message", [
    ("[60, 100]", "defense_dev_rows [60, 100] overlap defense_rows [48, 96]"),
    ("[390, 900]", "defense_dev_rows: [390, 900] is not a range"),
])
def test_bad_dev_rows_exit_2(tmp_path, task, models, capsys, rows, message):
    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--defense_dev_rows", rows) == 2
    assert message in capsys.readouterr().err
