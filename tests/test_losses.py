"""Loss functions against torch.nn.functional references and their limits."""
import math
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.helpers import loss_inputs

from w2s.losses import (LossInputs, ObjectiveConfig, compose, feature_alignment_loss, feature_alignment_reference,
                        kd_loss)

shapes = st.tuples(st.integers(1, 8), st.integers(2, 6))


@settings(max_examples=50, deadline=None)
@given(shape=shapes, seed=st.integers(0, 10_000), temperature=st.floats(0.5, 8.0))
def test_kd_properties(shape, seed, temperature):
    g = torch.Generator().manual_seed(seed)
    s, t = torch.randn(*shape, generator=g) * 3, torch.randn(*shape, generator=g) * 3
    assert kd_loss(t, t, temperature).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(s, t, temperature).item() >= -1e-6
    # float64 reference: for near-equal distributions the float32 KL loses digits to cancellation
    s64, t64 = s.double(), t.double()
    reference = F.kl_div(F.log_softmax(s64 / temperature, -1), F.softmax(t64 / temperature, -1),
                         reduction="batchmean") * temperature**2
    assert kd_loss(s, t, temperature).item() == pytest.approx(reference.item(), rel=1e-3, abs=1e-5)
    # shifting logits by a constant per row changes no softmax
    assert kd_loss(s + 5.0, t - 2.0, temperature).item() == pytest.approx(kd_loss(s, t, temperature).item(), abs=1e-4)


def test_kd_high_temperature_limit_is_logit_matching():
    """As T -> inf, T^2 KL -> 1/(2C) * mean_b || (s - mean s) - (t - mean t) ||^2 (Hinton et al.)."""
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(16, 5, generator=g), torch.randn(16, 5, generator=g)
    centred = (s - s.mean(-1, keepdim=True)) - (t - t.mean(-1, keepdim=True))
    limit = centred.pow(2).sum(-1).mean() / (2 * 5)
    assert kd_loss(s, t, temperature=200.0).item() == pytest.approx(limit.item(), rel=1e-2)


def test_kd_gradient_only_to_student_and_validation():
    s = torch.randn(4, 3, requires_grad=True)
    t = torch.randn(4, 3, requires_grad=True)
    kd_loss(s, t).backward()
    assert s.grad is not None and t.grad is None
    with pytest.raises(ValueError, match="temperature"):
        kd_loss(s, t, 0.0)
    with pytest.raises(ValueError, match="shapes differ"):
        kd_loss(s, torch.randn(4, 2))


@settings(max_examples=50, deadline=None)
@given(b=st.integers(1, 8), h=st.integers(1, 16), seed=st.integers(0, 10_000))
def test_feature_alignment_properties(b, h, seed):
    g = torch.Generator().manual_seed(seed)
    z, f = torch.randn(b, h, generator=g), torch.randn(b, h, generator=g)
    assert feature_alignment_loss(z, z).item() == pytest.approx(0.0, abs=1e-6)
    # mean over samples of the squared L2 distance = H * elementwise MSE
    assert feature_alignment_loss(z, f).item() == pytest.approx(h * F.mse_loss(f, z).item(), rel=1e-5)
    assert feature_alignment_loss(z, f).item() == pytest.approx(feature_alignment_loss(f, z).item(), rel=1e-6)
    normalised = feature_alignment_loss(z, f, normalize=True).item()
    assert -1e-6 <= normalised <= 4 + 1e-5
    assert feature_alignment_loss(z, 3.0 * z, normalize=True).item() == pytest.approx(0.0, abs=1e-5)


def test_feature_alignment_reference_broadcasting():
    g = torch.Generator().manual_seed(1)
    z, hidden = torch.randn(3, 4, generator=g), torch.randn(3, 5, 4, generator=g)
    manual = sum(((z[-1] - hidden[b, t]) ** 2).sum() for b in range(3) for t in range(5)) / 15
    assert feature_alignment_reference(z, hidden).item() == pytest.approx(manual.item(), rel=1e-5)
    assert feature_alignment_reference(z, z[-1].expand(3, 5, 4)).item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match=r"\(B, L, H\)"):
        feature_alignment_reference(z, hidden[:, 0])
    with pytest.raises(ValueError, match=r"\(B, H\)"):
        feature_alignment_loss(z, hidden)


def test_compose_is_the_weighted_sum_of_named_terms():
    x, config = loss_inputs(), ObjectiveConfig(ce=2.0, kd=0.5, fa=0.25)
    total, terms = compose(config, x)
    assert set(terms) == {"ce", "kd", "fa"}
    assert terms["ce"].item() == pytest.approx(F.cross_entropy(x.student_logits, x.labels).item())
    assert terms["kd"].item() == pytest.approx(kd_loss(x.student_logits, x.teacher_logits).item())
    assert terms["fa"].item() == pytest.approx(feature_alignment_loss(x.teacher_features, x.student_features).item())
    assert total.item() == pytest.approx(2.0 * terms["ce"].item() + 0.5 * terms["kd"].item() + 0.25 * terms["fa"].item())
    compat = compose(ObjectiveConfig(ce=0, kd=0, fa=1, fa_mode="compat"), x)[0]
    assert compat.item() == pytest.approx(feature_alignment_reference(x.teacher_features, x.student_hidden).item())


