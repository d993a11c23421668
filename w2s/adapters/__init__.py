"""Scanning LoRA adapters for backdoors (PEFTGuard, arXiv 2411.17453): an adapter's weight
updates as the detector's input (``updates``), cheap spectral baselines (``spectral``), and the
detector itself (``detector``, a LightningModule)."""
from w2s.adapters.updates import Preprocessing, adapter_updates, preprocessing

__all__ = ["Preprocessing", "adapter_updates", "preprocessing"]
