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


def test_class_balanced_metrics_on_hand_worked_imbalanced_cases():
    from w2s.metrics import BalancedAccuracy, MacroF1, balanced_accuracy, confusion, macro_f1

    # 6 negatives all right; 2 positives, one right: CA 7/8 hides that positives are a coin toss
    preds, labels = T([0, 0, 0, 0, 0, 0, 0, 1]), T([0, 0, 0, 0, 0, 0, 1, 1])
    assert confusion(preds, labels, 2).tolist() == [[6, 0], [1, 1]]
    assert balanced_accuracy(preds, labels, 2).item() == pytest.approx((6 / 6 + 1 / 2) / 2)
    assert macro_f1(preds, labels, 2).item() == pytest.approx((12 / 13 + 2 / 3) / 2)
    # a collapsed model on 72% / 28% data: CA 0.72, balanced accuracy 0.5, macro-F1 (144/172 + 0) / 2
    collapsed, imbalanced = T([0] * 100), T([0] * 72 + [1] * 28)
    assert clean_accuracy(collapsed, imbalanced).item() == pytest.approx(0.72)
    assert balanced_accuracy(collapsed, imbalanced, 2).item() == pytest.approx(0.5)
    assert macro_f1(collapsed, imbalanced, 2).item() == pytest.approx(144 / 172 / 2)
    # a class neither true nor predicted is left out of both averages (sklearn's convention)
    assert balanced_accuracy(T([0, 1]), T([0, 1]), 4).item() == 1.0 == macro_f1(T([0, 1]), T([0, 1]), 4).item()
    # the DDP-safe modules sum confusion matrices over batches
    ba, f1 = BalancedAccuracy(2), MacroF1(2)
    for chunk in (slice(0, 3), slice(3, 8)):
        ba.update(preds[chunk], labels[chunk])
        f1.update(preds[chunk], labels[chunk])
    assert ba.compute().item() == pytest.approx(0.75) and f1.compute().item() == pytest.approx((12 / 13 + 2 / 3) / 2)


def test_balanced_class_weights_and_the_weighted_loss():
    import torch.nn.functional as F

    from w2s.losses.class_weights import class_weights, weighted_cross_entropy

    weights = class_weights(T([0, 0, 0, 1]), 2)
    assert weights.tolist() == pytest.approx([4 / (2 * 3), 4 / (2 * 1)])   # N / (C * n_c)
    assert class_weights(T([0, 0]), 3).tolist() == pytest.approx([1 / 3, 0.0, 0.0])  # absent classes get 0
    with pytest.raises(ValueError, match="num_classes"):
        class_weights(T([0, 5]), 2)
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(6, 3, generator=g), T([0, 0, 0, 0, 1, 2])
    w = class_weights(labels, 3)
    expected = F.cross_entropy(logits, labels, weight=w)
    assert weighted_cross_entropy(logits, labels, w).item() == pytest.approx(expected.item(), rel=1e-6)
    nll = -F.log_softmax(logits, -1)[torch.arange(6), labels]                # the formula in the docstring
    assert expected.item() == pytest.approx(((w[labels] * nll).sum() / w[labels].sum()).item(), rel=1e-6)
    assert weighted_cross_entropy(logits, labels).item() == pytest.approx(F.cross_entropy(logits, labels).item())
    # balanced weights equalise the classes: each class's rows carry the same total weight
    per_class = torch.zeros(3).index_add_(0, labels, w[labels])
    assert per_class.tolist() == pytest.approx([2.0, 2.0, 2.0])


def test_unnamed_rows_stay_distinct_when_processes_are_gathered(monkeypatch):
    """Two processes give their versions without row ids; gathering their states (what
    torchmetrics' sync does: cat) must count 4 rows, not 2 rows whose ids collided."""
    from w2s.metrics import AttackSuccessRate
    from w2s.metrics import modules

    shares = []
    for rank, hits in ((0, [0, 1]), (1, [1, 1])):
        monkeypatch.setattr(modules, "process_rank", lambda rank=rank: (rank, 2))
        metric = AttackSuccessRate(target_label=0)
        metric.update(torch.tensor([1 - h for h in hits]))       # predicted 0 (the target) = a hit
        shares.append(metric)
    gathered = AttackSuccessRate(target_label=0)
    gathered.rows = [torch.cat([r for m in shares for r in m.rows])]
    gathered.hits = [torch.cat([h for m in shares for h in m.hits])]
    assert gathered.compute().item() == pytest.approx(3 / 4)


def test_a_filters_macro_f1_counts_a_rejection_as_a_wrong_answer():
    from w2s.metrics import MacroF1

    labels, preds = torch.tensor([0, 0, 1, 1]), torch.tensor([0, 2, 1, 1])   # 2: rejected
    filtered = MacroF1(3, classes=2)
    filtered.update(preds, labels)
    assert filtered.compute().item() == pytest.approx((2 / 3 + 1) / 2)       # the task's two classes
    as_a_class = MacroF1(3)                                                  # rejected as a third class
    as_a_class.update(preds, labels)
    assert as_a_class.compute().item() == pytest.approx((2 / 3 + 1 + 0) / 3)
