"""The Lightning stages on tiny models: what trains, what stays frozen, what gets saved."""
import json

import pytest
import pytorch_lightning as pl
import torch
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification

from students import LoraSpec, StudentSpec
from tests.helpers import BACKDOOR, make_trainer, unlearn_data
from w2s.config.attack import PoisonConfig
from w2s.data.datamodule import W2SDataModule
from w2s.lit import OptimConfig, PoisonModule, RestoreBest, UnlearnModule
from w2s.losses import ObjectiveConfig


def test_teacher_learns_the_clean_task(trained):
    metrics = trained["teacher_test"]
    assert metrics[0]["test/ca"] > 0.9 and metrics[1]["test/asr"] < 0.2
    saved = json.loads(open(trained["teacher"] + "/teacher.json").read())
    assert saved["student_hidden_size"] == 32 and saved["num_labels"] == 4


def test_datamodule_batches_and_eval_sets(task, trained):
    data = unlearn_data(task, trained, train_rows=(0, 100), max_eval_rows=40)
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    assert set(batch) == {"index", "labels", "input_ids", "attention_mask", "teacher_input_ids",
                          "teacher_attention_mask"}
    assert (batch["attention_mask"][:, -1] == 1).all()           # student: left padding
    assert (batch["teacher_attention_mask"][:, 0] == 1).all()    # teacher: right padding, CLS first
    clean, triggered = data.eval_sets["test"]
    assert len(data.train) == 100 and len(clean) == 40
    assert len(triggered) == sum(row["label"] != 0 for row in clean)
    assert all("mn" in row["text"].split() for row in triggered)
    assert all(row["text"].replace(" mn", "") == row["clean_text"] and row["clean_label"] != 0 for row in triggered)
    batch = next(iter(data.test_dataloader()[1]))
    assert {"clean_input_ids", "clean_attention_mask", "clean_labels"} <= set(batch)
    with pytest.raises(ValueError, match=r"train_rows \[0, 500\] run past the 400 train rows"):
        unlearn_data(task, trained, train_rows=(0, 500)).setup("fit")


def test_unlearning_trains_only_lora_and_head_with_a_frozen_cached_teacher(task, trained):
    module = UnlearnModule(StudentSpec(trained["student"]), teacher=trained["teacher"], lora=LoraSpec(r=4),
                           objective=ObjectiveConfig(ce=1, kd=1, fa=1), num_labels=4, optim=OptimConfig(lr=1e-2))
    module.configure_model()
    before = {n: p.detach().clone() for n, p in module.named_parameters()}
    teacher_before = {n: p.detach().clone() for n, p in module.teacher.named_parameters()}
    calls = []
    module.teacher.register_forward_hook(lambda *args: calls.append(1))
    trainer = make_trainer(2, limit_val_batches=1)
    trainer.fit(module, unlearn_data(task, trained, train_rows=(0, 64)))
    assert len(calls) == 4                                   # 64 rows once, at eval batch size 16: not per step
    assert module.teacher_logits.shape == (64, 4) and module.teacher_features.shape == (64, 32)
    assert not module.teacher.training and not any(p.requires_grad for p in module.teacher.parameters())
    changed = {n for n, p in module.named_parameters() if not torch.equal(p, before[n])}
    assert changed and all("lora_" in n or ".score." in n for n in changed)
    assert any("lora_" in n for n in changed) and any(".score." in n for n in changed)
    assert all(torch.equal(p, teacher_before[n]) for n, p in module.teacher.named_parameters())
    assert not any(n.startswith("teacher") for n, _ in module.named_parameters())  # not trained or checkpointed
    logged = trainer.callback_metrics
    assert {"train/loss", "train/ce", "train/kd", "train/fa", "val/ca", "val/asr", "val/asr_clean_correct",
            "val/majority_share"} <= set(logged)


def test_clean_lora_is_the_same_module_without_a_teacher(task, trained, tmp_path):
    module = UnlearnModule(StudentSpec(trained["student"]), lora=LoraSpec(r=4), objective=ObjectiveConfig(),
                           num_labels=4)
    trainer = make_trainer(1, limit_val_batches=1)
    trainer.fit(module, unlearn_data(task, trained, train_rows=(0, 32)))
    assert module.teacher is None and "train/kd" not in trainer.callback_metrics
    module.save_artifact(tmp_path / "defended", merged=True)
    adapter = tmp_path / "defended" / "adapter"
    assert (adapter / "adapter_model.safetensors").is_file() and (adapter / "tokenizer.json").is_file()
    merged = AutoModelForSequenceClassification.from_pretrained(tmp_path / "defended" / "merged", use_safetensors=True)
    assert not any("lora" in k for k in merged.state_dict())
    with pytest.raises(ValueError, match="no teacher folder"):
        UnlearnModule(objective=ObjectiveConfig(ce=1, kd=1, fa=0))


def test_teacher_must_match_the_student_width(trained, models, tmp_path):
    from tests.tiny import make_llama

    wide = str(make_llama(tmp_path / "wide", hidden=48))
    w2s = ObjectiveConfig(kd=1.0, fa=1.0)  # the default objective, CE alone, loads no teacher
    with pytest.raises(ValueError, match="teacher projects to 32 dims but the student's hidden size is 48"):
        UnlearnModule(StudentSpec(wide), teacher=trained["teacher"], objective=w2s, num_labels=4).configure_model()
    module = UnlearnModule(StudentSpec(models["gpt2"]), teacher=trained["teacher"], objective=w2s, num_labels=4)
    module.configure_model()  # another architecture of the same width is fine
    assert module.teacher is not None


