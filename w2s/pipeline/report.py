"""The results table: terminal, ``results.md``, ``results.csv`` and a bar chart PNG."""
from __future__ import annotations

import csv
from pathlib import Path

COLUMNS = ("defense", "ca", "asr", "delta_ca", "delta_asr", "asr_clean_correct", "trainable_params", "wall_s")
COLLAPSE = 0.98  # a model giving one class for this share of the clean test rows has collapsed


def result_rows(manifests: dict[str, dict]) -> list[dict]:
    """One row per stage manifest (``poisoned`` first), with deltas against the poisoned student."""
    base = manifests["poisoned"]["metrics"]
    rows = []
    for name, manifest in manifests.items():
        m = manifest["metrics"]
        rows.append({"defense": name, "ca": m["ca"], "asr": m["asr"], "delta_ca": m["ca"] - base["ca"],
                     "delta_asr": m["asr"] - base["asr"], "asr_clean_correct": m.get("asr_clean_correct"),
                     "trainable_params": manifest["trainable_params"], "wall_s": manifest["wall_time_s"]})
    return rows


def collapse_warnings(manifests: dict[str, dict]) -> list[str]:
    """Lines naming the stages whose predictions collapsed to (almost) one class."""
    return [f"warning: {name} predicts one class for {m['metrics']['majority_share']:.1%} of the clean test rows "
            f"(collapsed? check the learning rate, precision and attn_implementation)"
            for name, m in manifests.items() if m["metrics"].get("majority_share", 0.0) >= COLLAPSE]


def markdown(rows: list[dict]) -> str:
    lines = ["| defense | CA | ASR | ΔCA | ΔASR | ASR (clean-correct) | trainable params | wall time (s) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        cc = "n/a" if r["asr_clean_correct"] is None else f"{r['asr_clean_correct']:.3f}"
        lines.append(f"| {r['defense']} | {r['ca']:.3f} | {r['asr']:.3f} | {r['delta_ca']:+.3f} | "
                     f"{r['delta_asr']:+.3f} | {cc} | {r['trainable_params']:,} | {r['wall_s']:.0f} |")
    return "\n".join(lines) + "\n"


def write_report(rows: list[dict], folder: Path, title: str, notes: list[str] = ()) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "results.md").write_text(f"# {title}\n\n{markdown(rows)}" + "".join(f"\n{n}\n" for n in notes))
    with open(folder / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in r.items()} for r in rows)
    plot(rows, folder / "results.png", title)


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
