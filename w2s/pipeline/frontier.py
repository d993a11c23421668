"""The frontier chart: clean accuracy against attack success, one point per setting, the Pareto
front joined (sweeps: one point per trial; a pipeline report: one per defense)."""
from __future__ import annotations

from pathlib import Path


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (ASR, CA) points no other point beats: none has ASR <= and CA >= with one
    of them strictly (lower ASR and higher CA are better)."""
    return [i for i, (asr, ca) in enumerate(points)
            if not any(a <= asr and c >= ca and (a, c) != (asr, ca) for a, c in points)]


def plot_frontier(points: list[tuple[float, float]], labels: list[str], path: Path, title: str, xlabel: str,
                  ylabel: str = "CA (higher is better)", ringed: int | None = None) -> None:
    """Each (ASR, CA) point labelled, the Pareto front joined, ``ringed`` (an index) circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter([x for x, _ in points], [y for _, y in points], color="#4C72B0", s=30, zorder=3)
    for label, (x, y) in zip(labels, points):
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted(points[i] for i in pareto(points))
    if front:
        ax.plot(*zip(*front), color="#55A868", zorder=2, label="Pareto front")
        ax.legend(fontsize=8, loc="lower right")
    if ringed is not None and points:
        ax.scatter(*points[ringed], s=140, facecolors="none", edgecolors="#C44E52", zorder=4)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
