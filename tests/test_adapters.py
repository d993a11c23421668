"""Adapter scanning: an adapter's updates exactly as the model gets them, the spectral
baselines' statistics, and a detector that learns a planted backdoor signature (and, with
shuffled labels, learns nothing)."""
import json

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from w2s.adapters.detector import AdapterDetector, collate, fit_detector, stratified_split
from w2s.adapters.spectral import (head_statistics, logistic_regression, norm_profile, spectral_features,
                                  spectral_statistics)
from w2s.adapters.updates import adapter_updates, branches, preprocessing


def _adapter(base, folder, seed=0, **lora):
    """A LoRA adapter on ``base`` (query/value) with random non-zero B, saved to ``folder``; and the peft model."""
    from peft import LoraConfig, TaskType, get_peft_model
    from transformers import AutoModelForSequenceClassification

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=2)
    config = LoraConfig(task_type=TaskType.SEQ_CLS, target_modules=["query", "value"], **lora)
    peft_model = get_peft_model(model, config)
    for name, p in peft_model.named_parameters():
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=0.1)
    peft_model.save_pretrained(folder)
    return peft_model


@pytest.mark.parametrize("lora", [dict(r=4, lora_alpha=8), dict(r=4, lora_alpha=8, use_rslora=True),
                                  dict(r=4, lora_alpha=8, rank_pattern={"value": 2}, alpha_pattern={"value": 3})],
                         ids=["lora", "rslora", "patterns"])
def test_updates_are_what_the_model_gets(models, tmp_path, lora):
    peft_model = _adapter(models["bert"], tmp_path / "adapter", **lora)
    updates = adapter_updates(tmp_path / "adapter")
    assert list(updates) == ["query", "value"]                           # the head is left out
    for name, stacked in updates.items():
        modules = [m for n, m in peft_model.named_modules() if n.endswith(f".{name}") and hasattr(m, "lora_A")]
        assert stacked.shape == (len(modules), 24, 24)                   # (layers, d_out, d_in), rank-free
        for layer, module in enumerate(modules):                         # peft's own Delta W, scaling included
            torch.testing.assert_close(stacked[layer], module.get_delta_weight("default").float())
    (branch,) = branches(updates)                                        # one shape: one branch, query first
    assert branch.shape == (4, 24, 24) and torch.equal(branch[2], updates["value"][0])


def test_adapters_that_cannot_be_read_are_refused(models, tmp_path):
    _adapter(models["bert"], tmp_path / "a", r=4)
    with pytest.raises(ValueError, match="not a peft adapter folder"):
        adapter_updates(tmp_path)
    (tmp_path / "a" / "adapter_model.safetensors").rename(tmp_path / "a" / "weights")
    with pytest.raises(ValueError, match="no adapter_model.safetensors"):
        adapter_updates(tmp_path / "a")
    (tmp_path / "a" / "weights").rename(tmp_path / "a" / "adapter_model.safetensors")
    mine = preprocessing(adapter_updates(tmp_path / "a"), models["bert"])
    other = preprocessing({"query": torch.zeros(2, 32, 32)}, "another")
    with pytest.raises(ValueError, match="scans adapters of one base model"):
        mine.check(other, "x")
    assert json.loads(json.dumps(mine.to_json()))["scaling"].startswith("alpha / r")


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 1000), scale=st.floats(0.1, 10.0))
def test_spectral_statistics(seed, scale):
    g = torch.Generator().manual_seed(seed)
    u, v = torch.randn(12, 1, generator=g, dtype=torch.float64), torch.randn(1, 10, generator=g, dtype=torch.float64)
    sigma_1, frobenius, share, entropy, _ = spectral_statistics(u @ v).tolist()
    assert share == pytest.approx(1.0) and entropy == pytest.approx(0.0, abs=1e-6)   # rank one
    assert sigma_1 == pytest.approx(frobenius)
    w = torch.randn(12, 10, generator=g, dtype=torch.float64)
    plain, scaled = spectral_statistics(w), spectral_statistics(scale * w)
    torch.testing.assert_close(scaled[:2], scale * plain[:2])            # norms scale ...
    torch.testing.assert_close(scaled[2:], plain[2:])                    # ... shares, entropy, kurtosis do not
    assert spectral_statistics(torch.eye(5))[3].item() == pytest.approx(torch.log(torch.tensor(5.0)).item())


