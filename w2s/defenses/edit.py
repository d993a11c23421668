"""An earlier entry's trained adapter, edited without training it again (``finish``: rescale,
blend, head refit): the post-training levers studied at the cost of an evaluation."""
from __future__ import annotations

from dataclasses import dataclass

from w2s.defenses.base import Defense, register_defense
from w2s.defenses.weak_to_strong import W2S_OBJECTIVE


@dataclass(frozen=True)
class EditOptions:
    """``of``: the earlier entry of ``defenses:`` whose trained adapter is edited."""

    of: str = ""


@register_defense("edit")
class Edit(Defense):
    summary = ("an earlier entry's trained adapter with finish's edits (rescale, blend, head refit), "
               "not trained again")
    defaults = {"objective": W2S_OBJECTIVE}  # the teacher's terms: what finish.blend's rule reads
    Options = EditOptions

    def uses(self, stage):
        return tuple(dict.fromkeys(name for name in (self.options(stage.options).of, *super().uses(stage)) if name))

    def check(self, name, stage, config):
        if not self.options(stage.options).of:
            raise ValueError(f"defenses.{name}: options.of must name the earlier entry of defenses: whose adapter "
                             f"it edits")
        if not stage.finish.edits:
            raise ValueError(f"defenses.{name}: an edit changes nothing without finish: set rescale, blend "
                             f"or refit_head")

    def run(self, context, stage):
        self.train_lora(context, stage, adapter=context.adapters[self.options(stage.options).of])
