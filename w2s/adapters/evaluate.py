"""``w2s adapters eval``: the detector, the baselines and the controls on the splits PEFTGuard's
paper uses, over seeds; one table (mean and spread) and one chart.

Splits of a benchmark's adapters (a seed draws the held-out subsets and every model's init):

* ``in-distribution``: whole data subsets held out (about a quarter of the adapters), so no
  test adapter shares a data subset or a seed with a training one;
* ``without ATTACK`` (zero-shot, one per attack): trained without any adapter of that attack,
  tested on its adapters and the held-out subsets' benign ones;
* ``rank R`` (zero-shot): trained on the smaller ranks, tested on the largest;
* ``to VARIANT`` (zero-shot, one per ``--transfer`` benchmark): trained on the whole benchmark,
  tested on adapters made with another PEFT method (rsLoRA, DoRA).

Methods: PEFTGuard's network as the authors feed it (raw updates; their size, and a small one),
the small one on updates scaled to unit variance over the training adapters (the detector that
ships), spectral statistics and the per-layer norm profile with logistic regression; controls
that must sit at chance: the small scaled network on shuffled labels, and logistic regression on the rank and
alpha, or on the dataset, alone (if either predicts the label, the benchmark is confounded); and
logistic regression on the classification head alone, which the detector's input leaves out
(what it would leak if it were left in).
Metrics: accuracy at the threshold 0.5, ROC-AUC, TPR at 1% FPR."""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from statistics import mean, stdev
from typing import Callable

import numpy as np
import torch

from w2s.adapters.benchmark import Benchmark
from w2s.adapters.detector import collate, fit_detector, standard_scale, stratified_split
from w2s.adapters.spectral import head_statistics, logistic_regression, norm_profile, spectral_features
from w2s.adapters.updates import branches

SMALL = {"channels": 4, "kernel": 16, "stride": 16}  # 1.2 M parameters where the authors' size has 19 M
METRICS = ("accuracy", "auroc", "tpr_at_1fpr")


@dataclass(frozen=True)
class Split:
    name: str
    train: list[int]      # adapters of the benchmark trained on
    test: list[int]       # adapters of ``tested`` scored
    tested: Benchmark


def held_out_subsets(records: list[dict], seed: int, share: float = 0.25) -> set[str]:
    """Data subsets drawn at random until they hold ``share`` of the adapters and both classes."""
    subsets = sorted({r["subset"] for r in records})
    random.Random(seed).shuffle(subsets)
    held: set[str] = set()
    for subset in subsets:
        rows = [r for r in records if r["subset"] in held]
        if len(rows) >= share * len(records) and {r["backdoored"] for r in rows} == {False, True}:
            break
        held.add(subset)
    return held


def splits(benchmark: Benchmark, seed: int, transfers: list[Benchmark] = ()) -> list[Split]:
    records = benchmark.records
    held = held_out_subsets(records, seed)
    out = [Split("in-distribution", [i for i, r in enumerate(records) if r["subset"] not in held],
                 [i for i, r in enumerate(records) if r["subset"] in held], benchmark)]
    for attack in sorted({r["attack"] for r in records if r["backdoored"]}):
        out.append(Split(f"without {attack}",
                         [i for i, r in enumerate(records) if r["subset"] not in held and r["attack"] != attack],
                         [i for i, r in enumerate(records)
                          if r["attack"] == attack or (not r["backdoored"] and r["subset"] in held)], benchmark))
    largest = max(r["rank"] for r in records)
    if len({r["rank"] for r in records}) > 1:
        out.append(Split(f"rank {largest}", [i for i, r in enumerate(records) if r["rank"] < largest],
                         [i for i, r in enumerate(records) if r["rank"] == largest], benchmark))
    for other in transfers:
        out.append(Split(f"to {other.config.get('variant', 'lora')}", list(range(len(records))),
                         list(range(len(other.records))), other))
    return [s for s in out if {benchmark.labels[i] for i in s.train} == {0, 1}
            and {s.tested.labels[i] for i in s.test} == {0, 1}]


def tpr_at_fpr(labels: np.ndarray, scores: np.ndarray, fpr: float = 0.01) -> float:
    """The share of backdoored adapters flagged at the lowest threshold that flags at most
    ``fpr`` of the benign ones."""
    benign = np.sort(scores[labels == 0])[::-1]
    allowed = int(np.floor(fpr * len(benign)))          # benign adapters that may score above the threshold
    threshold = benign[allowed] if allowed < len(benign) else -np.inf
    return float((scores[labels == 1] > threshold).mean())


def measure(labels: list[int], scores: list[float]) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    y, s = np.asarray(labels), np.asarray(scores, dtype=float)
    return {"accuracy": float(((s >= 0.5) == y).mean()), "auroc": float(roc_auc_score(y, s)),
            "tpr_at_1fpr": tpr_at_fpr(y, s)}


Scorer = Callable[[Benchmark, list[int]], list[float]]


def _network(options: dict, scaled: bool = True, shuffle: bool = False, epochs: int = 20) -> Callable:
    def fit(benchmark: Benchmark, train: list[int], seed: int) -> Scorer:
        labels = [benchmark.labels[i] for i in train]
        if shuffle:
            random.Random(seed).shuffle(labels)
        items = [(branches(benchmark.updates()[i]), y) for i, y in zip(train, labels)]
        fit_on, val = stratified_split(labels, 0.1, seed)
        scale = standard_scale([items[i] for i in fit_on]) if scaled else 1.0
        detector = fit_detector([items[i] for i in fit_on], [items[i] for i in val], benchmark.preprocessing().to_json(),
                                epochs=epochs, seed=seed, input_scale=scale, **options).eval()

        def score(tested: Benchmark, rows: list[int]) -> list[float]:
            batch = collate([(branches(tested.updates()[i]), 0) for i in rows])
            return detector.score(batch["inputs"]).tolist()
        return score
    return fit