@pytest.mark.parametrize("lora", [None, LoraSpec(r=4, target_modules="all-linear")])
def test_poisoning_implants_the_trigger_and_saves_a_plain_hf_folder(task, trained, tmp_path, lora):
    data = W2SDataModule(task, tokenizer=trained["student"], attack=PoisonConfig(**BACKDOOR), poison_train=True,
                         batch_size=16)
    module = PoisonModule(StudentSpec(trained["student"]), num_labels=4, lora=lora,
                          optim=OptimConfig(lr=3e-3 if lora is None else 1e-2))
    trainer = make_trainer(3 if lora is None else 6)
    trainer.fit(module, data)
    assert trainer.callback_metrics["val/asr"] > 0.6            # the backdoor is real
    module.save_artifact(tmp_path / "poisoned")
    files = {p.name for p in (tmp_path / "poisoned").iterdir()}
    assert "model.safetensors" in files and "adapter_config.json" not in files
    state = load_file(tmp_path / "poisoned" / "model.safetensors")
    assert not any("lora" in k for k in state)
    reloaded = PoisonModule(StudentSpec(str(tmp_path / "poisoned")), num_labels=4)
    assert make_trainer().test(reloaded, data, verbose=False)[1]["test/asr"] > 0.6


def test_restore_best_keeps_the_best_clean_dev_epoch():
    from types import SimpleNamespace

    module = torch.nn.Linear(1, 1, bias=False)
    frozen = torch.nn.Parameter(torch.zeros(1), requires_grad=False)
    module.register_parameter("frozen", frozen)
    best = RestoreBest()
    for epoch, (weight, ca) in enumerate([(1.0, 0.5), (2.0, 0.9), (3.0, 0.7)]):
        module.weight.data.fill_(weight)
        trainer = SimpleNamespace(sanity_checking=False, current_epoch=epoch, callback_metrics={"val/ca": torch.tensor(ca)})
        best.on_validation_end(trainer, module)
    best.on_fit_end(trainer, module)
    assert module.weight.item() == 2.0 and (best.best_score, best.best_epoch) == (pytest.approx(0.9), 1)
    assert set(best._state) == {"weight"}  # frozen parameters are not copied


@pytest.mark.parametrize("lora", [None, LoraSpec(r=4)])
def test_full_fine_tuning_keeps_fp32_master_weights(models, task, lora):
    """A bf16 student: full fine-tuning updates fp32 weights under bf16 autocast (an lr-2e-5 step
    would round away in bf16 weights); LoRA poisoning keeps the bf16 base frozen, its adapters fp32."""
    seen = []

    class Optimizer(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            ids = {id(p) for group in trainer.optimizers[0].param_groups for p in group["params"]}
            seen.extend(p.dtype for n, p in pl_module.named_parameters()  # peft keeps a LoRA run's head in bf16
                        if id(p) in ids and (lora is None or "score" not in n))

    module = PoisonModule(StudentSpec(models["llama"], dtype="bfloat16"), num_labels=4, lora=lora)
    data = W2SDataModule(task, tokenizer=models["llama"], attack=PoisonConfig(**BACKDOOR), batch_size=16,
                         train_rows=(0, 32))
    make_trainer(1, callbacks=[Optimizer()], precision="bf16-mixed", limit_val_batches=0).fit(module, data)
    assert set(seen) == {torch.float32}
    frozen = {p.dtype for p in module.model.parameters() if not p.requires_grad}
    assert frozen == (set() if lora is None else {torch.bfloat16})


def test_full_fine_tuning_stages_default_to_mixed_precision_in_the_students_dtype():
    from w2s.pipeline.config import PipelineConfig, TrainerOptions
    from w2s.pipeline.stages import master_weights_precision

    assert master_weights_precision(PipelineConfig(student=StudentSpec(dtype="bfloat16"))) == "bf16-mixed"
    assert master_weights_precision(PipelineConfig(student=StudentSpec(dtype="float32"))) is None
    chosen = PipelineConfig(student=StudentSpec(dtype="bfloat16"), trainer=TrainerOptions(precision="32-true"))
    assert master_weights_precision(chosen) == "32-true"


@pytest.mark.gpu
def test_on_a_gpu_full_fine_tuning_keeps_its_small_updates(models, task):
    """On a GPU the student loads in bf16 (``dtype: auto``): the poisoning stage trains fp32 master
    weights under bf16 autocast, so an lr-2e-5 step changes most weights instead of rounding away."""
    from w2s.pipeline.config import PipelineConfig
    from w2s.pipeline.stages import master_weights_precision

    precision = master_weights_precision(PipelineConfig(student=StudentSpec(models["llama"])))
    assert precision == "bf16-mixed"
    module = PoisonModule(StudentSpec(models["llama"]), num_labels=4, optim=OptimConfig(lr=2e-5, warmup_ratio=0.0))
    data = W2SDataModule(task, tokenizer=models["llama"], attack=PoisonConfig(**BACKDOOR), batch_size=16,
                         train_rows=(0, 16))
    module.configure_model()
    before = {n: p.detach().clone() for n, p in module.named_parameters() if p.dim() == 2}
    pl.Trainer(max_steps=1, accelerator="gpu", devices=1, precision=precision, logger=False, limit_val_batches=0,
               enable_checkpointing=False, enable_progress_bar=False).fit(module, data)
    after = dict(module.named_parameters())
    assert all(after[n].dtype == torch.float32 for n in before)
    changed = sum((after[n].detach().cpu() != w.cpu()).float().mean().item() for n, w in before.items()) / len(before)
    assert changed > 0.5
