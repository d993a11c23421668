"""The fast path changes speed, not results: token ids made once give the batches tokenising
every batch gave; length buckets hold every row once, in batches of similar length; SDPA with
left padding gives eager's logits; gradient checkpointing gives the same gradients; and the
training step never waits on the device."""
import random
import sys
from pathlib import Path

import pytest
import torch
from torchdata.stateful_dataloader import StatefulDataLoader

from w2s.config.attack import PoisonConfig
from w2s.data.datamodule import W2SDataModule
from w2s.data.sampling import EpochPermutation, LengthBuckets, ProcessBatches

_rng = random.Random(0)
LENGTHS = [_rng.randint(3, 60) for _ in range(203)]  # SST-2-like token counts


def batches(order, batch_size=16, rank=0, world=1):
    return list(ProcessBatches(order, batch_size, rank, world))


def padded(batch_list):
    """Padded tokens of the batches: every row as long as its batch's longest."""
    return sum(len(b) * max(LENGTHS[i] for i in b) for b in batch_list)


@pytest.mark.parametrize("epoch", [0, 1])
def test_length_buckets_hold_every_row_once_with_less_padding(epoch):
    plain, bucketed = EpochPermutation(203, seed=4), LengthBuckets(EpochPermutation(203, seed=4), LENGTHS, 16, 4)
    plain.set_epoch(epoch)
    bucketed.set_epoch(epoch)
    got = batches(bucketed)
    assert sorted(sum(got, [])) == list(range(203)) and [len(b) for b in got] == [16] * 12 + [11]
    assert padded(got) < 0.8 * padded(batches(plain))
    chunks = [sorted(sum(got[i:i + 4], [])) for i in range(0, 12, 4)]              # chunks of 4 batches
    assert chunks == [sorted(list(plain)[i:i + 64]) for i in range(0, 192, 64)]   # ... of the epoch's order
    assert got == batches(bucketed)                                               # seeded
    bucketed.set_epoch(epoch + 1)
    assert batches(bucketed) != got


def test_one_batch_buckets_are_the_unbucketed_batches():
    plain, bucketed = EpochPermutation(203, seed=1), LengthBuckets(EpochPermutation(203, seed=1), LENGTHS, 16, 1)
    assert [sorted(b) for b in batches(bucketed)] == [sorted(b) for b in batches(plain)]


def test_bucketed_batches_split_among_processes_and_resume():
    order = LengthBuckets(EpochPermutation(203, seed=2), LENGTHS, 16, 3)
    whole, shares = batches(order), [batches(order, rank=r, world=2) for r in range(2)]
    assert [sorted(a + b) for a, b in zip(*shares)] == [sorted(b) for b in whole]

    def loader():
        return StatefulDataLoader(list(range(203)), batch_sampler=ProcessBatches(
            LengthBuckets(EpochPermutation(203, seed=2), LENGTHS, 16, 3), 16))

    first = loader()
    first.batch_sampler.sampler.set_epoch(1)
    it = iter(first)
    head = [next(it).tolist() for _ in range(5)]
    state, rest = first.state_dict(), [b.tolist() for b in it]
    second = loader()
    second.load_state_dict(state)
    second.batch_sampler.sampler.set_epoch(1)
    assert [b.tolist() for b in second] == rest and len(head + rest) == 13


def test_length_buckets_refuse_bad_settings():
    with pytest.raises(ValueError, match="chunk must be >= 1"):
        LengthBuckets(EpochPermutation(10, 0), [1] * 10, 4, 0)
    with pytest.raises(ValueError, match="one length per row"):
        LengthBuckets(EpochPermutation(10, 0), [1] * 9, 4, 2)


@pytest.mark.parametrize("attack", [dict(name="badnet", mode="dirty-label", count=None, poison_rate=0.2),
                                    dict(name="por", mode="dirty-label", count=None, poison_rate=0.2)])
