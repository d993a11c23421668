from w2s.defenses.base import Defense, register_defense

# Chosen on BadNet SST-2 over three seeds (docs/levers.md): the teacher's terms at a constant weight
# (the schedule's default); decaying them to 0 let part of the backdoor return on two of three seeds.
W2S_OBJECTIVE = {"ce": 1.0, "kd": 1.0, "fa": 10.0, "normalize_features": True}


@register_defense("w2s")
class WeakToStrong(Defense):
    summary = ("W2SDefense: LoRA guided by a small clean teacher, CE + logit distillation + feature alignment "
               "(Zhao et al., arXiv 2410.14425)")
    defaults = {"objective": W2S_OBJECTIVE, "lora": {"r": 512}}
