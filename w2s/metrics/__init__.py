"""CA, ASR and class-balanced accuracy: pure functions and DDP-safe torchmetrics wrappers."""
from w2s.metrics.functional import (attack_success_rate, balanced_accuracy, clean_accuracy, clean_correct_asr,
                                    confusion, macro_f1)
from w2s.metrics.modules import (AttackSuccessRate, BalancedAccuracy, CleanAccuracy, CleanCorrectASR, FlagRate,
                                 MacroF1, MajorityShare)

__all__ = ["AttackSuccessRate", "BalancedAccuracy", "CleanAccuracy", "CleanCorrectASR", "FlagRate", "MacroF1", "MajorityShare",
           "attack_success_rate", "balanced_accuracy", "clean_accuracy", "clean_correct_asr", "confusion", "macro_f1"]