def test_batches_of_token_ids_made_once_equal_tokenising_each_batch(task, models, attack):
    """Every id field (student left-padded, teacher right-padded, clean and triggered twins)."""
    data = W2SDataModule(task, tokenizer=models["llama"], teacher_tokenizer=models["bert"],
                         attack=PoisonConfig(**attack), poison_train=True, train_rows=(0, 60), max_eval_rows=40,
                         batch_size=8, max_length=9, bucket_batches=2)
    data.setup("fit")
    loaders = [data.train_dataloader(), data.teacher_dataloader(), *data.val_dataloader(), *data.test_dataloader()]
    fields = {"input_ids": ("text", data.tokenizer), "teacher_input_ids": ("text", data.teacher_tokenizer),
              "clean_input_ids": ("clean_text", data.tokenizer),
              "triggered_input_ids": ("triggered_text", data.tokenizer)}
    seen = set()
    for loader in loaders:
        by_index = {item["index"]: item for item in loader.dataset}
        for batch in loader:
            chosen = [by_index[i] for i in batch["index"].tolist()]
            for ids, (text, tokenizer) in fields.items():
                if text not in chosen[0] or ids not in batch:
                    continue
                seen.add(ids)
                prefix = ids.removesuffix("input_ids")
                direct = tokenizer([item[text] for item in chosen], padding="longest", truncation=True,
                                   max_length=9, return_tensors="pt")
                assert torch.equal(batch[ids], direct["input_ids"])
                assert torch.equal(batch[f"{prefix}attention_mask"], direct["attention_mask"])
    assert seen == set(fields) - ({"triggered_input_ids"} if attack["name"] == "badnet" else set())
    assert data.tokenizer.padding_side == "left" and data.teacher_tokenizer.padding_side == "right"
    assert max(batch["input_ids"].shape[1] for batch in data.train_dataloader()) == 9  # truncated


def test_evaluation_rows_come_longest_first(task, models):
    data = W2SDataModule(task, tokenizer=models["llama"], max_eval_rows=50, batch_size=8)
    data.setup("fit")
    widths = [batch["input_ids"].shape[1] for batch in data.test_dataloader()[0]]
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def student_step(name: str, num_labels: int = 4, **spec):
    """Logits, the last hidden state at real tokens, and the LoRA and head gradients of one
    W2S-like step of a fresh LoRA student on a left-padded batch of three lengths (no dropout)."""
    from students import LoraSpec, StudentSpec, build_student
    from students.forward import forward_with_features

    torch.manual_seed(0)
    model, tokenizer = build_student(StudentSpec(name, **spec), num_labels, LoraSpec(r=4, dropout=0.0))
    for n, p in model.named_parameters():  # LoRA's B starts at 0: give every adapter an effect
        if "lora_B" in n:
            torch.nn.init.normal_(p, std=0.1)
    enc = tokenizer(["good movie", "the film was really quite superb and nice", "bad plot and it was dull"],
                    padding="longest", return_tensors="pt")
    assert tokenizer.padding_side == "left" and not enc["attention_mask"][:, 0].all()
    out = forward_with_features(model.train(), enc["input_ids"], enc["attention_mask"], decoder=True)
    loss = torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 1, 0])) + out.features.pow(2).mean()
    loss.backward()
    real = enc["attention_mask"].bool()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    return out.logits.detach(), out.hidden[real].detach(), grads


def test_sdpa_with_left_padding_gives_eager_logits_and_gradients(models):
    eager, sdpa = student_step(models["llama"]), student_step(models["llama"], attn_implementation="sdpa")
    for a, b in zip(eager[:2], sdpa[:2]):
        assert torch.isfinite(b).all() and torch.allclose(a, b, atol=1e-5)
    assert eager[2].keys() == sdpa[2].keys() and len(eager[2]) > 2
    for name in eager[2]:
        assert torch.isfinite(sdpa[2][name]).all() and torch.allclose(eager[2][name], sdpa[2][name], atol=1e-5), name
        assert eager[2][name].abs().sum() > 0, name


