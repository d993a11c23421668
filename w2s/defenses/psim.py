from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from w2s.defenses.base import Defense, register_defense

MODULES = ("p-tuning", "lora")


@dataclass(frozen=True)
class PsimOptions:
    """``threshold``: flag an input whose top probability under the module exceeds it (0.7 in the
    reference); ``false_alarm``: instead, set the threshold so that this share of the clean dev
    rows is flagged (a trigger-blind calibration); ``module``: ``p-tuning`` (``virtual_tokens``
    virtual tokens) or ``lora`` (the entry's ``lora``); ``label_seed``: seed of the random labels;
    ``encoder_hidden_size``: the P-tuning prompt encoder's width (null: the student's hidden
    size; the reference's is 128)."""

    threshold: float = 0.7
    false_alarm: Optional[float] = None
    module: str = "p-tuning"
    virtual_tokens: int = 5
    label_seed: int = 0
    encoder_hidden_size: Optional[int] = None

    def __post_init__(self):
        if self.module not in MODULES:
            raise ValueError(f"unknown psim module {self.module!r}; valid: {', '.join(MODULES)}")
        if self.false_alarm is not None and not 0.0 < self.false_alarm < 1.0:
            raise ValueError(f"psim false_alarm must lie in (0, 1), got {self.false_alarm}")
        if self.encoder_hidden_size is not None and self.encoder_hidden_size < 1:
            raise ValueError(f"psim encoder_hidden_size must be >= 1 (or null), got {self.encoder_hidden_size}")
        if not 0.0 < self.threshold < 1.0 or self.virtual_tokens < 1:
            raise ValueError(f"psim needs 0 < threshold < 1 and virtual_tokens >= 1, got {self.threshold}, "
                             f"{self.virtual_tokens}")


@register_defense("psim")
class Psim(Defense):
    summary = ("PSIM: a P-tuning module trained on randomly relabelled clean rows flags over-confident inputs "
               "(threshold 0.7) as poisoned and rejects them (Zhao et al., arXiv 2402.12168)")
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0}, "epochs": 1, "lr": 2e-5, "keep": "last"}
    Options = PsimOptions

    def run(self, config, run, name, stage, poisoned, teacher):
        from w2s.lit.psim import PsimModule
        from w2s.pipeline import stages

        options = self.options(stage.options)
        student = stages.defender_student(config, run, stage, poisoned)
        data = stages.defense_data(config, stage, student)
        module = PsimModule(student, data.num_labels, stage.optim(), config.attack.target_label, options, stage.lora)
        clean, triggered = stages.fit_and_test(config, run, name, module, stage, data)
        run.metrics |= {"false_alarm_rate": clean["test/false_alarm_rate"],
                        "detection_rate": triggered["test/detection_rate"]}
        run.info["threshold"] = module.threshold
        run.save(module, "model")
