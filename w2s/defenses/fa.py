from w2s.defenses.base import Defense, register_defense
from w2s.defenses.weak_to_strong import W2S_LORA  # W2S's adapter: an ablation of its terms only


@register_defense("fa")
class FeatureAlignment(Defense):
    summary = "ablation of W2SDefense: CE + feature alignment to the teacher, no logit distillation"
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 10.0, "normalize_features": True}, "lora": W2S_LORA}
