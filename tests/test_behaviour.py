"""Behaviour: the teacher terms, not the shared machinery, are what defeat the trigger.

The setting is the poisoned-fine-tuning threat model (docs/protocol.md): a clean student
is LoRA-fine-tuned on data of which 15% carries the BadNet trigger ``mn`` relabelled to the
target. Clean LoRA learns the backdoor; the same module, data, seed and steps with the clean
teacher's KD and feature-alignment terms does not. The test fails if those terms are
switched off (they are the only difference between the two runs).
"""
import pytorch_lightning as pl

from students import LoraSpec, StudentSpec
from tests.helpers import BACKDOOR, make_trainer
from w2s.config.attack import PoisonConfig
from w2s.data.datamodule import W2SDataModule
from w2s.lit import OptimConfig, UnlearnModule
from w2s.losses import ObjectiveConfig


def defend(task, trained, objective):
    pl.seed_everything(0)
    data = W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=trained["teacher"] + "/encoder",
                         attack=PoisonConfig(**BACKDOOR), poison_train=True, batch_size=16)
    module = UnlearnModule(StudentSpec(trained["student"]), teacher=trained["teacher"],
                           lora=LoraSpec(r=32, target_modules="all-linear"), objective=objective, num_labels=4,
                           optim=OptimConfig(lr=2e-3))
    make_trainer(8).fit(module, data)
    clean, triggered = make_trainer().test(module, data, verbose=False)
    return clean["test/ca"], triggered["test/asr"]


def test_teacher_terms_defeat_the_trigger_that_clean_lora_learns(task, trained):
    lora_ca, lora_asr = defend(task, trained, ObjectiveConfig(ce=1, kd=0, fa=0))
    w2s_ca, w2s_asr = defend(task, trained, ObjectiveConfig(ce=1, kd=5, fa=10, normalize_features=True))
    print(f"clean LoRA CA {lora_ca:.3f} ASR {lora_asr:.3f}; W2S CA {w2s_ca:.3f} ASR {w2s_asr:.3f}")
    assert lora_asr > 0.6                 # the attack is real under the baseline
    assert w2s_asr < lora_asr - 0.4       # the teacher terms remove most of it
    assert w2s_ca > 0.85                  # without giving up clean accuracy
