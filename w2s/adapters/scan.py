"""``w2s adapters train`` and ``w2s scan``: a detector trained on a whole benchmark, saved with its
manifest, and adapters scored with it. An adapter the detector was not trained for (another base
model, other target modules or shapes) is refused, never scored; so is anything that is not a
safetensors LoRA adapter."""
from __future__ import annotations

import time
from pathlib import Path

from w2s.adapters.benchmark import load_benchmark
from w2s.adapters.detector import fit_detector, load_detector, save_detector, standard_scale, stratified_split
from w2s.adapters.manifest import default_detector, same_model
from w2s.adapters.updates import (Preprocessing, adapter_updates, base_weights, branches, preprocessing,
                                  read_adapter, resolve_adapter)


def train_detector(benchmark: str | Path, output: str | Path, epochs: int = 20, seed: int = 0,
                   dtype: str = "float32", standardize: bool = True, **network) -> dict:
    """Train on every adapter of ``benchmark`` (10% of each class held for choosing the epoch, as
    the authors do) and save the detector to ``output``; returns its manifest. ``standardize``:
    scale the inputs to unit variance over the training adapters (the factor is the manifest's
    ``network.input_scale``; the authors feed raw updates)."""
    from w2s import __version__

    bench = load_benchmark(benchmark)
    items = [(branches(u), y) for u, y in zip(bench.updates(), bench.labels)]
    fit_on, val = stratified_split(bench.labels, 0.1, seed)
    scale = standard_scale([items[i] for i in fit_on]) if standardize else 1.0
    detector = fit_detector([items[i] for i in fit_on], [items[i] for i in val], bench.preprocessing().to_json(),
                            epochs=epochs, seed=seed, input_scale=scale, **network)
    records = bench.records
    facts = {"trained_on": {"benchmark": str(bench.folder), "adapters": len(records), "backdoored": sum(bench.labels),
                            "attacks": sorted({r["attack"] for r in records if r["attack"]}),
                            "ranks": sorted({r["rank"] for r in records}), "datasets": sorted({r["dataset"] for r in
                                                                                               records}),
                            "variant": bench.config.get("variant", "lora")},
             "validation": detector.validation | {"adapters": len(val)}, "epochs": epochs, "seed": seed,
             "w2s": __version__}
    return save_detector(detector, output, facts, dtype)


class Scanner:
    """A detector (a folder ``w2s adapters train`` wrote; None: the one that ships) and what it
    takes to turn an adapter into its input."""

    def __init__(self, detector: str | Path | None = None):
        self.folder = Path(detector) if detector else default_detector()
        self.model, self.manifest = load_detector(self.folder)
        self.expected = Preprocessing.from_json(self.manifest["preprocessing"])
        self._base: dict | None = None

    def read(self, name: str | Path, check_base: bool = True) -> list:
        """The adapter's input branches; refused (``ValueError``) unless it is a safetensors LoRA
        adapter of the detector's base model (``check_base=False``: the caller knows it is, e.g.
        an adapter on a poisoned copy of it) with the detector's projections and shapes."""
        path = resolve_adapter(name)
        config, _ = read_adapter(path)
        if check_base and not same_model(config.get("base_model_name_or_path"), self.expected.base_model):
            raise ValueError(f"{name}: an adapter of {config['base_model_name_or_path']}, not of the detector's base "
                             f"model {self.expected.base_model}")
        if config.get("use_dora") and self._base is None:
            self._base = base_weights(self.expected.base_model)
        updates = adapter_updates(path, self._base)
        self.expected.check(preprocessing(updates, self.expected.base_model), str(name))
        return branches(updates)

    def score(self, inputs: list) -> float:
        """P(backdoored)."""
        return self.model.score([x.unsqueeze(0) for x in inputs]).item()

    def result(self, name: str, p: float, seconds: float) -> dict:
        return {"adapter": str(name), "p_backdoored": p, "backdoored": p >= self.manifest["threshold"],
                "threshold": self.manifest["threshold"], "detector": str(self.folder), "seconds": seconds}


def scan(adapters: list[str], detector: str | Path | None = None) -> list[dict]:
    """P(backdoored) and the verdict for each adapter. Every adapter is read and checked before
    any is scored, so a refusal (``ValueError``, one line) leaves no partial result."""
    scanner = Scanner(detector)
    inputs = []
    for name in adapters:
        start = time.perf_counter()
        inputs.append((scanner.read(name), time.perf_counter() - start))
    results = []
    for name, (branch, read) in zip(adapters, inputs):
        start = time.perf_counter()
        p = scanner.score(branch)
        results.append(scanner.result(name, p, read + time.perf_counter() - start))
    return results
