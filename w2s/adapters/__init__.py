"""Scanning LoRA adapters for backdoors (PEFTGuard, arXiv 2411.17453): a benchmark of adapters
of our own (``build``), an adapter's weight updates as the detector's input (``updates``),
cheap spectral baselines (``spectral``) and the detector itself (``detector``, a
LightningModule). Nothing is imported here: ``w2s adapters --help`` loads no torch."""
