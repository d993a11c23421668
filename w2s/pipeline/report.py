"""The results table: terminal, ``results.md``, ``results.csv`` and a bar chart PNG."""
from __future__ import annotations

import csv
import json
from pathlib import Path

from w2s.defenses import get_defense
from w2s.metrics.specs import columns as metric_columns
from w2s.pipeline.frontier import plot_frontier

# What each stage's manifest says beside its metrics: column -> (label, format).
FACTS = {"asr_rows": ("ASR rows", "d"), "delta_ca": ("ΔCA", "+.3f"), "delta_asr": ("ΔASR", "+.3f"),
         "trainable_params": ("trainable params", ","), "wall_s": ("wall time (s)", ".0f"),
         "peak_memory_mb": ("peak mem (MiB)", ",.0f")}
COLLAPSE = 0.98  # a model giving one class for this share of the clean test rows has collapsed
WEAK_BACKDOOR = 0.5  # clean LoRA below this ASR: the backdoor does not survive clean fine-tuning


def columns() -> tuple[str, ...]:
    """``results.csv``'s columns: the defense, every registered metric (``w2s.metrics.METRICS``, each
    ``dev_NAME`` after its metric), the stage's facts, flags."""
    return ("defense", *(column for column, _ in metric_columns()), *FACTS, "flags")


def numeric() -> tuple[str, ...]:
    return tuple(c for c in columns() if c not in ("defense", "flags"))


def result_rows(manifests: dict[str, dict], scans: dict[str, dict] | None = None) -> list[dict]:
    """One row per stage manifest (``poisoned`` first), with deltas against the poisoned student;
    ``scans``: the columns detectors add to a row (``Defense.scores``)."""
    base = manifests["poisoned"]["metrics"]
    rows = []
    for name, manifest in manifests.items():
        m = manifest["metrics"] | (scans or {}).get(name, {})
        rows.append({"defense": name} | {column: m.get(column) for column, _ in metric_columns()} |
                    {"asr_rows": manifest.get("info", {}).get("asr_rows"), "delta_ca": m["ca"] - base["ca"],
                     "delta_asr": m["asr"] - base["asr"], "trainable_params": manifest["trainable_params"],
                     "wall_s": manifest["wall_s"], "peak_memory_mb": manifest.get("peak_memory_mb"),
                     "flags": "collapsed" if m.get("majority_share", 0.0) >= COLLAPSE else ""})
    return rows


def summary(rows: list[dict]) -> dict[str, float]:
    """``<defense>/<column>`` for every number of the table (``w2s/asr``, ``w2s/ca``, ...): the
    metrics a sweep optimises (W&B run summary, ``summary.json``)."""
    columns = numeric()
    return {f"{r['defense']}/{c}": r[c] for r in rows for c in columns if r.get(c) is not None}


def notes(manifests: dict[str, dict], clean_lora: list[str]) -> list[str]:
    """Lines under the table: collapsed stages, a backdoor too weak to show unlearning, triggers
    lost to truncation, what each defense adds about itself (``Defense.notes``: a filter's
    detection rate), and why a clean-correct ASR is n/a."""
    lines = [f"warning: {name} predicts one class for {m['metrics']['majority_share']:.1%} of the clean test rows "
             f"(collapsed: its CA is the majority share and its ASR means nothing; check the learning rate, "
             f"precision, attn_implementation, or class_weights: balanced)"
             for name, m in manifests.items() if m["metrics"].get("majority_share", 0.0) >= COLLAPSE]
    for name in clean_lora:
        asr = manifests[name]["metrics"]["asr"]
        if asr < WEAK_BACKDOOR:
            lines.append(f"warning: clean LoRA ({name}) ends at ASR {asr:.3f} < {WEAK_BACKDOOR}: the backdoor does not "
                         f"survive clean fine-tuning here, so this run cannot show unlearning (poison longer, "
                         f"more rows, or a higher poison_rate)")
    stages_by_warning: dict[str, list[str]] = {}  # stages share their evaluation rows: one line per warning
    for name, m in manifests.items():
        for warning in m.get("info", {}).get("warnings", []):
            stages_by_warning.setdefault(warning, []).append(name)
    lines += [f"warning ({', '.join(names)}): {w}" for w, names in stages_by_warning.items()]
    lines += [line for name, m in manifests.items() if "defense" in m.get("config", {})
              for line in get_defense(m["config"]["defense"]["method"]).notes(name, m)]
    lines += [f"n/a: {name}'s ASR (clean-correct): {m['info']['asr_clean_correct_na']}"
              for name, m in manifests.items() if m.get("info", {}).get("asr_clean_correct_na")]
    return lines


