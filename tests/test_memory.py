"""Bounded resources: nothing is kept per training step, so the tensors alive and the resident
memory of a fit do not grow with the number of steps."""
import gc

import pytorch_lightning as pl
import torch

from students import LoraSpec, StudentSpec
from tests.helpers import make_trainer
from tests.helpers import unlearn_data
from w2s.lit import OptimConfig, RestoreBest, UnlearnModule
from w2s.losses import ObjectiveConfig


def live_tensors() -> tuple[int, int]:
    """How many tensors are alive, and their elements."""
    gc.collect()
    tensors = [o for o in gc.get_objects() if isinstance(o, torch.Tensor)]
    return len(tensors), sum(t.numel() for t in tensors)


class Census(pl.Callback):
    """The live tensors after chosen optimizer steps."""

    def __init__(self, steps):
        self.steps, self.seen = set(steps), {}

    def on_train_batch_end(self, trainer, *args):
        if trainer.global_step in self.steps:
            self.seen[trainer.global_step] = live_tensors()


def test_a_fit_keeps_nothing_per_step(task, trained):
    """W2S with every term logged, validation each epoch and best-epoch restoring: 4 epochs of
    25 steps; the census after epoch 1 and after epoch 4 (same point of the epoch) must match."""
    module = UnlearnModule(StudentSpec(trained["student"]), teacher=trained["teacher"], lora=LoraSpec(r=4),
                           objective=ObjectiveConfig(ce=1, kd=1, fa=1, amp=0.1), num_labels=4,
                           optim=OptimConfig(lr=1e-3))
    census = Census([30, 95])
    data = unlearn_data(task, trained, train_rows=(0, 400))
    make_trainer(4, callbacks=[census, RestoreBest()], limit_val_batches=2).fit(module, data)
    (count_early, elements_early), (count_late, elements_late) = census.seen[30], census.seen[95]
    assert count_late <= count_early and elements_late <= elements_early, census.seen
