"""One pipeline in several processes (``trainer.devices`` x ``trainer.num_nodes``, DDP).

Every process runs the whole pipeline; they agree on each stage before any Trainer exists:
process 0 decides whether a stage is reused, owns the stage's folder and writes its manifest
and artifacts, the others train in step with it and wait until what it wrote exists.
Lightning starts the processes (:func:`launch`): its launcher re-runs the command once per
further local device, or, under ``torchrun`` or SLURM, finds them already started.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, TypeVar

import torch.distributed as dist

T = TypeVar("T")
STRATEGIES = ("auto", "ddp", "ddp_find_unused_parameters_true")  # what a multi-process pipeline accepts


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
