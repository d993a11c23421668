"""The W2S levers beyond the loss weights: the weight schedule, the aligned layer, how it is
pooled and what it is aligned to. Each changes what it claims to change, and nothing else."""
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import loss_inputs
from students.pooling import mean_pool
from w2s.losses import ObjectiveConfig, compose
from w2s.losses.feature_alignment import feature_alignment_loss, feature_alignment_tokens
from w2s.losses.projection import fit_projection, project
from w2s.config.objective import SCHEDULES
from w2s.losses.schedule import schedule_factors


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


@settings(max_examples=60, deadline=None)
@given(hold=st.floats(0.0, 0.95), p=st.floats(0.0, 1.0))
def test_decay_holds_then_decays(hold, p):
    """``hold``: the decay schedule keeps the teacher's full weight for that share of training,
    then decays linearly to 0 at the end; hold 0 is the plain decay; ce never moves."""
    teacher, ce = schedule_factors("decay", p, hold)
    assert ce == 1.0
    assert teacher == (1.0 if p <= hold else pytest.approx((1.0 - p) / (1.0 - hold)))
    assert schedule_factors("decay", 1.0, hold) == (0.0, 1.0)
    assert schedule_factors("decay", p, 0.0) == schedule_factors("decay", p)


def test_hold_is_checked():
    for bad in (-0.1, 1.0):
        with pytest.raises(ValueError, match="hold must lie in \\[0, 1\\)"):
            ObjectiveConfig(schedule="decay", hold=bad)
    with pytest.raises(ValueError, match="hold 0.5 delays the decay schedule's decay; schedule is 'constant'"):
        ObjectiveConfig(hold=0.5)
    x = loss_inputs()
    held = ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0, schedule="decay", hold=0.5)
    assert compose(held, x, 0.4)[0].item() == pytest.approx(compose(ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0), x)[0].item())
    assert compose(held, x, 0.75)[0].item() == pytest.approx(
        compose(ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0, schedule="decay"), x, 0.5)[0].item())


def test_compose_follows_the_schedule():
    x = loss_inputs()
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
    from tests.helpers import make_trainer
    from w2s.config.attack import PoisonConfig
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
                         attack=PoisonConfig(name="badnet"), train_rows=(0, 32), batch_size=16)
    make_trainer(1, limit_val_batches=0).fit(module, data)
    assert layers == [1, 1] and progress == [0.0, 0.5]                               # 2 steps of 16 rows


def test_mean_pool_and_token_alignment_ignore_padding():
    g = torch.Generator().manual_seed(0)
    hidden, z = torch.randn(2, 4, 3, generator=g), torch.randn(2, 3, generator=g)
    mask = torch.tensor([[0, 1, 1, 1], [1, 1, 0, 0]])
    assert torch.allclose(mean_pool(hidden, mask), torch.stack([hidden[0, 1:].mean(0), hidden[1, :2].mean(0)]))
    by_hand = torch.stack([(z[0] - hidden[0, 1:]).pow(2).sum(-1).mean(), (z[1] - hidden[1, :2]).pow(2).sum(-1).mean()]).mean()
    assert feature_alignment_tokens(z, hidden, mask).item() == pytest.approx(by_hand.item())
    noisy = hidden.clone()
    noisy[mask == 0] = 1e3                                                           # padding states do not count
    assert feature_alignment_tokens(z, noisy, mask).item() == pytest.approx(by_hand.item())
    assert torch.allclose(mean_pool(noisy, mask), mean_pool(hidden, mask))
    assert feature_alignment_tokens(z, z.unsqueeze(1).expand(2, 4, 3), mask).item() == 0.0
    with pytest.raises(ValueError, match="matching teacher"):
        feature_alignment_tokens(z, hidden[..., :2], mask)


def test_fa_pool_chooses_what_is_aligned():
    x = loss_inputs()
    x.attention_mask = torch.tensor([[1, 1, 1], [0, 1, 1], [0, 0, 1], [1, 1, 1]])
    fa = {pool: compose(ObjectiveConfig(ce=0, kd=0, fa=1, fa_pool=pool), x)[1]["fa"].item()
          for pool in ("read", "mean", "tokens")}
    assert fa["read"] == pytest.approx(feature_alignment_loss(x.teacher_features, x.student_features).item())
    mean = mean_pool(x.student_hidden, x.attention_mask)
    assert fa["mean"] == pytest.approx(feature_alignment_loss(x.teacher_features, mean).item())
    assert fa["tokens"] == pytest.approx(feature_alignment_tokens(x.teacher_features, x.student_hidden,
                                                                  x.attention_mask).item())
    assert len(set(fa.values())) == 3
    ce_only = {pool: compose(ObjectiveConfig(ce=1, kd=1, fa=0, fa_pool=pool), x)[0].item() for pool in ("read", "tokens")}
    assert ce_only["read"] == ce_only["tokens"]                                       # nothing else moves
    for bad, match in (({"fa_pool": "max"}, "unknown fa_pool 'max'"), ({"fa_target": "x"}, "unknown fa_target 'x'"),
                       ({"fa_mode": "compat", "fa_pool": "mean"}, "takes no fa_pool")):
        with pytest.raises(ValueError, match=match):
            ObjectiveConfig(**bad)


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), ridge=st.floats(0.01, 10.0))
def test_fit_projection_is_the_ridge_solution(seed, ridge):
    g = torch.Generator().manual_seed(seed)
    x, w, b = torch.randn(50, 4, generator=g), torch.randn(4, 3, generator=g), torch.randn(3, generator=g)
    exact = fit_projection(x, x @ w + b, ridge=0.0)                                  # an affine map is recovered
    assert torch.allclose(project(x, exact), x @ w + b, atol=1e-4)
    assert torch.allclose(exact[:-1].float(), w, atol=1e-4) and torch.allclose(exact[-1].float(), b, atol=1e-4)
    y = torch.randn(50, 3, generator=g)
    p = fit_projection(x, y, ridge)
    a = torch.cat([x.double(), torch.ones(50, 1, dtype=torch.float64)], 1)
    gradient = a.T @ (a @ p - y.double()) + ridge * 50 * torch.cat([p[:-1], torch.zeros(1, 3, dtype=torch.float64)])
    assert gradient.abs().max() < 1e-6                                               # the optimum: zero gradient
    assert fit_projection(x, y, ridge * 10)[:-1].norm() <= p[:-1].norm() + 1e-9       # more ridge, smaller weights


