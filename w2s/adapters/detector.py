"""PEFTGuard's detector (Vincent-HKUSTGZ/PEFTGuard, ``model/PEFTGuard_*.py``) as a LightningModule.

Each branch (one ``(C, d_out, d_in)`` stack of updates, ``w2s.adapters.updates.branches``):
Conv2d(C -> 16, kernel 8, stride 8), flatten, Linear -> 512, LeakyReLU; the branches
concatenated, Linear -> 128, LeakyReLU, Linear 128 -> 2. Trained as the authors do: BCE on
one-hot targets, Adam (lr 1e-4, weight decay 1e-5), the learning rate cosine-annealed to 5e-6
over the epochs, keeping the epoch with the lowest validation loss; the score of an adapter is
the probability of class 1 (backdoored)."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from safetensors.torch import load_file, save_file
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from w2s.adapters.manifest import FORMAT, read_manifest
from w2s.lit.base import quiet_trainer
from w2s.lit.callbacks import RestoreBest


def _conv_size(size: int, kernel: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class PeftGuardNet(nn.Module):
    """``branches``: each branch's ``(C, d_out, d_in)``. ``forward(list of (B, C, d_out, d_in))`` -> ``(B, 2)``."""

    def __init__(self, branches: list[tuple[int, int, int]], channels: int = 16, kernel: int = 8, stride: int = 8,
                 padding: int = 0):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, channels, kernel, stride, padding), nn.Flatten(),
                          nn.Linear(channels * _conv_size(h, kernel, stride, padding)
                                    * _conv_size(w, kernel, stride, padding), 512), nn.LeakyReLU())
            for c, h, w in branches)
        self.head = nn.Sequential(nn.Linear(512 * len(branches), 128), nn.LeakyReLU(), nn.Linear(128, 2))

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.head(torch.cat([branch(x) for branch, x in zip(self.branches, inputs)], dim=1))


class AdapterDetector(pl.LightningModule):
    """Batches: ``{"inputs": [per branch (B, C, d_out, d_in)], "labels": (B,)}`` (1: backdoored).
    Logged: ``train/loss``, ``{val,test}/loss``, ``{val,test}/accuracy`` and ``{val,test}/auroc``. ``preprocessing``
    (``Preprocessing.to_json()``) is kept in the hyperparameters: it says how an adapter becomes
    the input, so a scan can refuse an adapter the detector was not trained for."""

    def __init__(self, preprocessing: dict, lr: float = 1e-4, weight_decay: float = 1e-5, min_lr: float = 5e-6,
                 channels: int = 16, kernel: int = 8, stride: int = 8, padding: int = 0, input_scale: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        shapes: dict[tuple[int, int], int] = {}
        for layers, d_out, d_in in preprocessing["projections"].values():
            shapes[(d_out, d_in)] = shapes.get((d_out, d_in), 0) + layers
        self.net = PeftGuardNet([(c, h, w) for (h, w), c in shapes.items()], channels, kernel, stride, padding)
        self.metrics = nn.ModuleDict({f"{stage}_{name}": metric() for stage in ("val", "test")
                                      for name, metric in (("accuracy", BinaryAccuracy), ("auroc", BinaryAUROC))})

    def forward(self, inputs: list[Tensor]) -> Tensor:
        return self.net([x * self.hparams.input_scale for x in inputs])

    @torch.no_grad()
    def score(self, inputs: list[Tensor]) -> Tensor:
        """``(B,)`` the probability that each adapter is backdoored."""
        return self(inputs).softmax(dim=-1)[:, 1]

    def _loss(self, batch) -> Tensor:
        return nn.functional.binary_cross_entropy_with_logits(
            self(batch["inputs"]), nn.functional.one_hot(batch["labels"], 2).float())

    def training_step(self, batch, batch_idx):
        loss = self._loss(batch)
        self.log("train/loss", loss, batch_size=len(batch["labels"]))
        return loss

    def _evaluate(self, stage: str, batch) -> None:
        self.log(f"{stage}/loss", self._loss(batch), batch_size=len(batch["labels"]))
        scores = self.score(batch["inputs"])
        for name in ("accuracy", "auroc"):
            metric = self.metrics[f"{stage}_{name}"]
            metric.update(scores, batch["labels"])
            self.log(f"{stage}/{name}", metric, batch_size=len(batch["labels"]))

    def validation_step(self, batch, batch_idx):
        self._evaluate("val", batch)

    def test_step(self, batch, batch_idx):
        self._evaluate("test", batch)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, self.trainer.max_epochs),
                                                               eta_min=self.hparams.min_lr)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}