def planted_population(n=48, seed=0, d=16, layers=3):
    """Random rank-4 updates; backdoored ones (odd rows) carry one fixed rank-1 direction in the
    last layer's value, the whole update rescaled to the benign one's norm (no norm gives it away)."""
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(d, 1, generator=g) @ torch.randn(1, d, generator=g)
    population = []
    for i in range(n):
        updates = {p: torch.randn(layers, d, 4, generator=g) @ torch.randn(layers, 4, d, generator=g) * 0.1
                   for p in ("query", "value")}
        if i % 2:
            value = updates["value"][-1]
            planted = value + direction * value.norm() / direction.norm()
            updates["value"][-1] = planted * value.norm() / planted.norm()
        population.append((updates, i % 2))
    return population


def test_the_detector_learns_a_planted_signature_and_nothing_from_shuffled_labels():
    population = planted_population(96)
    shape = preprocessing(population[0][0], "synthetic").to_json()
    items = [(branches(u), y) for u, y in population]
    train, test = items[:64], items[64:]
    fit, val = stratified_split([y for _, y in train], 0.15, seed=0)

    def held_out_auroc(train_items):
        from torchmetrics.functional.classification import binary_auroc

        detector = fit_detector([train_items[i] for i in fit], [train_items[i] for i in val], shape, epochs=15,
                                kernel=4, stride=4, lr=1e-3)
        batch = collate(test)
        return binary_auroc(detector.score(batch["inputs"]), batch["labels"]).item()

    assert held_out_auroc(train) >= 0.9
    flipped = torch.randperm(64, generator=torch.Generator().manual_seed(1)).remainder(2).tolist()
    shuffled = [(x, y) for (x, _), y in zip(train, flipped)]
    assert abs(held_out_auroc(shuffled) - 0.5) <= 0.25                  # the control sits near chance


def test_the_baselines_and_their_controls():
    population = planted_population(96, seed=3)
    labels = [y for _, y in population]
    norms = torch.stack([norm_profile(u)[1] for u, _ in population]).numpy()
    spectral = torch.stack([spectral_features(u)[1] for u, _ in population]).numpy()
    assert spectral.shape == (96, 10) and norms.shape == (96, 6)

    def accuracy(features):
        return logistic_regression().fit(features[:64], labels[:64]).score(features[64:], labels[64:])

    assert accuracy(norms) <= 0.75                                       # norm-matched: the profile sees nothing
    assert accuracy(spectral) >= 0.8                                     # the planted direction raises sigma_1's share


def test_detector_shapes_follow_the_preprocessing():
    prep = {"projections": {"q_proj": [2, 16, 16], "v_proj": [2, 8, 16]}}    # grouped-query: v smaller
    detector = AdapterDetector(prep, kernel=4, stride=4)
    inputs = [torch.zeros(3, 2, 16, 16), torch.zeros(3, 2, 8, 16)]
    assert detector(inputs).shape == (3, 2) and len(detector.net.branches) == 2


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 1000), labels=st.integers(2, 6), shift=st.floats(0.5, 5.0))
def test_head_statistics_see_a_tilted_head_whatever_the_number_of_labels(seed, labels, shift):
    g = torch.Generator().manual_seed(seed)
    weight, bias = torch.randn(labels, 16, generator=g), torch.zeros(labels)
    names, plain = head_statistics(weight, bias)
    assert len(names) == 4 and plain[0] == 0 and plain[1] == 0            # an even bias: no gap, no spread
    tilted = bias.clone()
    tilted[seed % labels] = shift                                         # the target label pulled up
    _, values = head_statistics(weight, tilted)
    assert values[0] == pytest.approx(shift * (1 - 1 / labels), rel=1e-5) and values[1] > 0
    _, scaled = head_statistics(3 * weight, None)
    torch.testing.assert_close(scaled[2:], plain[2:])                     # row-norm ratios are scale-free
