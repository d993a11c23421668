"""LMSanitator (Wei et al., NDSS 2024, arXiv 2308.13904; meng-wenlong/LMSanitator): an input
filter against task-agnostic backdoors. Its attack-vector mining (``mining``, also ``w2s inspect``),
monitoring and purging (``monitor``), options, LightningModule (``module``, loaded when it runs)
and registration (here) live together."""
from __future__ import annotations

from pathlib import Path

from w2s.defenses.base import Defense, register_defense
from w2s.defenses.filters import FLAG_RATES  # noqa: F401 (the columns its module logs)
from w2s.defenses.lmsanitator.options import LmsanitatorOptions
from w2s.metrics import MetricSpec, register_metric

__all__ = ["Lmsanitator", "LmsanitatorOptions"]

register_metric(MetricSpec("purge_passes", "purge passes / flagged row", "triggered", fmt=".1f"))


@register_defense("lmsanitator")
class Lmsanitator(Defense):
    family = "filter"
    summary = ("LMSanitator: mine the attack vectors a task-agnostic backdoor forces, flag inputs whose output "
               "agrees in sign with one, delete words until the flag clears (Wei et al., arXiv 2308.13904)")
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0}, "lora": {"r": 16}}  # the victim: Obliviate's LoRA
    Options = LmsanitatorOptions

    def notes(self, name, manifest):
        info, m = manifest["info"], manifest["metrics"]
        found = info["vectors_found"]
        passes = m.get("purge_passes")
        return [f"filter ({name}): {found} attack vector{'s' if found != 1 else ''} mined on the {info['mined_on']} "
                f"model in {info['seeds_tried']} seeds, {info['mining_s']:.0f} s (distance threshold "
                f"{info['distance']:.4g}, {info['calibration']}); flags {m['detection_rate']:.1%} of the triggered "
                f"test rows and {m['false_alarm_rate']:.1%} of the clean ones"
                + (f"; {passes:.1f} forward passes per flagged triggered row" if passes is not None else "")]

    def run(self, context, stage):
        from w2s.defenses.lmsanitator.module import LmsanitatorModule

        options = self.options(stage.options)
        student = context.student(stage)
        data = context.data(stage, student)
        pretrained = context.poisoned.parent / "pretrained"  # POR's poisoned pre-trained model, before the head
        module = LmsanitatorModule(student, stage.lora, data.num_labels, stage.optim(),
                                   context.config.attack.target_label, options, context.config.student.name,
                                   str(pretrained if pretrained.is_dir() else context.poisoned),
                                   str(Path(context.run.folder).parent.parent / "lmsanitator-calibrations"))
        context.fit_and_test(module, stage, data)
        found = module.found
        context.run.info.update(vectors_found=len(found.vectors), seeds_tried=len(found.seeds),
                                mining_s=found.seconds, mined_on=options.mine_on, distance=module.distance,
                                calibration=module.calibration_source)
        context.save(module)