def test_fit_projection_rejects_bad_shapes():
    with pytest.raises(ValueError, match="same N"):
        fit_projection(torch.zeros(5, 2), torch.zeros(4, 2))
    with pytest.raises(ValueError, match="ridge"):
        fit_projection(torch.zeros(5, 2), torch.zeros(5, 2), ridge=-1)


def test_fitted_target_maps_the_teacher_onto_the_student(trained, task):
    """``fa_target: fitted`` replaces the teacher's features by the ridge map fitted to the
    student's own pooled states on the training rows: the alignment it starts from is smaller."""
    from students import StudentSpec
    from tests.helpers import make_trainer
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit.unlearn import UnlearnModule

    def started(**objective):
        module = UnlearnModule(StudentSpec(trained["student"]), trained["teacher"], num_labels=4,
                               objective=ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0, **objective))
        data = W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=f"{trained['teacher']}/encoder",
                             attack=PoisonConfig(name="badnet"), train_rows=(0, 32), batch_size=16)
        make_trainer(1, limit_train_batches=0, limit_val_batches=0).fit(module, data)
        return module, data

    plain, data = started()
    fitted, _ = started(fa_target="fitted", fa_pool="mean")
    student = fitted.student_features(data.teacher_dataloader())
    assert student.shape == fitted.teacher_features.shape == plain.teacher_features.shape
    expected = project(plain.teacher_features, fit_projection(plain.teacher_features, student))
    assert torch.allclose(fitted.teacher_features, expected, atol=1e-5)
    assert torch.equal(fitted.teacher_logits, plain.teacher_logits)                 # only the features change
    assert feature_alignment_loss(fitted.teacher_features, student) < feature_alignment_loss(plain.teacher_features, student)


def test_a_defense_can_have_its_own_teacher(tmp_path, task, models):
    """``defenses.NAME.teacher`` (the teacher-strength lever): trained once per distinct
    setting, used by the defenses that name it; the others keep the pipeline's teacher."""
    import csv

    from tests.helpers import run, write_config
    from w2s.pipeline.runs import load_manifest

    own = f"{{epochs: 2, batch_size: 16, train_rows: [0, 96], model: {models['bert']}}}"
    defenses = ("defenses:\n  w2s: {epochs: 1, batch_size: 16, lora: {r: 4}}\n"
                f"  strong: {{method: w2s, epochs: 1, batch_size: 16, lora: {{r: 4}}, teacher: {own}}}\n"
                f"  strong2: {{method: w2s, epochs: 1, batch_size: 16, lora: {{r: 8}}, teacher: {own}}}\n")
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 0
    root = tmp_path / "runs" / "tiny"
    rows = [r["defense"] for r in csv.DictReader(open(root / "results.csv"))]
    assert rows == ["poisoned", "teacher", "teacher-strong", "w2s", "strong", "strong2"]   # one extra teacher
    (folder,) = (p for p in (root / "teachers").iterdir() if not p.name.startswith("."))  # lock files aside
    extra = load_manifest(folder)
    assert extra["config"]["teacher"]["epochs"] == 2 and extra["config"]["teacher"]["train_rows"] == [0, 96]
    assert extra["key"] != load_manifest(root / "teacher")["key"]
    inputs = {name: load_manifest(root / "defenses" / name)["inputs"]["teacher"] for name in ("w2s", "strong", "strong2")}
    assert inputs["strong"] == inputs["strong2"] == extra["key"] != inputs["w2s"]


def test_a_defense_teacher_with_bad_rows_fails_before_training(tmp_path, task, models, capsys):
    from tests.helpers import run, write_config

    defenses = "defenses:\n  strong: {method: w2s, teacher: {train_rows: [0, 9000]}}\n"
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 2
    assert "defenses.strong.teacher.train_rows: [0, 9000] is not a range" in capsys.readouterr().err
    assert not (tmp_path / "runs" / "tiny" / "poisoned").exists()
