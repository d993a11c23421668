from w2s.defenses.base import Defense, register_defense
from w2s.defenses.weak_to_strong import W2S_LORA  # W2S's adapter: an ablation of its terms only


@register_defense("kd")
class LogitDistillation(Defense):
    summary = "ablation of W2SDefense: CE + logit distillation from the teacher, no feature alignment"
    defaults = {"objective": {"ce": 1.0, "kd": 1.0, "fa": 0.0}, "lora": W2S_LORA}
