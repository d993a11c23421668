"""What the README's *Extending* section promises: a loss term and a metric registered from
outside the package reach the training step, every stage's manifest, ``results.csv``,
``results.md`` and the summary, with no file of the package touched."""
import csv
import json

import pytest
import torch
from torchmetrics import MeanMetric

from tests.helpers import run, write_config
from w2s.config.objective import TERM_NEEDS
from w2s.losses import TERMS, register_term
from w2s.metrics import METRICS, MetricSpec, register_metric


@pytest.fixture
def registered():
    """A term (the logits' mean square, counting its calls) and a metric (share of class-1 predictions)."""
    calls = []

    @register_term("logit_l2")
    def logit_l2(inputs, config):
        calls.append(inputs.student_logits.shape[0])
        return inputs.student_logits.pow(2).mean()

    register_metric(MetricSpec("class1_share", "class-1 share", "clean", build=lambda num_labels: MeanMetric(),
                               update=lambda metric, rows: metric.update((rows.preds == 1).float())))
    yield calls
    del TERMS["logit_l2"], TERM_NEEDS["logit_l2"], METRICS["class1_share"]


def test_a_registered_term_and_metric_reach_the_step_and_the_results(registered, models, task, tmp_path):
    defenses = ("defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n"
                "  small_logits: {method: lora, epochs: 1, lora: {r: 4}, objective: {extra: {logit_l2: 0.5}}}\n")
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 0
    assert registered and all(n > 0 for n in registered)                # computed in the training step
    folder = next((tmp_path / "runs").glob("*/results.csv")).parent
    rows = {r["defense"]: r for r in csv.DictReader(open(folder / "results.csv"))}
    assert set(rows) == {"poisoned", "lora", "small_logits"}                # no term needs a teacher: none trained
    shares = {name: float(r["class1_share"]) for name, r in rows.items()}
    assert all(0.0 <= s <= 1.0 for s in shares.values())
    assert "| class-1 share |" in (folder / "results.md").read_text()
    assert json.loads((folder / "summary.json").read_text())["small_logits/class1_share"] == pytest.approx(
        shares["small_logits"], abs=1e-4)


def test_a_registered_term_declares_what_it_needs():
    from w2s.losses import LossInputs, ObjectiveConfig, compose

    @register_term("logit_pull", needs=("teacher",))
    def logit_pull(inputs, config):
        return (inputs.student_logits - inputs.teacher_logits).pow(2).mean()

    try:
        config = ObjectiveConfig(extra={"logit_pull": 2.0}, schedule="decay")
        assert config.terms == ("ce", "logit_pull") and config.needs_teacher   # the step loads the teacher
        logits, labels = torch.zeros(4, 3), torch.tensor([0, 1, 2, 0])
        inputs = LossInputs(logits, labels, teacher_logits=torch.ones(4, 3))
        _, start = compose(config, inputs, progress=0.0)
        total, _ = compose(config, inputs, progress=1.0)
        assert start["logit_pull"].item() == pytest.approx(1.0)
        # a teacher term, so the schedule moves its weight: decayed to 0 at the end, CE alone
        assert total.item() == pytest.approx(start["ce"].item())
    finally:
        del TERMS["logit_pull"], TERM_NEEDS["logit_pull"]
    with pytest.raises(ValueError, match="'logit_pull' is not a registered loss term"):
        ObjectiveConfig(extra={"logit_pull": 1.0})
    with pytest.raises(ValueError, match="'kd' is a built-in term: set objective.kd"):
        ObjectiveConfig(extra={"kd": 1.0})
    with pytest.raises(ValueError, match="unknown needs"):
        register_term("x", needs=("labels_of_the_test_set",))
