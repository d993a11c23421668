"""Edits of a trained peft student that need no training loop: scaling its LoRA updates, and
finding its classification head and what the head reads (for a linear probe)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from students.forward import forward_with_features


def rescale_lora(model: nn.Module, factor: float) -> int:
    """Multiply every active LoRA update ``s * B A`` by ``factor`` (``B`` scaled in place, so the
    saved adapter holds the change); returns the number of layers scaled."""
    from peft.tuners.lora import LoraLayer

    scaled = 0
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, LoraLayer):
                for name in module.active_adapters:
                    if name in module.lora_B:
                        module.lora_B[name].weight.mul_(factor)
                        scaled += 1
    if not scaled:
        raise ValueError("finish.rescale: the student has no LoRA layer to rescale")
    return scaled


def classification_head(model: nn.Module) -> nn.Linear:
    """The trained copy of the head a peft sequence classifier saves (``score``, ``classifier``)."""
    from peft.utils import ModulesToSaveWrapper

    heads = [m.modules_to_save[m.active_adapter] for m in model.modules() if isinstance(m, ModulesToSaveWrapper)]
    heads = [h for h in heads if isinstance(h, nn.Linear)]
    if not heads:
        raise ValueError("finish.refit_head: the student has no trained linear classification head")
    return heads[-1]


@torch.no_grad()
def head_inputs(model: nn.Module, head: nn.Linear, input_ids: Tensor, attention_mask: Tensor,
                decoder: bool) -> Tensor:
    """``(B, H)``: what ``head`` reads for each row (a decoder's state at the token its logits are
    read from; an encoder's pooled output)."""
    seen: list[Tensor] = []
    hook = head.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    try:
        out = forward_with_features(model, input_ids, attention_mask, decoder)
    finally:
        hook.remove()
    inputs = seen[-1]
    if inputs.dim() == 3:  # every position's state: the logits are read at one
        inputs = inputs[torch.arange(inputs.shape[0], device=inputs.device), out.read_index]
    return inputs.float()


def fit_probe(head: nn.Linear, features: Tensor, labels: Tensor, l2: float,
              class_weights: Tensor | None = None, steps: int = 200) -> float:
    """Refit ``head`` in place as a linear probe: full-batch L-BFGS from its current weights on

        CE(features W^T + b, labels) + l2 * |W|^2 / 2

    (``features`` ``(N, H)``, ``labels`` ``(N,)``). Returns the final objective."""
    weight = head.weight.detach().float().clone().requires_grad_(True)
    bias = None if head.bias is None else head.bias.detach().float().clone().requires_grad_(True)
    params = [weight] + ([bias] if bias is not None else [])
    features, labels = features.float(), labels.long()
    optimizer = torch.optim.LBFGS(params, max_iter=steps, line_search_fn="strong_wolfe")

    def objective():
        optimizer.zero_grad()
        logits = features @ weight.T + (bias if bias is not None else 0.0)
        loss = nn.functional.cross_entropy(logits, labels, weight=class_weights) + l2 / 2 * weight.square().sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(objective)
        final = objective().item()
    with torch.no_grad():
        head.weight.copy_(weight.to(head.weight.dtype))
        if bias is not None:
            head.bias.copy_(bias.to(head.bias.dtype))
    return final


class AdapterBlend:
    """The student's trained LoRA (adapter ``default``) blended with another adapter of the same
    layers, held exactly in one adapter of rank ``r_own + r_other`` (scale 1):

        dW(w) = (1 - w) s_own B_own A_own + w s_other B_other A_other,   head(w) = (1 - w) head_own + w head_other

    ``A`` is the two ``A`` stacked and ``B`` the two scaled ``B`` side by side, so the saved adapter
    loads as a plain LoRA. :meth:`set` moves ``w``; ``set(0)`` computes what the trained adapter did."""

    def __init__(self, model: nn.Module, other: str):
        from peft.tuners.lora import LoraLayer

        config = model.peft_config["default"]
        if config.use_dora:
            raise ValueError("finish.blend: a DoRA adapter (a learned magnitude per weight) cannot be blended exactly")
        model.load_adapter(other, adapter_name="blend")
        self.layers = []
        for module in model.modules():
            if not isinstance(module, LoraLayer):
                continue
            if "blend" not in module.lora_A:
                raise ValueError(f"finish.blend: {other} has no LoRA on a layer the student's adapter adapts")
            a = torch.cat([module.lora_A[n].weight.detach() for n in ("default", "blend")])
            own, theirs = (module.lora_B[n].weight.detach() * module.scaling[n] for n in ("default", "blend"))
            rank = a.shape[0]
            new_a = nn.Linear(a.shape[1], rank, bias=False).to(a.device, a.dtype)
            new_b = nn.Linear(rank, own.shape[0], bias=False).to(own.device, own.dtype)
            new_a.weight.data.copy_(a)
            module.lora_A["default"], module.lora_B["default"] = new_a, new_b
            module.r["default"], module.lora_alpha["default"], module.scaling["default"] = rank, rank, 1.0
            self.layers.append((module, own, theirs))
        if not self.layers:
            raise ValueError("finish.blend: the student has no LoRA layer")
        from peft.utils import ModulesToSaveWrapper

        head = classification_head(model)
        other_head = next(m.modules_to_save["blend"] for m in model.modules()
                          if isinstance(m, ModulesToSaveWrapper) and m.modules_to_save["default"] is head)
        self.heads = [(p, p.detach().clone(), q.detach().clone()) for p, q in zip(head.parameters(),
                                                                                  other_head.parameters())]
        model.delete_adapter("blend")
        model.set_adapter("default")  # deleting re-marks what trains: the merged adapter and head, as before
        ranks = {module.r["default"] for module, _, _ in self.layers}
        if len(ranks) > 1:
            raise ValueError("finish.blend: the two adapters' ranks differ between layers (a rank pattern)")
        config.r = config.lora_alpha = ranks.pop()
        config.use_rslora, config.rank_pattern, config.alpha_pattern = False, {}, {}
        self.set(0.0)

    @torch.no_grad()
    def set(self, w: float) -> None:
        for module, own, theirs in self.layers:
            module.lora_B["default"].weight.copy_(torch.cat([(1 - w) * own, w * theirs], dim=1))
        for param, own, theirs in self.heads:
            param.copy_((1 - w) * own + w * theirs)