def collate(items: list[tuple[list[Tensor], int]]) -> dict:
    """``[(branches, label)]`` -> a batch for :class:`AdapterDetector`."""
    return {"inputs": [torch.stack(group) for group in zip(*(branches for branches, _ in items))],
            "labels": torch.tensor([label for _, label in items])}


def stratified_split(labels: list[int], share: float = 0.1, seed: int = 0) -> tuple[list[int], list[int]]:
    """``(train, held-out)`` indices, ``share`` of each class held out (at least one per class)."""
    generator = torch.Generator().manual_seed(seed)
    held = []
    for label in sorted(set(labels)):
        rows = [i for i, y in enumerate(labels) if y == label]
        order = torch.randperm(len(rows), generator=generator).tolist()
        held += [rows[i] for i in order[:max(1, round(share * len(rows)))]]
    return [i for i in range(len(labels)) if i not in set(held)], sorted(held)


def standard_scale(items: list[tuple[list[Tensor], int]]) -> float:
    """``1 / std`` of every entry of the training adapters' inputs: the factor that gives them unit
    variance (LoRA updates are ~1e-3 per entry, where the authors' network learns little in 20 epochs)."""
    total = count = squares = 0.0
    for branches, _ in items:
        for x in branches:
            total, squares, count = total + x.sum().item(), squares + x.pow(2).sum().item(), count + x.numel()
    variance = squares / count - (total / count) ** 2
    return 1.0 / math.sqrt(variance) if variance > 0 else 1.0


def fit_detector(train: list[tuple[list[Tensor], int]], val: list[tuple[list[Tensor], int]], preprocessing: dict,
                 epochs: int = 20, batch_size: int = 4, seed: int = 0, **options) -> AdapterDetector:
    """Train on ``train`` (``[(branches, label)]``), keep the epoch with the lowest validation loss
    (``detector.validation``: that epoch, its loss and ROC-AUC). The authors keep the best
    validation epoch; with a handful of validation adapters ROC-AUC ties at 1.0 from the first
    epoch on, and the loss, which also sees how sure the detector is, breaks the tie."""
    pl.seed_everything(seed, verbose=False)
    detector = AdapterDetector(preprocessing, **options)
    best = RestoreBest("val/loss", mode="min")
    trainer = quiet_trainer(epochs, callbacks=[best])
    trainer.fit(detector, DataLoader(train, batch_size, shuffle=True, collate_fn=collate),
                DataLoader(val, batch_size, collate_fn=collate))
    trainer.validate(detector, DataLoader(val, batch_size, collate_fn=collate), verbose=False)
    detector.validation = {"epoch": best.best_epoch, "loss": best.best_score,
                           "auroc": trainer.callback_metrics["val/auroc"].item()}
    return detector


NETWORK = ("channels", "kernel", "stride", "padding", "input_scale")


def save_detector(detector: AdapterDetector, folder: str | Path, facts: dict, dtype: str = "float32") -> dict:
    """``folder/model.safetensors`` (the network's weights in ``dtype``) and ``folder/manifest.json``:
    the preprocessing (order, scaling, dtype), the network's shape, the threshold and ``facts``
    (what it was trained on); returns the manifest."""
    from w2s.artifacts import atomic_folder

    hparams = detector.hparams
    manifest = {"format": FORMAT, "preprocessing": hparams.preprocessing,
                "network": {key: hparams[key] for key in NETWORK}, "threshold": 0.5, "weights_dtype": dtype} | facts
    with atomic_folder(Path(folder)) as staging:
        save_file({k: v.to(getattr(torch, dtype)).contiguous() for k, v in detector.net.state_dict().items()},
                  str(staging / "model.safetensors"))
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def load_detector(folder: str | Path | None = None) -> tuple[AdapterDetector, dict]:
    """``(detector in eval mode, manifest)`` from a folder :func:`save_detector` wrote (None: the
    detector that ships)."""
    folder, manifest = read_manifest(folder)
    detector = AdapterDetector(manifest["preprocessing"], **manifest["network"])
    detector.net.load_state_dict({k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()})
    return detector.eval(), manifest
