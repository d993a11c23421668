from w2s.defenses.base import Defense, register_defense


@register_defense("lora")
class CleanLora(Defense):
    by_default = True
    summary = ("clean LoRA: cross-entropy on the defender's rows, the baseline every unlearning claim needs "
               "(W2SDefense, arXiv 2410.14425)")
    baseline = True
    # W2S's rank (the reference's baseline is r=512 too): a config without `defenses:` compares like with like
    defaults = {"objective": {"ce": 1.0, "kd": 0.0, "fa": 0.0}, "lora": {"r": 512}}