def test_gradient_checkpointing_gives_the_same_gradients(models):
    plain, checkpointed = student_step(models["llama"]), student_step(models["llama"], gradient_checkpointing=True)
    assert torch.equal(plain[0], checkpointed[0])
    for name in plain[2]:
        assert torch.allclose(plain[2][name], checkpointed[2][name], atol=1e-6), name


def test_gradient_checkpointing_recomputes_the_layers(models):
    """It is on: each decoder layer runs twice per step (forward, and again in backward)."""
    from students import LoraSpec, StudentSpec, build_student

    for flag, runs in ((False, 1), (True, 2)):
        model, tokenizer = build_student(StudentSpec(models["llama"], gradient_checkpointing=flag), 4, LoraSpec(r=4))
        calls = []
        inner = model.base_model.model.model.layers[0].self_attn  # inside the checkpointed forward
        inner.register_forward_pre_hook(lambda *args: calls.append(1))
        enc = tokenizer(["good movie", "bad plot"], padding="longest", return_tensors="pt")
        model.train()(**enc).logits.sum().backward()
        assert len(calls) == runs


HOST_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__")  # wait for the device on a GPU


class HostReads:
    """Counts, from the second step on (step 0 checks the loss), the calls that read a tensor
    on the host made by the project's own code (w2s/, students/, teachers/) within a training
    step: forward, loss, backward, optimizer step. (On a CPU nothing waits, so the calls
    themselves are counted.)"""

    def __init__(self, monkeypatch):
        import pytorch_lightning as pl

        self.calls, self.active, reads = [], False, self
        roots = tuple(str(Path(__file__).resolve().parents[1] / d) + "/" for d in ("w2s", "students", "teachers"))
        for name in HOST_READS:
            original = getattr(torch.Tensor, name)

            def counted(tensor, *args, _name=name, _original=original, **kwargs):
                caller = sys._getframe(1).f_code.co_filename
                if reads.active and caller.startswith(roots):
                    reads.calls.append(f"{_name} in {caller}:{sys._getframe(1).f_lineno}")
                return _original(tensor, *args, **kwargs)

            monkeypatch.setattr(torch.Tensor, name, counted)

        class Window(pl.Callback):
            def on_train_batch_start(self, trainer, module, batch, batch_idx):
                reads.active = batch_idx > 0

            def on_train_batch_end(self, trainer, module, *args):
                reads.active = False

        self.callback = Window()


@pytest.mark.parametrize("objective", [dict(ce=1, kd=1, fa=10, normalize_features=True),
                                       dict(ce=1, kd=1, fa=1, fa_pool="tokens", fa_target="fitted"),
                                       dict(ce=1, amp=0.1, attn=0.1)])
def test_the_training_step_never_reads_a_tensor_on_the_host(task, trained, monkeypatch, objective):
    from students import LoraSpec, StudentSpec
    from tests.helpers import make_trainer
    from w2s.lit import OptimConfig, UnlearnModule
    from w2s.losses import ObjectiveConfig

    reads = HostReads(monkeypatch)
    module = UnlearnModule(StudentSpec(trained["student"]), teacher=trained["teacher"], lora=LoraSpec(r=4),
                           objective=ObjectiveConfig(**objective), num_labels=4, optim=OptimConfig(lr=1e-3))
    data = W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=str(Path(trained["teacher"]) / "encoder"),
                         train_rows=(0, 96), max_eval_rows=16, batch_size=16, bucket_batches=2)
    make_trainer(1, callbacks=[reads.callback], limit_val_batches=1).fit(module, data)
    assert module.global_step == 6 and reads.calls == []


def test_the_progress_bar_reads_the_loss_only_every_few_steps_on_an_accelerator():
    from types import SimpleNamespace

    from w2s.lit.progress import StageProgressBar

    bar = StageProgressBar()
    for device, every in (("cpu", 1), ("cuda", StageProgressBar.DEVICE_REFRESH)):
        bar._trainer = SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))
        assert [n for n in range(1, 101) if bar._should_update(n, 1000)] == list(range(every, 101, every))
