"""Pure loss functions and the objective that composes them."""
from w2s.losses.feature_alignment import feature_alignment_loss, feature_alignment_reference
from w2s.losses.kd import kd_loss
from w2s.losses.obliviate import amplification_loss, attention_loss
from w2s.losses.objective import TERMS, LossInputs, ObjectiveConfig, compose, register_term

__all__ = ["TERMS", "LossInputs", "ObjectiveConfig", "amplification_loss", "attention_loss", "compose",
           "feature_alignment_loss", "feature_alignment_reference", "kd_loss", "register_term"]
