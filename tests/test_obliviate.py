"""Obliviate's regularisers: pure-function properties and how the unlearning module uses them."""
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from w2s.losses import LossInputs, ObjectiveConfig, amplification_loss, attention_loss, compose


@given(st.lists(st.tuples(st.integers(1, 6), st.integers(1, 6)), min_size=1, max_size=4), st.integers(0, 99))
def test_a_gradient_step_on_l_amp_grows_every_adapter(shapes, seed):
    g = torch.Generator().manual_seed(seed)
    weights = [torch.randn(*s, generator=g).requires_grad_() for s in shapes]
    before = [w.norm().item() for w in weights]
    loss = amplification_loss(weights)
    assert loss.item() == pytest.approx(-sum(before), rel=1e-5)   # minus the sum of (unsquared) norms
    torch.optim.SGD(weights, lr=0.1).zero_grad()
    loss.backward()
    with torch.no_grad():
        for w in weights:
            w -= 0.1 * w.grad
    assert all(w.norm().item() > b for w, b in zip(weights, before))


def test_l_amp_needs_adapters():
    with pytest.raises(ValueError, match="no trainable adapter"):
        amplification_loss([])


def _attention(rows: torch.Tensor, length: int, layers: int = 2, heads: int = 3) -> list[torch.Tensor]:
    """Attention tensors ``(B, H, L, L)`` whose every query row is ``rows[b]``."""
    a = rows[:, None, None, :].expand(rows.shape[0], heads, length, length)
    return [a.clone() for _ in range(layers)]


@given(st.integers(2, 8), st.integers(0, 99))
def test_l_attn_is_smallest_for_a_uniform_row(length, seed):
    mask = torch.ones(1, length)
    uniform = attention_loss(_attention(torch.full((1, length), 1 / length), length), mask, torch.tensor([0]))
    assert uniform.item() == pytest.approx(length ** -0.5)
    other = torch.rand(1, length, generator=torch.Generator().manual_seed(seed)).softmax(-1)
    assert attention_loss(_attention(other, length), mask, torch.tensor([0])).item() >= uniform.item() - 1e-6
    one_hot = torch.eye(length)[:1]
    assert attention_loss(_attention(one_hot, length), mask, torch.tensor([0])).item() == pytest.approx(1.0)


def test_l_attn_ignores_padded_keys_and_reads_the_given_row():
    mask = torch.tensor([[0.0, 0.0, 1.0, 1.0]])                       # left padding
    row = torch.tensor([[0.0, 0.0, 0.5, 0.5]])
    base = attention_loss(_attention(row, 4), mask, torch.tensor([3]))
    leaked = torch.tensor([[0.9, 0.9, 0.5, 0.5]])                    # mass on padded keys changes nothing
    assert attention_loss(_attention(leaked, 4), mask, torch.tensor([3])).item() == pytest.approx(base.item())
    attn = _attention(row, 4)
    attn[0][0, :, 0, :] = torch.tensor([0.0, 0.0, 1.0, 0.0])          # only query row 3 is read
    assert attention_loss(attn, mask, torch.tensor([3])).item() == pytest.approx(base.item())
    with pytest.raises(ValueError, match="eager"):
        attention_loss([None], mask, torch.tensor([3]))


def test_zero_weights_are_no_ops():
    g = torch.Generator().manual_seed(0)
    x = LossInputs(student_logits=torch.randn(2, 2, generator=g), labels=torch.tensor([0, 1]))
    plain = compose(ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0), x)
    silent = compose(ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0, amp=0.0, attn=0.0), x)   # no adapters, no attentions
    assert set(silent[1]) == {"ce"} and silent[0].item() == plain[0].item()
    assert not ObjectiveConfig(attn=0.0).needs_attentions and ObjectiveConfig(attn=0.1).needs_attentions


def test_unlearning_requests_attentions_only_when_attn_is_weighted(models, monkeypatch):
    from students import LoraSpec, StudentSpec
    from students import forward
    from w2s.lit import UnlearnModule
    from w2s.lit import unlearn

    seen = []
    original = forward.forward_with_features
    monkeypatch.setattr(unlearn, "forward_with_features",
                        lambda *a, **k: seen.append(k.get("attentions")) or original(*a, **k))
    batch = {"input_ids": torch.tensor([[0, 5, 6], [4, 5, 6]]), "attention_mask": torch.tensor([[0, 1, 1], [1, 1, 1]]),
             "labels": torch.tensor([0, 1]), "index": torch.tensor([0, 1])}
    for attn, expect in ((0.0, False), (0.5, True)):
        module = UnlearnModule(StudentSpec(models["llama"]), lora=LoraSpec(r=2), num_labels=2,
                               objective=ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0, amp=0.1, attn=attn))
        module.configure_model()
        module.log = lambda *a, **k: None
        loss = module.training_step(batch, 0)
        assert seen[-1] is expect and torch.isfinite(loss)
        assert len(module.adapter_weights()) == 2 * 2 * 2        # A and B of q and v in 2 layers
    with pytest.raises(ValueError, match="attn_implementation"):
        UnlearnModule(StudentSpec(models["llama"], attn_implementation="sdpa"), lora=LoraSpec(r=2), num_labels=2,
                      objective=ObjectiveConfig(ce=1.0, kd=0.0, fa=0.0, attn=0.5)).configure_model()
