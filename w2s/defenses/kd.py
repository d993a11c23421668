from w2s.defenses.base import Defense, register_defense


@register_defense("kd")
class LogitDistillation(Defense):
    summary = "ablation of W2SDefense: CE + logit distillation from the teacher, no feature alignment"
    defaults = {"objective": {"ce": 1.0, "kd": 1.0, "fa": 0.0}, "lora": {"r": 512}}
