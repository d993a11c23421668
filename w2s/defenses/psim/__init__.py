"""PSIM (Zhao et al., arXiv 2402.12168; shuaizhao95/PSIM): an input filter. Its options
(``options.py``), its LightningModule (``module.py``, loaded when it runs) and its registration
(here) live together."""
from __future__ import annotations

from w2s.defenses.base import Defense, register_defense
from w2s.defenses.filters import FLAG_RATES  # noqa: F401 (the columns its module logs)
from w2s.defenses.psim.options import MODULES, PsimOptions

__all__ = ["MODULES", "Psim", "PsimOptions"]


@register_defense("psim")
class Psim(Defense):
    family = "filter"
    summary = ("PSIM: a P-tuning module trained on randomly relabelled clean rows flags over-confident inputs "
               "(threshold 0.7) as poisoned and rejects them (Zhao et al., arXiv 2402.12168)")
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0}, "epochs": 1, "lr": 2e-5, "keep": "last"}
    Options = PsimOptions

    def check(self, name, stage, config):
        if config.trainer.strategy == "fsdp" and self.options(stage.options).module == "p-tuning":
            raise ValueError(f"trainer.strategy fsdp cannot shard psim's p-tuning module, which shares the student's "
                             f"embeddings ({name}): set options: {{module: lora}}")

    def notes(self, name, manifest):
        m = manifest["metrics"]
        return [f"filter ({name}): flags {m['detection_rate']:.1%} of the triggered test rows and "
                f"{m['false_alarm_rate']:.1%} of the clean ones (false alarms); its CA and ASR are after "
                f"rejecting the flagged rows"]

    def run(self, context, stage):
        from w2s.defenses.psim.module import PsimModule

        options = self.options(stage.options)
        student = context.student(stage)
        data = context.data(stage, student)
        module = PsimModule(student, data.num_labels, stage.optim(), context.config.attack.target_label, options,
                            stage.lora)
        context.fit_and_test(module, stage, data)
        context.run.info["threshold"] = module.threshold
        context.save(module)
