from w2s.defenses.base import Defense, register_defense
from w2s.defenses.obliviate import OBLIVIATE_TERMS
from w2s.defenses.weak_to_strong import W2S_LORA, W2S_OBJECTIVE


@register_defense("w2s+obliviate")
class WeakToStrongObliviate(Defense):
    summary = "W2SDefense with Obliviate's two regularisers added to its objective"
    defaults = {"objective": {**W2S_OBJECTIVE, **OBLIVIATE_TERMS}, "lora": W2S_LORA}
