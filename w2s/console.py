"""What a run prints: its stages, one progress bar each (with an ETA), the table, and w2s's own
warnings. What the dependencies print besides (Lightning's hardware lines and tips,
transformers' load reports and progress bars, bitsandbytes' missing-kernel message,
deprecation warnings) is silenced unless ``--verbose``; a weight that a load newly initializes
when it should not is still reported, by :func:`report_new_weights`."""
from __future__ import annotations

import logging
import sys
import warnings
from typing import Sequence

from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.callbacks.progress.tqdm_progress import Tqdm

LIGHTNING_LOGGERS = ("pytorch_lightning", "lightning", "lightning.pytorch", "lightning_fabric", "lightning.fabric")


def configure(verbose: bool = False) -> None:
    """Silence the dependencies' chatter (``verbose``: leave everything as it is)."""
    if verbose:
        return
    for name in LIGHTNING_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)  # GPU/TPU lines, tips, "fit stopped"
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # the CPU build lacks optional kernels
    from transformers.utils import logging as transformers_logging

    transformers_logging.set_verbosity_error()   # load reports: w2s reports the unexpected ones itself
    transformers_logging.disable_progress_bar()  # "Loading weights", "Writing model shards"
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category)
    warnings.filterwarnings("ignore", message=r".*(is deprecated|deprecated)")
    from lightning_fabric.utilities.warnings import PossibleUserWarning

    warnings.filterwarnings("ignore", category=PossibleUserWarning)  # Lightning's hints for small runs


def report_new_weights(name: str, info: dict, expected: Sequence[str]) -> None:
    """One warning line when loading ``name`` newly initialized weights other than those
    ``expected`` (prefixes: a new classification head, a dropped pooler)."""
    new = [k for k in info.get("missing_keys", []) if not k.startswith(tuple(expected))]
    if new:
        shown = ", ".join(new[:5]) + (f" and {len(new) - 5} more" if len(new) > 5 else "")
        print(f"w2s: warning: {name}: missing from the checkpoint, so random: {len(new)} weight(s): {shown}",
              file=sys.stderr, flush=True)


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
