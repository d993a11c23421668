"""CA and ASR: pure functions and DDP-safe torchmetrics wrappers."""
from w2s.metrics.functional import attack_success_rate, clean_accuracy, clean_correct_asr
from w2s.metrics.modules import AttackSuccessRate, CleanAccuracy

__all__ = ["AttackSuccessRate", "CleanAccuracy", "attack_success_rate", "clean_accuracy", "clean_correct_asr"]
