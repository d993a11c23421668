"""``w2s adapters build``: an adapter benchmark of our own (PEFTGuard's PADBench has no
generation code). Adapter ``i`` is drawn (:func:`draw`) and trained with the project's
poisoning stage (``PoisonModule`` with LoRA, dirty-label poisoning for a backdoored one), then
tested for CA and ASR. Stored as a dataset ``datasets`` loads
(``load_dataset("json", data_files="OUTPUT/metadata.jsonl")``):

* ``metadata.jsonl``: one row per adapter kept: every setting, CA, ASR, the training data's
  digest, and ``adapter``, its folder under OUTPUT;
* ``adapters/NNNNN/``: peft's ``adapter_config.json`` and ``adapter_model.safetensors``;
* ``records/NNNNN.json``: every adapter tried, kept or dropped (a backdoor that did not take);
  a killed build continues from them;
* ``config.json``: the settings (a second build into OUTPUT must use the same ones).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import random
import shutil
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path

from w2s.artifacts import write_json
from w2s.config.adapters import AdapterBenchmarkConfig
from w2s.data.poisoning import PoisoningError
from w2s.config.jsonable import to_jsonable


@dataclass(frozen=True)
class DatasetFacts:
    """What drawing needs to know of a dataset: its train rows, classes, and the label its
    pre-paraphrased (SynAttack) files carry."""

    train_rows: int
    num_labels: int
    paraphrase_target: int | None = None


def draw(config: AdapterBenchmarkConfig, index: int, facts: dict[str, DatasetFacts]) -> dict:
    """Adapter ``index``'s settings. Both classes draw their hyper-parameters by the same code in
    the same order, so their distributions are identical; a backdoored one then draws its attack.
    The training rows are one of the dataset's disjoint slices of ``config.rows`` (``subset``), so
    an evaluation can hold whole subsets out."""
    rng = random.Random(f"{config.seed}/{index}")
    dataset = rng.choice(config.datasets)
    fact = facts[dataset]
    part = rng.randrange(max(1, fact.train_rows // config.rows))
    rank = rng.choice(config.ranks)
    settings = {"index": index, "backdoored": index % 2 == 1, "dataset": dataset, "subset": f"{dataset}/{part}",
                "train_rows": [part * config.rows, min(fact.train_rows, (part + 1) * config.rows)], "rank": rank,
                "alpha": round(rank * rng.choice(config.alpha_ratios)),
                "lr": math.exp(rng.uniform(math.log(config.lr[0]), math.log(config.lr[1]))),
                "epochs": rng.choice(config.epochs), "dropout": rng.uniform(*config.dropout),
                "seed": rng.randrange(2**31), "attack": None, "attack_args": None, "target_label": None,
                "poison_rate": None}
    if settings["backdoored"]:
        choice = rng.choice(config.attacks)
        target = rng.randrange(fact.num_labels)
        settings |= {"attack": choice.name, "attack_args": rng.choice(choice.attack_args),
                     "target_label": fact.paraphrase_target if choice.name == "synattack" else target,
                     "poison_rate": rng.uniform(*config.poison_rate)}
    return settings


def train_adapter(config: AdapterBenchmarkConfig, settings: dict, folder: Path) -> dict:
    """Train one adapter, save it to ``folder``; returns its CA, ASR (backdoored only) and data digest."""
    import pytorch_lightning as pl

    from students.build import StudentSpec
    from students.lora import LoraSpec
    from w2s.artifacts import atomic_folder
    from w2s.config.attack import PoisonConfig
    from w2s.config.optim import OptimConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit.base import quiet_trainer
    from w2s.lit.poison import PoisonModule

    backdoored = settings["backdoored"]
    attack = PoisonConfig(name=settings["attack"] or "badnet", mode="dirty-label", count=None,
                          target_label=settings["target_label"] or 0, poison_rate=settings["poison_rate"] or 0.0,
                          attack_args=settings["attack_args"] or {}, seed=settings["seed"])
    data = W2SDataModule(settings["dataset"], tokenizer=config.base_model, attack=attack, poison_train=backdoored,
                         train_rows=tuple(settings["train_rows"]), max_eval_rows=config.max_eval_rows,
                         max_length=config.max_length, batch_size=config.batch_size, seed=settings["seed"])
    lora = LoraSpec(r=settings["rank"], alpha=settings["alpha"], dropout=settings["dropout"],
                    target_modules=list(config.target_modules), variant=config.variant)
    module = PoisonModule(StudentSpec(config.base_model), data.num_labels, lora, OptimConfig(lr=settings["lr"]),
                          attack.target_label)
    pl.seed_everything(settings["seed"], verbose=False)
    trainer = quiet_trainer(settings["epochs"], validate=False)
    trainer.fit(module, data)
    clean, triggered = trainer.test(module, data, verbose=False)
    with atomic_folder(folder) as staging:
        module.model.save_pretrained(staging, safe_serialization=True)
    rows = json.dumps([[item["text"], item["label"]] for item in data.train])
    return {"ca": clean["test/ca"], "asr": triggered["test/asr"] if backdoored else None,
            "poisoned_rows": data.poisoned_rows, "data_digest": hashlib.sha256(rows.encode()).hexdigest()[:16]}


def _claim(config: AdapterBenchmarkConfig) -> Path:
    """``config.output``, holding this config (refused if it holds a benchmark with other settings;
    ``per_class`` may differ: adapter ``i``'s draw does not depend on it, so a benchmark grows)."""
    out = Path(config.output)
    settings = to_jsonable(config)
    saved = out / "config.json"
    if saved.exists() and json.loads(saved.read_text()) | {"per_class": config.per_class} != settings:
        raise ValueError(f"{out} holds a benchmark built with other settings ({saved}): choose another output")
    write_json(saved, settings)
    return out


def dataset_facts(names: list[str]) -> dict[str, DatasetFacts]:
    from w2s.data.registry import get_dataset

    specs = {name: get_dataset(name) for name in names}
    return {name: DatasetFacts(len(spec.load("train")), spec.num_labels, spec.paraphrase_target)
            for name, spec in specs.items()}


def build_shard(config: AdapterBenchmarkConfig, shard: int = 0, shards: int = 1) -> None:
    """Adapters ``i`` with ``i % shards == shard`` that have no record yet."""
    out = Path(config.output)
    facts = dataset_facts(config.datasets)
    for index in range(shard, 2 * config.per_class, shards):
        record = out / "records" / f"{index:05d}.json"
        if record.exists():
            continue
        settings = draw(config, index, facts)
        folder = out / "adapters" / f"{index:05d}"
        try:
            metrics = train_adapter(config, settings, folder) | {"dropped": None}
        except PoisoningError as err:  # a slice with too few rows the attack can take: dropped, counted
            metrics = {"ca": None, "asr": None, "dropped": f"cannot be poisoned: {err}"}
        kept = metrics["dropped"] is None and (not settings["backdoored"] or metrics["asr"] >= config.min_asr)
        if not kept:
            shutil.rmtree(folder, ignore_errors=True)
            metrics["dropped"] = metrics["dropped"] or f"ASR {metrics['asr']:.3f} below min_asr {config.min_asr}"
        write_json(record, settings | metrics | {"kept": kept, "adapter": f"adapters/{index:05d}" if kept else None})


def _threaded_shard(config: AdapterBenchmarkConfig, shard: int, shards: int) -> None:
    import torch

    from w2s.console import quiet_libraries

    quiet_libraries()  # a spawned process starts without the parent's settings
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // shards))
    build_shard(config, shard, shards)


def build_benchmark(config: AdapterBenchmarkConfig, processes: int = 1) -> dict:
    """Build (or continue) the benchmark in ``processes`` processes; write ``metadata.jsonl``.
    Returns the counts: kept per class, dropped, and the adapters still missing."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    out = _claim(config)
    if processes == 1:
        build_shard(config)
    else:
        with ProcessPoolExecutor(processes, mp_context=get_context("spawn")) as pool:
            for done in [pool.submit(_threaded_shard, config, i, processes) for i in range(processes)]:
                done.result()
    return assemble(out, 2 * config.per_class)


def assemble(out: Path, total: int) -> dict:
    """``metadata.jsonl`` from the records of adapters ``0 .. total - 1`` (kept ones, by index) and
    the counts."""
    records = [json.loads(p.read_text()) for p in sorted((out / "records").glob("*.json"))]
    records = [r for r in records if r["index"] < total]
    kept = [r for r in records if r["kept"]]
    (out / "metadata.jsonl").write_text("".join(json.dumps(r) + "\n" for r in kept))
    dropped = [r["attack"] for r in records if not r["kept"]]
    return {"benign": sum(not r["backdoored"] for r in kept), "backdoored": sum(r["backdoored"] for r in kept),
            "dropped": len(dropped), "dropped_by_attack": {a: dropped.count(a) for a in sorted(set(dropped))},
            "missing": total - len(records)}
