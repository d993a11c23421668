"""CA and ASR: pure functions and DDP-safe torchmetrics wrappers."""
from w2s.metrics.functional import attack_success_rate, clean_accuracy, clean_correct_asr
from w2s.metrics.modules import AttackSuccessRate, CleanAccuracy, CleanCorrectASR, MajorityShare

__all__ = ["AttackSuccessRate", "CleanAccuracy", "CleanCorrectASR", "MajorityShare", "attack_success_rate", "clean_accuracy", "clean_correct_asr"]
