from w2s.defenses.base import Defense, register_defense

# Chosen on BadNet SST-2 over three seeds (docs/levers.md): the teacher's terms at a constant weight
# (the schedule's default); decaying them to 0 let part of the backdoor return on two of three seeds.
W2S_OBJECTIVE = {"ce": 1.0, "kd": 1.0, "fa": 10.0, "normalize_features": True}
# Chosen on BadNet SST-2's triggered dev rows over four runs (docs/levers.md): with rsLoRA at alpha 64
# (update scale 64 / sqrt(512) = 2.8) W2S met the dev target (clean-correct ASR <= 0.05, CA within a point
# of clean LoRA's) on three, with plain LoRA (scale 1) on one. Clean LoRA with it does not unlearn.
W2S_LORA = {"r": 512, "variant": "rslora", "alpha": 64}
# The reference code's weights (alpha, beta, gamma) per attack (shuaizhao95/w2sdefense): the
# `w2s_reference` entries of experiments/sst2_*.yaml (a test keeps them equal).
REFERENCE_OBJECTIVES = {"badnet": {"ce": 5.0, "kd": 0.001, "fa": 0.001, "normalize_features": False},
                        "insent": {"ce": 3.0, "kd": 0.01, "fa": 0.001, "normalize_features": False},
                        "synattack": {"ce": 1.0, "kd": 0.035, "fa": 0.002, "normalize_features": False}}


@register_defense("w2s")
class WeakToStrong(Defense):
    by_default = True
    summary = ("W2SDefense: LoRA guided by a small clean teacher, CE + logit distillation + feature alignment "
               "(Zhao et al., arXiv 2410.14425)")
    defaults = {"objective": W2S_OBJECTIVE, "lora": W2S_LORA}
