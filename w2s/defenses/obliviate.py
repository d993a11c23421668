from w2s.defenses.base import Defense, register_defense

# The authors' defaults (jaehanwork/Obliviate): weights, LoRA r=16 on q and v, lr 3e-4.
OBLIVIATE_TERMS = {"amp": 3e-3, "attn": 3e-2}


@register_defense("obliviate")
class Obliviate(Defense):
    summary = ("Obliviate: LoRA with CE + adapter amplification + attention flattening, no teacher "
               "(Kim et al., arXiv 2409.14119)")
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0, **OBLIVIATE_TERMS}, "lora": {"r": 16}, "lr": 3e-4}
