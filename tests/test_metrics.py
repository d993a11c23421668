"""CA and ASR on hand-worked cases; the torchmetrics wrappers agree with the functions."""
import math

import pytest
import torch

from w2s.metrics import AttackSuccessRate, CleanAccuracy, attack_success_rate, clean_accuracy, clean_correct_asr

T = torch.tensor


def test_clean_accuracy_hand_worked():
    assert clean_accuracy(T([0, 1, 1, 0]), T([0, 1, 0, 0])).item() == 0.75
    assert clean_accuracy(T([2]), T([2])).item() == 1.0


def test_asr_hand_worked():
    # 5 triggered rows whose true label is not 0; 3 are predicted as the target 0
    assert attack_success_rate(T([0, 0, 1, 0, 2]), target_label=0).item() == pytest.approx(0.6)
    assert attack_success_rate(T([1, 1]), target_label=0).item() == 0.0


def test_clean_correct_asr_hand_worked():
    clean_preds, labels = T([1, 1, 0, 1]), T([1, 1, 1, 1])   # row 2 wrong when clean
    triggered = T([0, 1, 0, 0])                              # rows 0, 2, 3 flipped to target 0
    # among clean-correct rows {0, 1, 3}: flipped {0, 3} -> 2/3
    assert clean_correct_asr(clean_preds, labels, triggered, 0).item() == pytest.approx(2 / 3)
    assert math.isnan(clean_correct_asr(T([0]), T([1]), T([0]), 0).item())


def test_shape_and_empty_validation():
    with pytest.raises(ValueError, match="one shape"):
        clean_accuracy(T([0, 1]), T([0]))
    with pytest.raises(ValueError, match="zero examples"):
        attack_success_rate(T([], dtype=torch.long), 0)


def test_metric_modules_accumulate_like_functions():
    preds = torch.randint(0, 3, (50,))
    labels = torch.randint(0, 3, (50,))
    ca, asr = CleanAccuracy(), AttackSuccessRate(target_label=1)
    for chunk in range(0, 50, 16):
        ca.update(preds[chunk:chunk + 16], labels[chunk:chunk + 16])
        asr.update(preds[chunk:chunk + 16])
    assert ca.compute().item() == pytest.approx(clean_accuracy(preds, labels).item())
    assert asr.compute().item() == pytest.approx(attack_success_rate(preds, 1).item())
    with pytest.warns(UserWarning):  # torchmetrics warns about compute() before update()
        assert math.isnan(CleanAccuracy().compute().item())


def test_majority_share_flags_collapse():
    from w2s.metrics import MajorityShare

    share = MajorityShare()
    share.update(T([1, 1, 1]))
    share.update(T([1, 0]))
    assert share.compute().item() == pytest.approx(0.8)
    constant = MajorityShare()
    constant.update(T([2, 2, 2, 2]))
    assert constant.compute().item() == 1.0


def test_clean_correct_asr_module_matches_the_function():
    from w2s.metrics import CleanCorrectASR

    clean_preds, labels, triggered = T([1, 1, 0, 1, 2, 2]), T([1, 1, 1, 1, 2, 0]), T([0, 1, 0, 0, 0, 0])
    metric = CleanCorrectASR(target_label=0)
    metric.update(clean_preds[:3], labels[:3], triggered[:3])
    metric.update(clean_preds[3:], labels[3:], triggered[3:])
    expected = clean_correct_asr(clean_preds, labels, triggered, 0)
    assert metric.compute().item() == pytest.approx(expected.item()) == pytest.approx(3 / 4)
