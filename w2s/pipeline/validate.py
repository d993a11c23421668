"""Everything a pipeline config can get wrong, checked before any training: row ranges and
labels against the data, every model name (a missing folder says so), the output folders and
the disk space the artifacts need. Each problem is one ``ValueError`` naming the key (the CLI
prints it on one line and exits 2), raised before anything is written."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from students.build import check_head
from w2s.config.jsonable import to_jsonable
from w2s.pipeline.config import PipelineConfig, overlap
from w2s.data.registry import dataset_name, get_dataset
from w2s.embedded import resolve_model

WEIGHT_FILES = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
SAFE_WEIGHTS = ("*.safetensors", "*.gguf")  # read without pickle; .bin/.pt/.pth/.ckpt are refused
SPARE = 1.5  # the artifacts' estimate times this must be free (logs, staging copies, checkpoints)


def validate(config: PipelineConfig) -> None:
    classes = _rows_and_labels(config)
    for key, name in model_names(config).items():
        model = check_model(key, name, config.student.trust_remote_code)
        if key == "student.name":
            try:
                check_head(name, model, classes)
            except ValueError as err:
                raise ValueError(f"{key}: {err}") from None
    for key in ("runs_dir", "report_dir"):
        if getattr(config, key):
            writable_folder(key, Path(getattr(config, key)))
    _disk_space(config)


def dataset_key(dataset) -> str:
    """A dataset (name, folder or hub mapping) as a string key."""
    return dataset if isinstance(dataset, str) else json.dumps(to_jsonable(dataset), sort_keys=True)


def _rows_and_labels(config: PipelineConfig) -> int:
    """Row ranges within their train split; the target label a class of the data; poisoning
    data with the same classes as the experiment's. Returns the number of classes."""
    poison_data = config.poison.dataset or config.dataset
    ranges = {"poison.train_rows": (poison_data, config.poison.train_rows),
              "teacher.train_rows": (config.dataset, config.teacher.train_rows),
              "defense_rows": (config.dataset, config.defense_rows),
              "defense_dev_rows": (config.dataset, config.defense_dev_rows)}
    ranges |= {f"defenses.{name}.teacher.train_rows": (config.dataset, d.teacher.train_rows)
               for name, d in config.defenses.items() if d.teacher is not None}
    specs = {dataset_key(d): get_dataset(d) for d in (config.dataset, poison_data)}
    sizes = {key: len(spec.load("train")) for key, spec in specs.items()}
    for key, (dataset, rows) in ranges.items():
        size = sizes[dataset_key(dataset)]
        if rows is not None and not 0 <= rows[0] < rows[1] <= size:
            raise ValueError(f"{key}: {list(rows)} is not a range [start, stop) within the {size} train rows "
                             f"of {dataset_name(dataset)}")
    _defender_rows_apart(config, sizes[dataset_key(config.dataset)])
    classes = specs[dataset_key(config.dataset)].num_labels
    if config.attack.target_label >= classes:
        raise ValueError(f"attack.target_label: {config.attack.target_label} is not a class of "
                         f"{dataset_name(config.dataset)} ({classes} classes: 0-{classes - 1})")
    if specs[dataset_key(poison_data)].num_labels != classes:
        raise ValueError(f"poison.dataset: {dataset_name(poison_data)} has {specs[dataset_key(poison_data)].num_labels} "
                         f"classes, {dataset_name(config.dataset)} has {classes}: poisoning and defense data must "
                         f"share their classes")
    return classes


