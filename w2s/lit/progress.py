"""The progress bar a stage shows (``trainer.progress_bar``)."""
from __future__ import annotations

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm


class StageProgressBar(TQDMProgressBar):
    """One bar per stage: training's (validation metrics show in it); none for validation and
    test passes. On an accelerator it moves every ``DEVICE_REFRESH`` steps: showing the loss
    reads it on the host, which waits for the device."""

    DEVICE_REFRESH = 25

    @property
    def refresh_rate(self) -> int:
        trainer = self._trainer
        on_host = trainer is None or trainer.strategy.root_device.type == "cpu"
        return self._refresh_rate if on_host else max(self._refresh_rate, self.DEVICE_REFRESH)

    def init_validation_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)

    def init_test_tqdm(self) -> Tqdm:
        return Tqdm(disable=True)
