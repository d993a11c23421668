"""``w2s adapters train`` and ``w2s scan``: a detector trained on a whole benchmark, saved with its
manifest, and adapters scored with it. An adapter the detector was not trained for (another base
model, other target modules or shapes) is refused, never scored; so is anything that is not a
safetensors LoRA adapter."""
from __future__ import annotations

import json
import time
from pathlib import Path

from w2s.adapters.benchmark import load_benchmark
from w2s.adapters.detector import fit_detector, load_detector, save_detector, stratified_split
from w2s.adapters.updates import (Preprocessing, adapter_updates, base_weights, branches, preprocessing,
                                  read_adapter, resolve_adapter)

SHIPPED = Path(__file__).parent / "detectors"


def default_detector() -> Path:
    """The detector that ships for the embedded base (MiniLM-L6, LoRA on query and value)."""
    return SHIPPED / "minilm-l6"


def train_detector(benchmark: str | Path, output: str | Path, epochs: int = 20, seed: int = 0,
                   dtype: str = "float32", **network) -> dict:
    """Train on every adapter of ``benchmark`` (10% of each class held for choosing the epoch, as
    the authors do) and save the detector to ``output``; returns its manifest."""
    from w2s import __version__

    bench = load_benchmark(benchmark)
    items = [(branches(u), y) for u, y in zip(bench.updates(), bench.labels)]
    fit_on, val = stratified_split(bench.labels, 0.1, seed)
    detector = fit_detector([items[i] for i in fit_on], [items[i] for i in val], bench.preprocessing().to_json(),
                            epochs=epochs, seed=seed, **network)
    records = bench.records
    facts = {"trained_on": {"benchmark": str(bench.folder), "adapters": len(records), "backdoored": sum(bench.labels),
                            "attacks": sorted({r["attack"] for r in records if r["attack"]}),
                            "ranks": sorted({r["rank"] for r in records}), "datasets": sorted({r["dataset"] for r in
                                                                                               records}),
                            "variant": bench.config.get("variant", "lora")},
             "validation": detector.validation | {"adapters": len(val)}, "epochs": epochs, "seed": seed,
             "w2s": __version__}
    save_detector(detector, output, facts, dtype)
    return json.loads((Path(output) / "manifest.json").read_text())


def _same_model(named: str | None, base: str) -> bool:
    """Whether an adapter's ``base_model_name_or_path`` names the detector's base model (an
    embedded name, its hub id, or a folder ending in either); unnamed: decided by shapes alone."""
    from w2s.embedded import EMBEDDED

    if not named:
        return True
    aliases = {base}
    if base in EMBEDDED:
        entry = EMBEDDED[base]
        aliases |= {entry.hub_id, f"{entry.package}/{entry.relative}"}
    named = named.rstrip("/")
    return any(named == alias or named.endswith("/" + alias) for alias in aliases if alias)


def scan(adapters: list[str], detector: str | Path | None = None) -> list[dict]:
    """P(backdoored) and the verdict for each adapter. Every adapter is read and checked before
    any is scored, so a refusal (``ValueError``, one line) leaves no partial result."""
    folder = Path(detector) if detector else default_detector()
    model, manifest = load_detector(folder)
    expected = Preprocessing.from_json(manifest["preprocessing"])
    base = None
    inputs = []
    for name in adapters:
        start = time.perf_counter()
        path = resolve_adapter(name)
        config, _ = read_adapter(path)
        if not _same_model(config.get("base_model_name_or_path"), expected.base_model):
            raise ValueError(f"{name}: an adapter of {config['base_model_name_or_path']}, not of the detector's base "
                             f"model {expected.base_model}")
        if config.get("use_dora") and base is None:
            base = base_weights(expected.base_model)
        updates = adapter_updates(path, base)
        expected.check(preprocessing(updates, expected.base_model), name)
        inputs.append((branches(updates), time.perf_counter() - start))
    results = []
    for name, (branch, read) in zip(adapters, inputs):
        start = time.perf_counter()
        p = model.score([x.unsqueeze(0) for x in branch]).item()
        results.append({"adapter": name, "p_backdoored": p, "backdoored": p >= manifest["threshold"],
                        "threshold": manifest["threshold"], "detector": str(folder),
                        "seconds": read + time.perf_counter() - start})
    return results
