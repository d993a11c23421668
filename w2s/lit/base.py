"""What every stage shares: CA/ASR evaluation on the two evaluation loaders, (class-weighted)
cross-entropy, AdamW with a linear warm-up schedule, and resumable checkpoints of what
training changes."""
from __future__ import annotations

from typing import Optional

import pytorch_lightning as pl
import torch
from torch import Tensor, nn

from w2s.config.optim import OptimConfig
from w2s.data.datamodule import CLEAN
from w2s.distributed import fill_from_first, shard_model
from w2s.losses.class_weights import weighted_cross_entropy
from w2s.metrics import METRICS, EvalRows

EVAL_STAGES = ("val", "test", "dev")  # logged key prefixes of the evaluation passes (dev: triggered dev rows)


class ClassifierModule(pl.LightningModule):
    """Subclasses build ``model`` in ``build_model`` and implement ``logits(batch)``
    and ``training_step``. Logged keys: ``train/*``, and ``{val,test,dev}/NAME`` for every registered
    metric (``w2s.metrics.METRICS``: ``ca``; ``asr``, the triggered rows predicted as the target,
    task-agnostic rows: changed by some trigger; ``asr_clean_correct``, ASR among rows right when
    clean, inserted triggers only; ``balanced_accuracy`` and ``macro_f1``, class-balanced CA;
    ``majority_share``, the most frequent predicted class's share: collapse check).

    ``class_weights`` (one per class, e.g. from ``W2SDataModule.class_weights("balanced")``)
    weight the cross-entropy term.

    Checkpoints hold the trainable weights only (a frozen base is rebuilt from its source by
    ``configure_model``) and no hyperparameter objects, so they load with
    ``torch.load(weights_only=True)``."""

    strict_loading = False  # the frozen weights are not in the checkpoint

    def __init__(self, optim: OptimConfig, target_label: int, num_labels: int,
                 class_weights: Optional[list[float]] = None):
        super().__init__()
        if not 0 <= target_label < num_labels:
            raise ValueError(f"target_label {target_label} is not a class of this {num_labels}-class task")
        if class_weights is not None and len(class_weights) != num_labels:
            raise ValueError(f"class_weights has {len(class_weights)} entries for {num_labels} classes")
        self.optim = optim
        self.model: Optional[nn.Module] = None
        self._from_first: Optional[dict] = None  # FSDP: process 0's whole state, until it is sent
        self._finite: Optional[Tensor] = None  # all losses since the last check finite (on the device)
        self.target_label, self.num_labels = target_label, num_labels
        self.register_buffer("class_weights", None if class_weights is None else torch.tensor(class_weights),
                             persistent=False)
        self.test_stage = "test"  # "dev": a test pass over the triggered dev rows (``dev_asr``), logged as dev/*
        self.metrics = nn.ModuleDict({f"{stage}_{spec.name}": spec.build(num_labels) for stage in EVAL_STAGES
                                      for spec in METRICS.values() if spec.build is not None})

    def configure_model(self) -> None:
        """Build the model once (``build_model``); under ``trainer.strategy: fsdp`` (a device mesh)
        shard it over the processes. There only process 0 reads the student's weights (the
        others build it empty, so host memory holds one copy): its whole state is kept until
        ``on_fit_start`` sends each process its shards."""
        if self.model is None:
            self.build_model()
            if self.device_mesh is not None and self.trainer.world_size > 1:
                self._from_first = self.state_dict() if self.global_rank == 0 else {}
        if self.device_mesh is not None:
            shard_model(self, self.device_mesh["data_parallel"], self.trainer.strategy.root_device)

    def on_fit_start(self) -> None:
        """Subclasses call it first: the weights are in place from here on."""
        if self._from_first is not None:
            fill_from_first(self, self._from_first)
            self._from_first = None

    on_validation_start = on_test_start = on_fit_start  # validate or test without fitting

    def build_model(self) -> None:
        """Set ``self.model`` (and whatever else the stage needs with it)."""
        raise NotImplementedError

    def finish(self, data) -> dict:
        """Edit the weights training kept, before they are tested (``data``: the fit's); what it
        did (empty: nothing changed, the default)."""
        return {}

    def cross_entropy(self, logits: Tensor, labels: Tensor) -> Tensor:
        return weighted_cross_entropy(logits, labels, self.class_weights)

    def logits(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B, C)`` class logits of the model being trained."""
        raise NotImplementedError

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        """``(B,)`` predicted classes (a filter may add one more: rejected)."""
        return self.logits(batch).argmax(dim=-1)

    def _evaluate(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int,
                  preds: Optional[Tensor] = None) -> None:
        """Update and log every registered metric of this loader's rows (``w2s.metrics.METRICS``)."""
        preds = self.predict(batch) if preds is None else preds
        if dataloader_idx == CLEAN:
            kind, rows = "clean", EvalRows(preds, batch["labels"])
        else:  # labels: the target, or -1 (task-agnostic: any change from the clean prediction)
            kind, rows = "triggered", EvalRows(preds, batch["labels"], rows=batch.get("row"))
            if "clean_input_ids" in batch:
                rows.clean_labels = batch["clean_labels"]
                rows.clean_preds = self.predict({"input_ids": batch["clean_input_ids"],
                                                 "attention_mask": batch["clean_attention_mask"]})
        for spec in METRICS.values():
            key = f"{stage}_{spec.name}"
            if spec.rows != kind or spec.update is None or key not in self.metrics or \
                    (spec.needs_clean_version and rows.clean_preds is None):
                continue  # another kind of rows, logged by its owner, registered later, or no clean version
            spec.update(self.metrics[key], rows)
            self.log(f"{stage}/{spec.name}", self.metrics[key], prog_bar=spec.headline, add_dataloader_idx=False,
                     batch_size=preds.shape[0])

    def per_row(self, loader, compute, rows: int | None = None) -> tuple[torch.Tensor, ...]:
        """``compute(batch)``'s ``(B, ...)`` tensors for the rows of ``loader``, gathered from every
        process (each padded to ``ceil(rows / processes)``) and put in row-index order 0..N-1."""
        index, outputs = [], []
        for batch in loader:
            index.append(batch["index"].to(self.device))
            outputs.append(compute(batch))
        index, values = torch.cat(index), [torch.cat(column) for column in zip(*outputs)]
        world = self.trainer.world_size if self._trainer is not None else 1
        if world > 1:
            size = -(-rows // world)
            index = torch.cat([index, index.new_full((size - len(index),), -1)])
            values = [torch.cat([v, v.new_zeros((size - len(v), *v.shape[1:]))]) for v in values]
            index = self.all_gather(index).flatten()
            values = [self.all_gather(v).flatten(0, 1) for v in values]
        order = index.argsort()[(index < 0).sum():]  # padding (-1) sorts first
        if not torch.equal(index[order], torch.arange(len(order), device=index.device)):
            raise ValueError("per-row values need row indices 0..N-1")
        return tuple(v[order] for v in values)

    def validation_step(self, batch, batch_idx, dataloader_idx=0):
        self._evaluate("val", batch, dataloader_idx)

    def test_step(self, batch, batch_idx, dataloader_idx=0):
        self._evaluate(self.test_stage, batch, dataloader_idx)

    def log_losses(self, total: Tensor, terms: dict[str, Tensor], batch_size: int) -> None:
        """Log the loss and its terms; stop on a non-finite loss. Reading a value on the host
        waits for the device, so the steps only keep a finiteness flag on the device, and it is
        read every ``log_every_n_steps`` steps (when Lightning reads the logged values anyway)
        and at the end of each epoch."""
        finite = torch.isfinite(total.detach())
        self._finite = finite if self._finite is None else self._finite & finite
        every = self._trainer.log_every_n_steps if self._trainer is not None else 1
        if self.global_step % every == 0:
            self.check_finite(terms)
        self.log("train/loss", total, prog_bar=True, batch_size=batch_size)
        for name, value in terms.items():
            self.log(f"train/{name}", value, batch_size=batch_size)

    def check_finite(self, terms: Optional[dict[str, Tensor]] = None) -> None:
        finite, self._finite = self._finite, None
        if finite is not None and not finite:
            values = ", ".join(f"{k}={v.item():.4g}" for k, v in (terms or {}).items())
            raise ValueError(f"non-finite training loss by step {self.global_step} (this step: {values or 'n/a'}): "
                             f"lower the learning rate, or train in fp32")

    def on_train_epoch_end(self) -> None:
        self.check_finite()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        trainable = {name for name, p in self.named_parameters() if p.requires_grad}
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k in trainable}
        for objects in ("hyper_parameters", "datamodule_hyper_parameters"):
            checkpoint.pop(objects, None)

    def configure_optimizers(self):
        from transformers import get_linear_schedule_with_warmup

        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=self.optim.lr, weight_decay=self.optim.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        scheduler = get_linear_schedule_with_warmup(optimizer, int(self.optim.warmup_ratio * total), total)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def quiet_trainer(max_epochs: int, validate: bool = True, **options) -> pl.Trainer:
    """A Trainer that logs, checkpoints and prints nothing, for stages run outside the pipeline
    (the adapter benchmark, the detector, a population study); ``validate=False`` skips validation."""
    if not validate:
        options |= {"limit_val_batches": 0, "num_sanity_val_steps": 0}
    return pl.Trainer(max_epochs=max_epochs, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, **options)
