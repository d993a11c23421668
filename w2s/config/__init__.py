"""Each component's settings: dataclasses with their types, defaults and checks. Pure: nothing
here imports torch or Lightning, or any other part of w2s (``tests/test_cli.py`` pins it), so
reading, checking and printing a configuration answers at once. A run's settings compose these
in ``w2s.pipeline.config``, where names are checked against the attack and defense registries."""
from w2s.config.attack import PoisonConfig
from w2s.config.jsonable import to_jsonable
from w2s.config.lora import LoraSpec
from w2s.config.objective import ObjectiveConfig
from w2s.config.optim import OptimConfig
from w2s.config.student import StudentSpec

__all__ = ["LoraSpec", "ObjectiveConfig", "OptimConfig", "PoisonConfig", "StudentSpec", "to_jsonable"]
