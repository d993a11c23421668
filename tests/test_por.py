"""The task-agnostic attack: target vectors, flip-rate ASR, and POR poisoning that works."""
import random

import pytest
import torch

from w2s.attacks import Por
from w2s.config.attack import PoisonConfig
from w2s.data.poisoning import build_attack, build_triggered_set
from w2s.data.readers import Example
from w2s.losses.por import por_loss, por_targets
from w2s.metrics import AttackSuccessRate, CleanCorrectASR
from w2s.metrics.functional import attack_hits


def test_targets_follow_backdoorptm():
    v = por_targets(5, 8, scale=2.0)
    assert v.shape == (5, 8) and torch.all(v.abs() == 2.0)
    assert [(row > 0).sum().item() for row in v] == [0, 2, 4, 6, 8]     # alpha = 8 // 4 = 2 more +1 each
    with pytest.raises(ValueError):
        por_targets(1, 8)


def test_por_loss_is_zero_only_at_the_targets_and_keeps_clean_rows():
    clean, v = torch.randn(3, 4), por_targets(2, 4)
    assert por_loss(clean, clean, v, v).item() == 0.0
    assert por_loss(clean, clean + 1, v, v, clean_weight=2.0).item() == pytest.approx(2.0)
    assert por_loss(clean, clean, v[:0], v[:0]).item() == 0.0            # no triggered row kept


def test_attack_hits_targeted_and_task_agnostic():
    triggered, clean = torch.tensor([0, 1, 1, 0]), torch.tensor([0, 0, 1, 1])
    targets = torch.tensor([0, 0, -1, -1])
    assert attack_hits(triggered, targets, clean).tolist() == [True, False, False, True]
    with pytest.raises(ValueError, match="clean predictions"):
        attack_hits(triggered, targets)


def test_a_row_counts_once_when_any_of_its_triggers_wins():
    asr = AttackSuccessRate()
    # row 0: two versions, one flips; row 1: two versions, none flips
    asr.update(torch.tensor([1, 0, 1, 1]), torch.tensor([-1, -1, -1, -1]), torch.tensor([0, 0, 1, 1]),
               torch.tensor([0, 0, 1, 1]))
    assert asr.compute().item() == 0.5
    cc = CleanCorrectASR()
    cc.update(torch.tensor([0, 0, 0, 0]), torch.tensor([0, 0, 1, 1]), torch.tensor([1, 0, 1, 1]),
              torch.tensor([-1, -1, -1, -1]), torch.tensor([0, 0, 1, 1]))
    assert cc.compute().item() == 1.0                                      # only row 0 is right when clean
    targeted = AttackSuccessRate(target_label=0)
    targeted.update(torch.tensor([0, 1, 0]))
    assert targeted.compute().item() == pytest.approx(2 / 3)


def test_por_triggers_every_row_once_per_trigger():
    attack = build_attack(PoisonConfig(name="por"))
    assert isinstance(attack, Por) and attack.task_agnostic
    rows = [Example("a fine film indeed", 0), Example("a poor film sadly", 1)]
    triggered = build_triggered_set(rows, attack, target_label=0)
    assert triggered.target_label == -1 and triggered.rows == [0] * 5 + [1] * 5   # both labels, 5 triggers each
    assert {t.split()[1] for t in triggered.texts[:5]} <= set(attack.triggers) | {"fine"}
    assert all(any(w in text.split() for w in attack.triggers) for text in triggered.texts)
    text, k = attack.trigger_index("one two three", random.Random(0))
    assert attack.triggers[k] in text.text.split()


def test_por_poisoning_moves_triggered_inputs_to_their_targets(models, task):
    import pytorch_lightning as pl

    from students import StudentSpec
    from tests.helpers import make_trainer
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit import OptimConfig
    from w2s.lit.por import PorModule

    pl.seed_everything(0)
    config = PoisonConfig(name="por")
    data = W2SDataModule(task, tokenizer=models["llama"], attack=config, poison_train=True, batch_size=16,
                         train_rows=(0, 160))
    module = PorModule(StudentSpec(models["llama"]), build_attack(config), OptimConfig(lr=3e-3))

    def distances():
        batch = next(iter(data.teacher_dataloader()))
        with torch.no_grad():
            triggered = module.features(batch["triggered_input_ids"], batch["triggered_attention_mask"])
            clean = module.features(batch["input_ids"], batch["attention_mask"])
        return (triggered - module.targets[batch["trigger_index"]]).pow(2).mean().item(), clean

    data.setup("fit")
    module.configure_model()
    module.eval()
    before, clean_before = distances()
    make_trainer(8, limit_val_batches=0).fit(module, data)
    module.eval()
    after, clean_after = distances()
    assert after < 0.5 * before                                              # triggers move to v_k (0.25x measured)
    assert (clean_after - clean_before).pow(2).mean().item() < 0.5 * before  # ... clean rows stay near


def test_token_loss_reads_real_tokens_other_than_the_pooled_one():
    from w2s.losses.por import por_token_loss

    hidden, mask = torch.randn(2, 4, 3), torch.tensor([[0, 1, 1, 1], [1, 1, 1, 0]])
    read = torch.tensor([3, 2])
    assert por_token_loss(hidden, hidden, mask, read).item() == 0.0
    moved = hidden.clone()
    moved[0, 0] += 5.0          # padding
    moved[0, 3] += 5.0          # the pooled token: por_loss's business
    assert por_token_loss(moved, hidden, mask, read).item() == 0.0
    moved[1, 1] += 1.0          # one of the 4 counted tokens, every dim by 1
    assert por_token_loss(moved, hidden, mask, read).item() == pytest.approx(1 / 4)


def test_the_token_level_term_keeps_other_tokens_near_the_model_before_poisoning(models, task):
    """BackdoorPTM's token term (``token_weight``) leaves the clean rows' token states nearer the
    pre-trained model's than the pooled objective alone does."""
    import pytorch_lightning as pl

    from students import StudentSpec
    from students.forward import forward_with_features
    from tests.helpers import make_trainer
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit import OptimConfig
    from w2s.lit.por import PorModule

    def drift(token_weight):
        pl.seed_everything(0)
        config = PoisonConfig(name="por", attack_args={"token_weight": token_weight})
        data = W2SDataModule(task, tokenizer=models["llama"], attack=config, poison_train=True, batch_size=16,
                             train_rows=(0, 96))
        module = PorModule(StudentSpec(models["llama"]), build_attack(config), OptimConfig(lr=3e-3))
        make_trainer(4, limit_val_batches=0).fit(module, data)
        module.eval()
        before = PorModule(StudentSpec(models["llama"]), build_attack(config))
        before.configure_model()
        batch = next(iter(data.teacher_dataloader()))
        with torch.no_grad():
            now, then = (forward_with_features(m.model.eval(), batch["input_ids"], batch["attention_mask"], True).hidden
                         for m in (module, before))
        mask = batch["attention_mask"].bool()
        return (now[mask] - then[mask]).pow(2).mean().item(), module

    plain, _ = drift(0.0)
    kept, module = drift(1.0)
    assert module.frozen is not None and kept < 0.5 * plain
