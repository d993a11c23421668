"""CA, ASR and class-balanced accuracy: pure functions, DDP-safe torchmetrics wrappers, and the
metric specs that drive logging and the results table (``specs``). Importing the package loads
only the specs (no torch); the functions and wrappers are imported when first named."""
from importlib import import_module

from w2s.metrics.specs import METRICS, EvalRows, MetricSpec, register_metric

_LAZY = {name: "w2s.metrics.functional" for name in ("attack_success_rate", "balanced_accuracy", "clean_accuracy",
                                                      "clean_correct_asr", "confusion", "macro_f1")}
_LAZY |= {name: "w2s.metrics.modules" for name in ("AttackSuccessRate", "BalancedAccuracy", "CleanAccuracy",
                                                   "CleanCorrectASR", "FlagRate", "MacroF1", "MajorityShare")}

__all__ = ["METRICS", "EvalRows", "MetricSpec", "register_metric", *_LAZY]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'w2s.metrics' has no attribute {name!r}")