def _number(value, fmt: str = ".3f") -> str:
    return "n/a" if value is None else format(value, fmt)


def markdown(rows: list[dict]) -> str:
    """The table: the metrics marked ``table`` that some row has (a filter's flag rates appear
    when a filter ran, dev ASR when measured), the facts, flags."""
    shown = [(column, ("dev " if column != spec.name else "") + spec.label, spec.fmt)
             for column, spec in metric_columns() if spec.table and any(r.get(column) is not None for r in rows)]
    shown += [(column, label, fmt) for column, (label, fmt) in FACTS.items()]
    lines = ["| defense | " + " | ".join(label for _, label, _ in shown) + " | flags |",
             "|---" * (len(shown) + 2) + "|"]
    lines += [f"| {r['defense']} | " + " | ".join(_number(r[c], fmt) for c, _, fmt in shown) + f" | {r['flags']} |"
              for r in rows]
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], folder: Path, title: str, lines: list[str] = ()) -> None:
    """``results.md``, ``results.csv``, ``results.png``, ``frontier.png`` (:func:`frontier`; with
    ``dev_asr`` also ``frontier_dev.png``, on the dev rows) and ``summary.json`` (:func:`summary`)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(json.dumps(summary(rows), indent=1))
    (folder / "results.md").write_text(f"# {title}\n\n{markdown(rows)}" + "".join(f"\n{n}\n" for n in lines))
    with open(folder / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns())
        writer.writeheader()
        writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    plot(rows, folder / "results.png", title)
    frontier(rows, folder / "frontier.png", title)
    defenses = [r for r in rows if r["defense"] != "poisoned" and not r["defense"].startswith("teacher")]
    if defenses and all(r.get("dev_asr") is not None and r.get("dev_ca") is not None for r in defenses):
        frontier(rows, folder / "frontier_dev.png", f"{title}, dev rows", "dev_")
    else:  # not one from an earlier run with other settings
        (folder / "frontier_dev.png").unlink(missing_ok=True)


def frontier(rows: list[dict], path: Path, title: str, prefix: str = "") -> None:
    """Each defense at (ASR among clean-correct rows, or ASR where one is n/a; CA), the Pareto
    front joined: the trade-off between settings at a glance. ``prefix`` ``dev_``: the same on the
    dev rows (``dev_asr``), which a study chooses on while it reports the test rows."""
    defenses = [r for r in rows if r["defense"] != "poisoned" and not r["defense"].startswith("teacher")]
    clean_correct = all(r.get(f"{prefix}asr_clean_correct") is not None for r in defenses)
    key = f"{prefix}asr_clean_correct" if clean_correct else f"{prefix}asr"
    plot_frontier([(r[key], r[f"{prefix}ca"]) for r in defenses], [r["defense"] for r in defenses], path, title,
                  f"{'ASR among clean-correct rows' if clean_correct else 'ASR'} (lower is better)",
                  f"{'dev ' if prefix else ''}CA (higher is better)")


def plot(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [r["defense"] for r in rows]
    x = range(len(rows))
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(rows), 3.6))
    ca = ax.bar([i - 0.2 for i in x], [r["ca"] for r in rows], 0.4, label="CA (clean accuracy)", color="#4C72B0")
    asr = ax.bar([i + 0.2 for i in x], [r["asr"] for r in rows], 0.4, label="ASR (attack success)", color="#C44E52")
    for bars in (ca, asr):
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(list(x), names)
    ax.set_ylim(0, 1.12)
    ax.set_title(title)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
