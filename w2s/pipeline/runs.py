"""Stage folders under ``runs/<experiment>/<stage>/``: a manifest, reuse when the inputs did
not change, atomic writes, one writer at a time, resumable checkpoints."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import platform
import resource
import shutil
import time
from contextlib import contextmanager
from functools import lru_cache
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, Iterator

import torch
from filelock import FileLock, Timeout

from w2s import distributed
from w2s.artifacts import atomic_folder
from w2s.config.jsonable import fingerprint, to_jsonable

MANIFEST = "manifest.json"
PACKAGES = ("w2s", "torch", "transformers", "peft", "pytorch-lightning", "bitsandbytes", "datasets")
SOURCE_PACKAGES = ("w2s", "teachers", "students")  # the code a stage's result depends on


@lru_cache(maxsize=1)
def code_version() -> str:
    """``VERSION+HASH``: the package version and a hash of every source file of the project's
    packages, so that a code change retrains a stage instead of reusing a stale one."""
    import w2s

    root = Path(w2s.__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(p for package in SOURCE_PACKAGES for p in (root / package).rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return f"{w2s.__version__}+{digest.hexdigest()[:12]}"


def versions() -> dict[str, str]:
    found = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return found


def reset_peak_memory() -> None:
    """Start a new peak: accelerator statistics, or Linux's peak resident set (``clear_refs``)."""
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:  # not Linux: the process's peak since it started
        pass


def peak_memory_mb() -> float:
    """Peak accelerator memory if one is in use, else the process's peak resident memory since
    :func:`reset_peak_memory` (Linux) or since it started."""
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 2**20
    try:
        status = Path("/proc/self/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")) / 1024
    except (OSError, StopIteration):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@dataclass
class StageRun:
    """What a stage body fills in while running in its staging folder."""

    folder: Path
    metrics: dict[str, float | None] = dataclasses.field(default_factory=dict)
    trainable_params: int = 0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # counts and warnings about the data
    wandb: Any = None  # the invocation's W&B run (w2s.pipeline.tracking), or None
    checkpoints: Path | None = None  # resumable checkpoints, one folder per fit (w2s.pipeline.stages)
    writer: bool = True  # False in the processes beside process 0, which write nothing (w2s.distributed)

    def save(self, module: Any, name: str) -> None:
        """``module``'s artifact in ``folder/name`` (``w2s.distributed.save_artifact``: the stage's end)."""
        distributed.save_artifact(module, self.folder / name)


def load_manifest(folder: Path) -> dict | None:
    path = folder / MANIFEST
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


@contextmanager
def stage(folder: Path, name: str, config: Any, inputs: dict[str, str], seed: int) -> Iterator[StageRun | None]:
    """Yield ``None`` when ``folder`` already holds this stage with the same key (reuse it);
    otherwise a :class:`StageRun` in a staging folder that becomes ``folder`` with its
    manifest only when the body finishes.

    One process at a time trains a folder: the others wait on its file lock, then reuse what it
    wrote. Checkpoints go to a folder named by the key beside ``folder``, kept until the stage
    finishes, so the same command after a kill resumes from them (``StageRun.checkpoints``).
    In a multi-process run (``w2s.distributed``) process 0 decides and writes; the others train
    in its staging folder without writing, and every process waits until the folder is in place."""
    key = fingerprint({"stage": name, "config": config, "inputs": inputs, "seed": seed, "code": code_version()})
    folder.parent.mkdir(parents=True, exist_ok=True)
    writer = distributed.is_writer()  # the other processes of a multi-process run follow its decisions
    lock = FileLock(folder.parent / f".{folder.name}.lock")
    if writer:
        try:
            lock.acquire(timeout=0)
        except Timeout:
            print(f"w2s: {name}: another run is training it, waiting ({lock.lock_file})", flush=True)
            lock.acquire()
    try:
        existing = load_manifest(folder) if writer else None
        if distributed.agree(existing is not None and existing.get("key") == key):
            yield None
            return
        checkpoints = folder.parent / f".{folder.name}.resume-{key}"
        if not writer:
            yield StageRun(Path(distributed.agree(None)), checkpoints=checkpoints, writer=False)
            distributed.barrier()  # until process 0 has put the folder in place
            return
        for stale in folder.parent.glob(f".{folder.name}.resume-*"):  # of settings that changed since
            if stale != checkpoints:
                shutil.rmtree(stale, ignore_errors=True)
        started = time.time()
        reset_peak_memory()
        with atomic_folder(folder) as staging:
            run = StageRun(Path(distributed.agree(str(staging))), checkpoints=checkpoints)
            yield run
            manifest = {"stage": name, "key": key, "config": to_jsonable(config), "inputs": inputs, "seed": seed,
                        "code": code_version(), "versions": versions(), "metrics": run.metrics, "info": run.info,
                        "trainable_params": run.trainable_params, "processes": distributed.world_size(),
                        "wall_s": round(time.time() - started, 1), "peak_memory_mb": round(peak_memory_mb(), 1),
                        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=2))
        shutil.rmtree(checkpoints, ignore_errors=True)
        distributed.barrier()
    finally:
        if writer:
            lock.release()
