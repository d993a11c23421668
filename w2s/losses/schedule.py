"""How the objective's weights move over training: a pure function of the training progress
``p`` in [0, 1] (the share of optimiser steps done), giving a factor for the teacher's terms
(``kd``, ``fa``) and one for ``ce``:

    constant      teacher 1                 ce 1
    warmup        teacher p                 ce 1       (the teacher's pull grows)
    decay         teacher 1 - p             ce 1       (align early, then fit the labels)
                  with ``hold`` h: teacher 1 while p < h, then (1 - p) / (1 - h)
                  (e.g. h = 1/2 of two epochs: decayed only after the first)
    align_first   teacher 1 if p < 1/2      ce 0 if p < 1/2, else 1   (alignment, then CE alone)
                  else 0
"""
from __future__ import annotations

from w2s.config.objective import check_schedule  # the names are defined with the settings


def schedule_factors(name: str, progress: float, hold: float = 0.0) -> tuple[float, float]:
    """``(teacher factor, ce factor)`` at ``progress`` (clamped to [0, 1]); ``hold`` in [0, 1):
    the share of training ``decay`` keeps the teacher's full weight before it starts decaying."""
    check_schedule(name, hold)
    p = min(max(progress, 0.0), 1.0)
    if name == "warmup":
        return p, 1.0
    if name == "decay":
        return min(1.0, (1.0 - p) / (1.0 - hold)), 1.0
    if name == "align_first":
        return (1.0, 0.0) if p < 0.5 else (0.0, 1.0)
    return 1.0, 1.0