def _regression(features: Callable[[Benchmark, int], np.ndarray]) -> Callable:
    def fit(benchmark: Benchmark, train: list[int], seed: int) -> Scorer:
        model = logistic_regression(seed).fit(np.stack([features(benchmark, i) for i in train]),
                                              [benchmark.labels[i] for i in train])
        return lambda tested, rows: model.predict_proba(np.stack([features(tested, i) for i in rows]))[:, 1].tolist()
    return fit


def _one_hot(key: str, values: list) -> Callable[[Benchmark, int], np.ndarray]:
    return lambda benchmark, i: np.array([float(benchmark.records[i][key] == v) for v in values])


def methods(benchmark: Benchmark, epochs: int = 20) -> dict[str, Callable]:
    """Name -> ``fit(benchmark, train, seed) -> score(tested, rows)``."""
    ranks = sorted({r["rank"] for r in benchmark.records})
    alphas = sorted({r["alpha"] for r in benchmark.records})
    datasets = sorted({r["dataset"] for r in benchmark.records})
    rank_alpha = (lambda b, i: np.concatenate([_one_hot("rank", ranks)(b, i), _one_hot("alpha", alphas)(b, i)]))
    return {
        "PEFTGuard": _network({}, scaled=False, epochs=epochs),
        "PEFTGuard (small)": _network(SMALL, scaled=False, epochs=epochs),
        "PEFTGuard (small, scaled)": _network(SMALL, epochs=epochs),
        "spectral + LR": _regression(lambda b, i: spectral_features(b.updates()[i])[1].numpy()),
        "norm profile + LR": _regression(lambda b, i: norm_profile(b.updates()[i])[1].numpy()),
        "control: shuffled labels": _network(SMALL, shuffle=True, epochs=epochs),
        "control: rank and alpha": _regression(rank_alpha),
        "control: dataset": _regression(_one_hot("dataset", datasets)),
        "control: head only": _regression(lambda b, i: head_statistics(*b.heads()[i])[1].numpy()),
    }


def evaluate(benchmark: Benchmark, transfers: list[Benchmark] = (), seeds: int = 3, epochs: int = 20,
             only: list[str] | None = None, progress: Callable[[str], None] = lambda line: None) -> list[dict]:
    """One row per (split, method, seed): its metrics and the numbers of adapters."""
    for other in transfers:  # a detector reads adapters of one base model and target modules
        benchmark.preprocessing().check(other.preprocessing(), str(other.folder))
    rows = []
    chosen = {k: v for k, v in methods(benchmark, epochs).items() if only is None or k in only}
    for seed in range(seeds):
        for split in splits(benchmark, seed, transfers):
            labels = [split.tested.labels[i] for i in split.test]
            for name, fit in chosen.items():
                torch.manual_seed(seed)
                scores = fit(benchmark, split.train, seed)(split.tested, split.test)
                rows.append({"split": split.name, "method": name, "seed": seed, "train": len(split.train),
                             "test": len(split.test), "backdoored_in_test": sum(labels)} | measure(labels, scores))
                progress(f"seed {seed} {split.name:<18} {name:<26} auroc {rows[-1]['auroc']:.3f}")
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    """Mean and spread (sample standard deviation) over seeds, per split and method, in order."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["split"], row["method"]), []).append(row)
    out = []
    for (split, method), members in groups.items():
        sizes = sorted({m["test"] for m in members})  # held-out subsets differ by seed
        entry = {"split": split, "method": method, "seeds": len(members),
                 "test": str(sizes[0]) if len(sizes) == 1 else f"{sizes[0]}-{sizes[-1]}"}
        for key in METRICS:
            values = [m[key] for m in members]
            entry[key] = (mean(values), stdev(values) if len(values) > 1 else 0.0)
        out.append(entry)
    return out


def markdown(summary: list[dict]) -> str:
    lines = ["| split | method | test adapters | accuracy | ROC-AUC | TPR @ 1% FPR |", "|---|---|---|---|---|---|"]
    for s in summary:
        cells = " | ".join(f"{s[k][0]:.3f} ± {s[k][1]:.3f}" for k in METRICS)
        lines.append(f"| {s['split']} | {s['method']} | {s['test']} | {cells} |")
    return "\n".join(lines) + "\n"


def chart(summary: list[dict], path: Path) -> None:
    """ROC-AUC per split (groups) and method (bars), the spread over seeds as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    split_names = list(dict.fromkeys(s["split"] for s in summary))
    method_names = list(dict.fromkeys(s["method"] for s in summary))
    width = 0.8 / len(method_names)
    fig, ax = plt.subplots(figsize=(max(6.0, 1.4 * len(split_names)) + 2.5, 4))
    for j, method in enumerate(method_names):
        found = {s["split"]: s["auroc"] for s in summary if s["method"] == method}
        xs = [i + j * width for i, name in enumerate(split_names) if name in found]
        ax.bar(xs, [found[n][0] for n in split_names if n in found], width, yerr=[found[n][1] for n in split_names
               if n in found], label=method, capsize=2)
    ax.axhline(0.5, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(split_names))], split_names, rotation=20, ha="right")
    ax.set_ylabel("ROC-AUC (mean over seeds)")
    ax.set_ylim(0, 1.05)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
