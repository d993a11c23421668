"""An adapter as the detector sees it: for each adapted projection ``p`` and layer ``l`` the full
update the model really gets,

    Delta W_{p,l} = s * B_{p,l} A_{p,l},    s = alpha / r  (rsLoRA: alpha / sqrt(r)),

``r`` read from the shapes (so ``rank_pattern`` needs no parsing) and ``alpha`` from
``alpha_pattern`` or ``lora_alpha``. A DoRA adapter's update depends on the base weight ``W``:

    Delta W = m / ||W + s B A||_row * (W + s B A) - W

(``m`` its magnitude vector, the norm taken per output row, as peft merges it), so reading one
needs the base model's weights (:func:`base_weights`). Its shape ``(d_out, d_in)`` does not
depend on the rank, which is what lets a detector trained on some ranks score others. The classification head
(``modules_to_save``) is left out: it can leak the attack's target label. PEFTGuard's release
says neither whether the scaling is folded in nor how the channels are ordered (a user asked
its authors); :class:`Preprocessing` states both and travels with every detector."""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

LORA_A = re.compile(r"^(?P<module>.+)\.lora_A(?:\.[^.]+)?\.weight$")


@dataclass(frozen=True)
class Preprocessing:
    """How adapters become the detector's input: ``projections`` in channel order, each with its
    ``(layers, d_out, d_in)`` shape; ``base_model`` the model the adapters were made for (an
    adapter for another one is refused, not scored)."""

    base_model: str
    projections: dict[str, tuple[int, int, int]]
    scaling: str = "alpha / r folded in (rsLoRA: alpha / sqrt(r))"
    order: str = "projection-major (as listed), layer-minor (ascending)"
    dtype: str = "float32"
    head: str = "excluded"

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, value: dict) -> "Preprocessing":
        return cls(**value | {"projections": {k: tuple(v) for k, v in value["projections"].items()}})

    def check(self, other: "Preprocessing", name: str) -> None:
        """``name``'s adapter (``other``) fits a detector trained with these settings."""
        if other.projections != self.projections:
            raise ValueError(f"{name}: adapter updates {other.projections} do not match the detector's "
                             f"{self.projections} (base model {self.base_model}): a detector scans adapters of "
                             f"one base model and target modules only")


def resolve_adapter(name: str | Path) -> Path:
    """A local adapter folder, or a hub id (``owner/name``) fetched through ``huggingface_hub``
    (its config and safetensors weights only)."""
    folder = Path(name).expanduser()
    if folder.exists() or str(name).count("/") != 1 or str(name).startswith((".", "/")):
        if not folder.is_dir():
            raise ValueError(f"adapter: {name}: no such folder")
        return folder
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(str(name), allow_patterns=["adapter_config.json", "adapter_model.safetensors"]))
    except Exception as err:  # offline, unknown repository, no access: one line, never a traceback
        raise ValueError(f"adapter: {name} is neither a local folder nor a reachable hub adapter "
                         f"({type(err).__name__})") from None


