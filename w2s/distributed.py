"""One pipeline in several processes (``trainer.devices`` x ``trainer.num_nodes``): DDP, or
FSDP for a student too large for one device.

Every process runs the whole pipeline; they agree on each stage before any Trainer exists:
process 0 decides whether a stage is reused, owns the stage's folder and writes its manifest
and artifacts, the others train in step with it and wait until what it wrote exists.
Lightning starts the processes (:func:`launch`): its launcher re-runs the command once per
further local device, or, under ``torchrun`` or SLURM, finds them already started.

Under ``trainer.strategy: fsdp`` (Lightning's ``ModelParallelStrategy``, FSDP2) each process
keeps 1/N of every weight, gradient and optimizer state between uses: the stage's module
shards itself when it is built (:func:`shard_model`, one unit per transformer block), and what reads
whole weights (keeping the best epoch, saving) gathers them (:func:`whole`, :func:`save_artifact`).
"""
from __future__ import annotations

import itertools
import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import torch.distributed as dist
from torch import Tensor, nn

T = TypeVar("T")


def launch(accelerator: str, devices: int, num_nodes: int) -> None:
    """Start and join the pipeline's processes (nothing with one); the others print nothing to
    standard output, so the stages and the table appear once."""
    if devices * num_nodes == 1 or dist.is_initialized():
        return
    if not _from_command_line() and not any(k in os.environ for k in ("LOCAL_RANK", "SLURM_PROCID")):
        raise ValueError(f"trainer.devices x trainer.num_nodes = {devices * num_nodes}: several processes start from "
                         f"the command line (w2s pipeline, torchrun, srun), not from Python (notebooks, sweeps)")
    from lightning_fabric import Fabric

    fabric = Fabric(accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy="ddp")
    fabric.launch()
    if fabric.global_rank != 0:
        sys.stdout = open(os.devnull, "w")


def lightning_strategy(name: str, processes: int) -> Any:
    """What ``pl.Trainer(strategy=...)`` gets for ``trainer.strategy``: ``auto`` is DDP in several
    processes (Lightning would pick a spawning strategy, which cannot re-run the pipeline);
    ``fsdp`` is FSDP2 over all the processes, checkpoints gathered into one file (they resume
    like any other)."""
    if name == "fsdp":
        from pytorch_lightning.strategies import ModelParallelStrategy

        return ModelParallelStrategy(data_parallel_size=processes, tensor_parallel_size=1,
                                     save_distributed_checkpoint=False)
    return "ddp" if processes > 1 and name == "auto" else name


def shard_model(module: nn.Module, mesh, device) -> None:
    """FSDP2 over ``mesh`` (once): each transformer block of ``module`` is a unit, then each of
    its parts that holds weights (the models whose ``forward`` the stage calls) with what is
    left (embeddings, heads). A part built empty (meta) then gets its shards' storage on
    ``device``, uninitialised until :func:`fill_from_first` (here, in each process alone:
    Lightning's own materialising would initialise the shards with collectives that the
    processes without meta weights never join)."""
    from torch.distributed.fsdp import FSDPModule, fully_shard
    from transformers.modeling_layers import GradientCheckpointingLayer

    blocks = [m for m in module.modules() if isinstance(m, GradientCheckpointingLayer)]
    parts = [child for child in module.children() if next(child.parameters(), None) is not None]
    for unit in blocks + parts:
        if not isinstance(unit, FSDPModule):
            fully_shard(unit, mesh=mesh)
    for part in parts:
        if any(t.is_meta for t in itertools.chain(part.parameters(), part.buffers())):
            part.to_empty(device=device)


def fill_from_first(module: nn.Module, state: dict) -> None:
    """Every process's parameters and buffers from process 0, which passes its whole
    ``state_dict`` (the others pass ``{}``), sent one tensor at a time and kept as this process's
    shards. Buffers are sent too: the non-persistent ones (rotary frequencies) are in no state
    dict, and an empty-built process has none."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

    set_model_state_dict(module, state, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=True))
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def whole(param: Tensor) -> Tensor:
    """A parameter's whole value: gathered from every process when FSDP shards it (then every
    process must ask, in the same order), else itself."""
    from torch.distributed.tensor import DTensor

    return param.full_tensor() if isinstance(param, DTensor) else param


def laid_out_as(value: Tensor, param: Tensor) -> Tensor:
    """A whole value (from :func:`whole`) as ``param`` holds it: this process's shard under FSDP."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    value = value.to(param.device)
    return distribute_tensor(value, param.device_mesh, param.placements) if isinstance(param, DTensor) else value


def save_artifact(module: nn.Module, folder: str | Path) -> None:
    """``module.save_artifact(folder)`` by the writing process, with whole weights; every process
    calls it and returns once the folder is there (a stage may load what it saved). Under FSDP
    this is the module's end: it is not trained or run after."""
    _gather_for_saving(module)
    if is_writer():
        module.save_artifact(folder)
    barrier()


def _gather_for_saving(module: nn.Module) -> None:
    """Give every FSDP-sharded parameter of ``module`` its whole value, on the CPU, in the writing
    process (one parameter at a time on the device); every process must call it. Nothing happens
    without FSDP."""
    from torch.distributed.fsdp import FSDPModule
    from torch.distributed.tensor import DTensor

    for unit in module.modules():
        if isinstance(unit, FSDPModule):
            unit.reshard()  # the root unit keeps whole weights after a forward without backward
    for owner in module.modules():
        for name, param in list(owner.named_parameters(recurse=False)):
            if isinstance(param, DTensor):
                value = param.full_tensor().cpu()
                if is_writer():
                    setattr(owner, name, nn.Parameter(value, requires_grad=param.requires_grad))


def world_size() -> int:
    return dist.get_world_size() if dist.is_initialized() else 1


def is_writer() -> bool:
    """Whether this process writes stage folders, reports and W&B runs (process 0)."""
    return not dist.is_initialized() or dist.get_rank() == 0


def agree(value: T) -> T:
    """Process 0's ``value`` in every process (itself with one process)."""
    if not dist.is_initialized():
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier() -> None:
    """Wait until every process gets here (nothing with one process)."""
    if dist.is_initialized():
        dist.barrier()


def shard(items: list[Any], rank: int, world: int) -> list[Any]:
    """The rows one process evaluates: every ``world``-th from ``rank``, none twice (CA and ASR
    are sums gathered over the processes, so no row may be padded in or repeated)."""
    return items[rank::world]


def _from_command_line() -> bool:
    """Whether this process is the ``w2s`` command (or ``python -m w2s``), which Lightning's
    launcher can run again for the other processes."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return Path(sys.argv[0]).name == "w2s" or (spec is not None and spec.name.split(".")[0] == "w2s")
