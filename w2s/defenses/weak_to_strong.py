from w2s.defenses.base import Defense, register_defense

# Chosen trigger-blind on BadNet SST-2 (docs/levers.md): the teacher's terms decay to 0 over training.
W2S_OBJECTIVE = {"ce": 1.0, "kd": 1.0, "fa": 10.0, "normalize_features": True, "schedule": "decay"}


@register_defense("w2s")
class WeakToStrong(Defense):
    summary = ("W2SDefense: LoRA guided by a small clean teacher, CE + logit distillation + feature alignment "
               "(Zhao et al., arXiv 2410.14425)")
    defaults = {"objective": W2S_OBJECTIVE, "lora": {"r": 512}}