def read_adapter(folder: str | Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """``(adapter_config.json, safetensors state)`` of a peft LoRA adapter folder; anything else
    (no config, a pickled or missing weight file, another PEFT type) is refused."""
    folder = Path(folder)
    if not (folder / "adapter_config.json").is_file():
        raise ValueError(f"adapter: {folder} is not a peft adapter folder (no adapter_config.json)")
    weights = folder / "adapter_model.safetensors"
    if not weights.is_file():
        raise ValueError(f"adapter: {folder} holds no adapter_model.safetensors (pickled adapters are refused)")
    try:
        config = json.loads((folder / "adapter_config.json").read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"adapter: {folder}/adapter_config.json is not JSON ({err})") from None
    if config.get("peft_type", "LORA") != "LORA":
        raise ValueError(f"adapter: {folder} is a {config['peft_type']} adapter, not LoRA")
    try:
        return config, load_file(str(weights))
    except Exception as err:  # safetensors raises its own error type on a damaged file
        raise ValueError(f"adapter: {weights} is not a readable safetensors file ({err})") from None


def base_weights(name: str) -> dict[str, torch.Tensor]:
    """The weights of base model ``name`` (embedded name, hub id or path) as peft's adapter keys
    name them (``base_model.model.`` stripped): what a DoRA update is computed against."""
    from transformers import AutoModelForSequenceClassification

    from w2s.embedded import resolve_model

    model = AutoModelForSequenceClassification.from_pretrained(resolve_model(name), num_labels=2)
    return {key: value.float() for key, value in model.state_dict().items() if key.endswith(".weight")}


def _projection(module: str) -> tuple[str, int]:
    """``(projection name, layer index)`` of ``...layer.3.attention.self.query``: the module's last
    name and the last number in its path."""
    parts = module.split(".")
    layers = [int(p) for p in parts if p.isdigit()]
    if not layers:
        raise ValueError(f"adapter: module {module} has no layer index")
    return parts[-1], layers[-1]


def _alpha(config: dict, module: str) -> float:
    pattern = config.get("alpha_pattern") or {}
    key = next((k for k in pattern if module == k or module.endswith("." + k)), None)
    return float(pattern[key] if key is not None else config["lora_alpha"])


def _dora(base: dict[str, torch.Tensor] | None, module: str, update: torch.Tensor, magnitude: torch.Tensor,
          folder) -> torch.Tensor:
    if base is None:
        raise ValueError(f"adapter: {folder} is DoRA, whose update depends on the base weights: pass base_weights()")
    key = module.removeprefix("base_model.model.") + ".weight"
    if key not in base or base[key].shape != update.shape:
        raise ValueError(f"adapter: {folder} was made for another base model (no {key} of shape "
                         f"{tuple(update.shape)} in the base weights)")
    merged = base[key] + update
    return (magnitude.float() / merged.norm(dim=1)).unsqueeze(1) * merged - base[key]


def adapter_updates(folder: str | Path, base: dict[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """``{projection: (layers, d_out, d_in)}`` float32 updates, projections sorted by name, layers
    ascending. ``base``: the base model's weights (:func:`base_weights`), needed for DoRA only."""
    config, state = read_adapter(folder)
    found: dict[str, dict[int, torch.Tensor]] = {}
    for key, a in state.items():
        match = LORA_A.match(key)
        if match is None:
            continue
        module = match.group("module")
        b = state[key.replace(".lora_A", ".lora_B")].float()
        rank = a.shape[0]
        scale = _alpha(config, module) / (math.sqrt(rank) if config.get("use_rslora") else rank)
        update = scale * b @ a.float()
        if config.get("use_dora"):
            magnitude = state[key.replace(".lora_A", ".lora_magnitude_vector").removesuffix(".weight")]
            update = _dora(base, module, update, magnitude, folder)
        name, layer = _projection(module)
        found.setdefault(name, {})[layer] = update
    if not found:
        raise ValueError(f"adapter: {folder} holds no LoRA matrices")
    return {name: torch.stack([by_layer[i] for i in sorted(by_layer)]) for name, by_layer in sorted(found.items())}


def adapter_head(folder: str | Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The classification head an adapter saves in full (peft's ``modules_to_save``): ``(weight
    (labels, hidden), bias or None)``; left out of the updates, read apart to measure what it leaks."""
    _, state = read_adapter(folder)
    heads = [k for k, v in state.items() if "lora_" not in k and k.endswith(".weight") and v.dim() == 2]
    if len(heads) != 1:
        raise ValueError(f"adapter: {folder} saves {len(heads)} full weight matrices, not one classification head")
    return state[heads[0]].float(), (b.float() if (b := state.get(heads[0][:-len("weight")] + "bias")) is not None
                                     else None)


def preprocessing(updates: dict[str, torch.Tensor], base_model: str) -> Preprocessing:
    return Preprocessing(base_model, {name: tuple(u.shape) for name, u in updates.items()})


def branches(updates: dict[str, torch.Tensor]) -> list[torch.Tensor]:
    """The detector's input: projections of one ``(d_out, d_in)`` shape stacked as the channels of
    one branch ``(C, d_out, d_in)`` (projection-major, layer-minor); one branch per shape (a
    grouped-query model's smaller ``v``), in order of first appearance."""
    groups: dict[tuple[int, int], list[torch.Tensor]] = {}
    for update in updates.values():
        groups.setdefault(tuple(update.shape[1:]), []).append(update)
    return [torch.cat(group) for group in groups.values()]
