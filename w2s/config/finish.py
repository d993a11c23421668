"""What a LoRA defense does to its trained weights (the kept epoch's) before they are tested:
edits that need no trigger (``UnlearnModule.finish`` in ``w2s.lit.unlearn`` applies them)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class FinishConfig:
    """``rescale``: multiply every LoRA update ``s * B A`` by this factor (RoRA's post-training
    spectral rescaling, arXiv 2601.06305, in its uniform form: every singular value of the update
    scaled alike; 1 changes nothing). ``refit_head``: refit the classification head alone as a
    linear probe on the defender's clean training rows, the adapted features frozen (full-batch
    L-BFGS on cross-entropy + ``probe_l2`` * |W|^2 / 2, from the trained head), so accuracy can come
    back without moving the features the unlearning cleaned.

    ``blend``: an earlier entry of ``defenses:`` (e.g. ``lora``) whose adapter and head are blended
    in with weight w (``(1 - w)`` this one's: ``students.edits.AdapterBlend``), w chosen without the
    trigger: among 0 and ``blend_weights``, the highest clean dev accuracy among the weights whose
    feature alignment to the teacher on the dev rows (the objective's ``fa`` term) is at most
    ``(1 + blend_bound)`` times that of w = 0. ``blend_bound: null``: no bound and 0 not a
    candidate (one weight listed: that blend, to trace the path). Edits run in the order
    rescale, blend, head refit."""

    rescale: float = 1.0
    refit_head: bool = False
    probe_l2: float = 1e-3
    blend: Optional[str] = None
    blend_weights: tuple[float, ...] = (0.1, 0.25, 0.5)
    blend_bound: Optional[float] = 0.1

    def __post_init__(self):
        if not self.rescale > 0:
            raise ValueError(f"finish.rescale must be > 0, got {self.rescale}")
        if not self.probe_l2 >= 0:
            raise ValueError(f"finish.probe_l2 must be >= 0, got {self.probe_l2}")
        if not self.blend_weights or not all(0.0 < w <= 1.0 for w in self.blend_weights):
            raise ValueError(f"finish.blend_weights must be weights in (0, 1], got {list(self.blend_weights)}")
        if self.blend_bound is not None and not self.blend_bound >= 0:
            raise ValueError(f"finish.blend_bound must be >= 0 (or null: no bound), got {self.blend_bound}")

    @property
    def edits(self) -> bool:
        """Whether anything changes the trained weights."""
        return self.rescale != 1.0 or self.refit_head or self.blend is not None