def _defender_rows_apart(config: PipelineConfig, size: int) -> None:
    """Weight poisoning, then clean fine-tuning: the defender's rows are not the attacker's. Rows
    of one dataset that both stages read are refused unless ``defense_data_poisoned`` says the
    defender's data is poisoned (the other threat model)."""
    if config.defense_data_poisoned or dataset_key(config.poison.dataset or config.dataset) != dataset_key(
            config.dataset):
        return
    poison, defense = (rows or (0, size) for rows in (config.poison.train_rows, config.defense_rows))
    if overlap(poison, defense):
        raise ValueError(f"defense_rows: {list(defense)} overlap poison.train_rows {list(poison)} of "
                         f"{dataset_name(config.dataset)} (null is every train row): the defender would fine-tune on "
                         f"the attacker's rows; choose disjoint rows, or set defense_data_poisoned: true if that is "
                         f"the threat model")


def model_names(config: PipelineConfig) -> dict[str, str]:
    """Every model the run loads, by its key."""
    names = {"student.name": config.student.name}
    for name, teacher in config.defense_teachers().items():
        key = "teacher.model" if config.defenses[name].teacher is None else f"defenses.{name}.teacher.model"
        names[key] = teacher.model
    return names


def looks_local(name: str) -> bool:
    """A path rather than a hub id (``namespace/repo`` has one slash and no leading ``/ . ~``)."""
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or Path(name).exists()


def check_model(key: str, name: str, trust_remote_code: bool = False):
    """``name`` is an embedded model, a model folder or a hub id whose config loads (from the
    cache when offline); reads the config only, and returns it."""
    from transformers import AutoConfig

    try:
        path = resolve_model(name)
    except ValueError as err:
        raise ValueError(f"{key}: {err}") from None
    if looks_local(path):
        path = str(Path(path).expanduser())
        if not Path(path).is_dir():
            raise ValueError(f"{key}: no model folder {path} ({'a file' if Path(path).exists() else 'not found'})")
        if not (Path(path) / "config.json").is_file():
            raise ValueError(f"{key}: {path} is not a model folder (no config.json)")
        if not any(any(Path(path).glob(pattern)) for pattern in SAFE_WEIGHTS):
            raise ValueError(f"{key}: {path} holds no .safetensors weights; pickled weights (.bin, .pt) are "
                             f"refused, since loading them can run code (convert them once where you trust them: "
                             f"save_pretrained(..., safe_serialization=True))")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split())[:200]
        raise ValueError(f"{key}: {name!r} is neither a model folder nor a Hugging Face model id that "
                         f"loads here ({reason})") from None


def writable_folder(key: str, folder: Path) -> None:
    """``folder`` exists as a writable directory, or can be created (its nearest existing
    ancestor is one)."""
    existing = _existing(folder)
    if not existing.is_dir():
        raise ValueError(f"{key}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"{key}: {existing} is not writable")


def _existing(folder: Path) -> Path:
    """``folder`` or its nearest existing ancestor."""
    while not folder.exists():
        folder = folder.parent
    return folder


def weights_bytes(name: str) -> int:
    """The size of a model's weight files (0 when it is not a local folder)."""
    try:
        folder = Path(resolve_model(name)).expanduser()
    except ValueError:
        return 0
    if not folder.is_dir():
        return 0
    return sum(p.stat().st_size for pattern in WEIGHT_FILES for p in folder.glob(pattern))


def _disk_space(config: PipelineConfig) -> None:
    """Enough free space under ``runs_dir`` for what the run writes: the poisoned student
    (full precision: at most twice its source files), each teacher, each defense's adapter (at
    most the student's size), and the largest resumable checkpoint."""
    teachers = set(config.defense_teachers().values())
    student = weights_bytes(config.student.name)
    needed = 2 * student + sum(weights_bytes(t.model) for t in teachers) + len(config.defenses) * student
    if config.trainer.checkpoint_every:  # the poisoning stage's resumable checkpoint: weights and two Adam moments
        needed += 3 * student
    folder = _existing(Path(config.runs_dir))
    free = shutil.disk_usage(folder).free
    if needed * SPARE > free:
        raise ValueError(f"runs_dir: the run writes about {needed / 2**30:.1f} GiB of artifacts and {folder} "
                         f"has {free / 2**30:.1f} GiB free")
