"""Callbacks every stage trains with: keeping the best clean-dev epoch, and the random state a
resumed fit needs to continue exactly as an uninterrupted one. Both keep their state in
Lightning's checkpoints (``state_dict``/``load_state_dict``), so a stage killed mid-epoch and
resumed from its last checkpoint ends with the same weights."""
from __future__ import annotations

import random

import pytorch_lightning as pl
import torch
from torch import Tensor

from w2s.distributed import laid_out_as, whole


class RestoreBest(pl.Callback):
    """Remember the trainable weights of the validation epoch with the best ``monitor``
    (clean dev accuracy by default) and load them back when fitting ends."""

    def __init__(self, monitor: str = "val/ca", mode: str = "max"):
        if mode not in ("max", "min"):
            raise ValueError(f"mode must be max or min, got {mode!r}")
        self.monitor, self.mode = monitor, mode
        self.best_score: float | None = None
        self.best_epoch: int | None = None
        self._state: dict[str, Tensor] = {}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        value = float(value)
        if self.best_score is None or (value > self.best_score if self.mode == "max" else value < self.best_score):
            self.best_score, self.best_epoch = value, trainer.current_epoch
            self._state = {n: whole(p.detach()).to("cpu", copy=True)
                           for n, p in pl_module.named_parameters() if p.requires_grad}

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        params = dict(pl_module.named_parameters())
        with torch.no_grad():
            for name, value in self._state.items():
                params[name].copy_(laid_out_as(value, params[name]))

    def state_dict(self) -> dict:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "weights": self._state}

    def load_state_dict(self, state_dict: dict) -> None:
        self.best_score, self.best_epoch = state_dict["best_score"], state_dict["best_epoch"]
        self._state = state_dict["weights"]


class RngState(pl.Callback):
    """Saves the global random generators (torch CPU and CUDA, Python's) with each checkpoint
    and, on resume, sets them back just before the first training batch, after everything a
    fit does at its start (building the model, caching the teacher) has drawn from them. Then
    dropout and every later draw continue as in the uninterrupted run."""

    def __init__(self):
        self._pending: dict | None = None

    def state_dict(self) -> dict:
        return {"torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
                "python": random.getstate()}

    def load_state_dict(self, state_dict: dict) -> None:
        self._pending = state_dict

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])
        random.setstate(state["python"])