def test_clean_lora_needs_no_teacher():
    x = loss_inputs()
    x.teacher_logits = x.teacher_features = None
    config = ObjectiveConfig()
    assert not config.needs_teacher
    total, terms = compose(config, x)
    assert set(terms) == {"ce"} and total.item() == pytest.approx(terms["ce"].item())


@pytest.mark.parametrize("kwargs, message", [
    (dict(fa_mode="tokens"), "unknown fa_mode"), (dict(kd=-1.0), "kd must be >= 0")])
def test_objective_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ObjectiveConfig(**kwargs)
    with pytest.raises(ValueError, match="every loss weight is 0"):
        compose(ObjectiveConfig(ce=0, kd=0, fa=0), loss_inputs())


@pytest.mark.parametrize("attack", ["badnet", "insent", "synattack"])
def test_the_reference_weights_are_the_experiments(attack):
    from pathlib import Path

    import yaml

    from w2s.defenses.weak_to_strong import REFERENCE_OBJECTIVES

    path = Path(__file__).resolve().parents[1] / "experiments" / f"sst2_{attack}.yaml"
    reference = yaml.safe_load(path.read_text())["defenses"]["w2s_reference"]
    assert reference["objective"] == REFERENCE_OBJECTIVES[attack]
    assert reference["lora"] == {"r": 512, "variant": "lora", "alpha": None}   # the reference's plain LoRA, not W2S's


def test_non_finite_loss_stops_training():
    from w2s.lit.base import ClassifierModule, OptimConfig

    module = ClassifierModule(OptimConfig(), target_label=0, num_labels=2)
    with pytest.raises(ValueError, match="non-finite training loss by step 0 \\(this step: ce=nan\\)"):
        module.log_losses(torch.tensor(float("nan")), {"ce": torch.tensor(float("nan"))}, 4)


def test_objective_ce_term_uses_the_class_weights():
    g = torch.Generator().manual_seed(1)
    logits, labels, weights = torch.randn(6, 2, generator=g), torch.tensor([0, 0, 0, 0, 0, 1]), torch.tensor([0.6, 3.0])
    total, terms = compose(ObjectiveConfig(), LossInputs(logits, labels, class_weights=weights))
    assert total.item() == pytest.approx(F.cross_entropy(logits, labels, weight=weights).item(), rel=1e-6)
    unweighted, _ = compose(ObjectiveConfig(), LossInputs(logits, labels))
    assert unweighted.item() != pytest.approx(total.item(), rel=1e-3)


def test_every_configured_term_is_computed_and_the_defaults_are_neutral():
    from w2s.config.objective import TERM_NEEDS
    from w2s.lit import UnlearnModule
    from w2s.losses import TERMS

    assert set(TERMS) == set(TERM_NEEDS)
    assert ObjectiveConfig().terms == ("ce",) and not ObjectiveConfig().needs_teacher
    assert UnlearnModule().objective.terms == ("ce",)                 # works with its defaults: clean LoRA


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(2, 40), hidden=st.integers(1, 16))
def test_the_attack_vector_entropy_is_largest_when_every_row_agrees(seed, batch, hidden):
    from w2s.losses.attack_vectors import batch_entropy, input_agnostic

    g = torch.Generator().manual_seed(seed)
    same = torch.randn(1, hidden, generator=g).expand(batch, hidden)
    varied = same + torch.randn(batch, hidden, generator=g)
    assert batch_entropy(same).item() == pytest.approx(math.log(batch), rel=1e-5)
    assert batch_entropy(varied) < batch_entropy(same)
    assert input_agnostic(batch_entropy(same).item(), batch) and not input_agnostic(0.0, batch)


def test_mining_loss_pushes_away_from_the_clean_outputs_and_known_vectors():
    from w2s.losses.attack_vectors import mining_loss

    torch.manual_seed(0)
    y = torch.randn(8, 6)
    near, far = y + 0.01, y + 3.0
    assert mining_loss(far, y) < mining_loss(near, y)
    agnostic = torch.full((8, 6), 3.0)                                   # every row gives one vector
    known = [agnostic[0], torch.full((6,), 50.0)]
    assert mining_loss(agnostic, y, known) == mining_loss(agnostic, y)   # the nearest known one: 0 away
    assert mining_loss(agnostic, y, [torch.full((6,), 50.0)]) < mining_loss(agnostic, y)


def test_sign_agreement_flags_by_the_share_of_matching_signs():
    from w2s.losses.attack_vectors import sign_agreement

    vectors = torch.tensor([[1.0, 1, 1, 1, 1], [-1.0, -1, -1, -1, -1]])
    o = torch.tensor([[2.0, 3, 1, 1, -1], [-1.0, 1, -1, 1, -1], [0.5, 0.5, 0.5, 0.5, 0.5]])
    torch.testing.assert_close(sign_agreement(o, vectors), torch.tensor([0.8, 0.6, 1.0]))
