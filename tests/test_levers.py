"""The W2S levers beyond the loss weights: the weight schedule and the aligned layer. Each
changes what it claims to change, and nothing else."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.test_losses import _inputs
from w2s.losses import ObjectiveConfig, compose
from w2s.losses.schedule import SCHEDULES, schedule_factors


@settings(max_examples=60, deadline=None)
@given(name=st.sampled_from(SCHEDULES), p=st.floats(-0.5, 1.5), q=st.floats(0.0, 1.0))
def test_schedule_factors(name, p, q):
    teacher, ce = schedule_factors(name, p)
    assert 0.0 <= teacher <= 1.0 and ce in (0.0, 1.0)
    assert schedule_factors(name, p) == schedule_factors(name, min(max(p, 0.0), 1.0))   # clamped
    if name == "constant":
        assert (teacher, ce) == (1.0, 1.0)
    if name in ("warmup", "decay"):
        later = schedule_factors(name, max(p, q) if 0 <= p <= 1 else q)[0]
        now = schedule_factors(name, min(max(p, 0.0), 1.0) if 0 <= p <= 1 else q)[0]
        assert (later >= now) if name == "warmup" else (later <= now)                     # monotone
        assert ce == 1.0
    if name == "align_first":
        assert (teacher > 0) != (ce > 0)                                                  # one or the other


def test_schedule_ends():
    assert schedule_factors("warmup", 0.0) == (0.0, 1.0) and schedule_factors("warmup", 1.0) == (1.0, 1.0)
    assert schedule_factors("decay", 0.0) == (1.0, 1.0) and schedule_factors("decay", 1.0) == (0.0, 1.0)
    assert schedule_factors("align_first", 0.49) == (1.0, 0.0) and schedule_factors("align_first", 0.5) == (0.0, 1.0)
    with pytest.raises(ValueError, match="unknown schedule 'sometimes'"):
        ObjectiveConfig(schedule="sometimes")


def test_compose_follows_the_schedule():
    x = _inputs()
    constant = ObjectiveConfig(ce=2.0, kd=0.5, fa=0.25)
    total, terms = compose(constant, x)
    ce, kd, fa = (terms[k].item() for k in ("ce", "kd", "fa"))

    warm = ObjectiveConfig(ce=2.0, kd=0.5, fa=0.25, schedule="warmup")
    total0, terms0 = compose(warm, x, progress=0.0)
    assert set(terms0) == {"ce"} and total0.item() == pytest.approx(2.0 * ce)      # the teacher's pull starts at 0
    assert compose(warm, x, 0.5)[0].item() == pytest.approx(2.0 * ce + 0.5 * (0.5 * kd + 0.25 * fa))
    assert compose(warm, x, 1.0)[0].item() == pytest.approx(total.item())

    first = ObjectiveConfig(ce=2.0, kd=0.5, fa=0.25, schedule="align_first")
    early, early_terms = compose(first, x, 0.25)
    assert set(early_terms) == {"kd", "fa"} and early.item() == pytest.approx(0.5 * kd + 0.25 * fa)
    late, late_terms = compose(first, x, 0.75)
    assert set(late_terms) == {"ce"} and late.item() == pytest.approx(2.0 * ce)

    lora = ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0, schedule="align_first")         # no teacher: no change
    assert compose(lora, x, 0.1)[0].item() == pytest.approx(compose(ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0), x)[0].item())


def test_fa_layer_aligns_the_chosen_layer(models):
    from transformers import AutoModelForSequenceClassification

    from students.forward import forward_with_features
    from students.pooling import pool

    model = AutoModelForSequenceClassification.from_pretrained(models["llama"], num_labels=2).eval()
    ids = torch.tensor([[0, 0, 5, 6, 7], [3, 4, 5, 6, 7]])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        last = forward_with_features(model, ids, mask, decoder=True)
        deeper = forward_with_features(model, ids, mask, decoder=True, layer=-2)
        states = model(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    assert torch.allclose(deeper.features, pool(states[-2], mask, True), atol=1e-5)
    assert not torch.allclose(deeper.features, last.features)
    assert torch.equal(deeper.logits, last.logits)                                   # only the aligned state moves
    with pytest.raises(ValueError, match="layer 9 does not exist"):
        forward_with_features(model, ids, mask, decoder=True, layer=9)


def test_schedule_and_layer_reach_the_unlearning_step(trained, task, monkeypatch):
    """One real training step: the module aligns ``fa_layer`` and passes its progress to the schedule."""
    from students import StudentSpec
    from tests.conftest import make_trainer
    from w2s.attacks import PoisonConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit import unlearn

    layers, progress = [], []
    forward, compose = unlearn.forward_with_features, unlearn.compose

    def spy_forward(*args, **kwargs):
        layers.append(kwargs["layer"])
        return forward(*args, **kwargs)

    def spy_compose(config, inputs, p):
        progress.append(p)
        return compose(config, inputs, p)

    monkeypatch.setattr(unlearn, "forward_with_features", spy_forward)
    monkeypatch.setattr(unlearn, "compose", spy_compose)
    module = unlearn.UnlearnModule(StudentSpec(trained["student"]), trained["teacher"], num_labels=4,
                                   objective=ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0, fa_layer=1, schedule="warmup"))
    data = W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=f"{trained['teacher']}/encoder",
                         attack=PoisonConfig(attack="badnet"), train_rows=(0, 32), batch_size=16)
    make_trainer(1, limit_val_batches=0).fit(module, data)
    assert layers == [1, 1] and progress == [0.0, 0.5]                               # 2 steps of 16 rows
