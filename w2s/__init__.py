"""w2s: unlearning backdoors from LLMs by weak-to-strong knowledge distillation."""

__version__ = "0.2.0"
