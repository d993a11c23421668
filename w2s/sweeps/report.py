"""The trial table of a sweep, best first: terminal, ``sweep.md``, ``sweep.csv`` and the
frontier chart (``sweep.png``: each trial's CA against its ASR, the Pareto front marked)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from w2s.sweeps.spec import SweepSpec

SHOWN = ("ca", "asr", "asr_clean_correct")  # the metric's stage's columns shown beside the metric


def trial_rows(trials, spec: SweepSpec) -> list[dict]:
    """One row per trial: number, state, the searched values, the metric and the metric stage's
    CA / ASR; finished trials first, best first."""
    stage = spec.stage
    rows = []
    for t in trials:
        summary = t.user_attrs.get("summary", {})
        duration = t.duration.total_seconds() if t.duration else None
        row = {"trial": t.number, "state": t.state.name.lower(), **t.user_attrs.get("values", {}),
               spec.metric: t.value}
        row |= {f"{stage}/{c}": summary.get(f"{stage}/{c}") for c in SHOWN if f"{stage}/{c}" != spec.metric}
        rows.append(row | {"wall_s": duration, "error": t.user_attrs.get("error", "")})
    sign = 1 if spec.goal == "minimize" else -1
    return sorted(rows, key=lambda r: (r[spec.metric] is None, sign * (r[spec.metric] or 0), r["trial"]))


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _columns(rows: list[dict]) -> list[str]:
    return list(dict.fromkeys(k for r in rows for k in r))


def markdown(rows: list[dict]) -> str:
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_trials(rows: list[dict], spec: SweepSpec, folder: Path) -> str:
    """Write the table and chart; return the text printed to the terminal."""
    title = f"sweep {spec.name}: {spec.method}, {spec.goal} {spec.metric} ({len(rows)} trials, best first)"
    table = markdown(rows) if rows else "(no trials)\n"
    (folder / "sweep.md").write_text(f"# {title}\n\n{table}")
    with open(folder / "sweep.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows) or ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    plot(rows, spec, folder / "sweep.png")
    return f"\n{title}\n\n{table}\nwritten: {folder / 'sweep.md'}, {folder / 'sweep.csv'}, {folder / 'sweep.png'}"


def pareto(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the (ASR, CA) points no other point beats: none has ASR <= and CA >= with one
    of them strictly (lower ASR and higher CA are better)."""
    return [i for i, (asr, ca) in enumerate(points)
            if not any(a <= asr and c >= ca and (a, c) != (asr, ca) for a, c in points)]


def plot(rows: list[dict], spec: SweepSpec, path: Path) -> None:
    """Each finished trial at (ASR among clean-correct rows, or ASR; CA) of the metric's stage,
    numbered; the Pareto front joined, the best trial by the metric ringed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stage = spec.stage
    done = [r for r in rows if r[spec.metric] is not None and r.get(f"{stage}/ca") is not None]
    asr = f"{stage}/asr_clean_correct" if all(r.get(f"{stage}/asr_clean_correct") is not None for r in done) \
        else f"{stage}/asr"
    done = [r for r in done if r.get(asr) is not None]
    points = [(r[asr], r[f"{stage}/ca"]) for r in done]
    fig, ax = plt.subplots(figsize=(5.5, 4.2))
    ax.scatter([x for x, _ in points], [y for _, y in points], color="#4C72B0", s=30, zorder=3)
    for r, (x, y) in zip(done, points):
        ax.annotate(str(r["trial"]), (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
    front = sorted(points[i] for i in pareto(points))
    if front:
        ax.plot(*zip(*front), color="#55A868", zorder=2, label="Pareto front")
        ax.scatter(*points[0], s=140, facecolors="none", edgecolors="#C44E52", zorder=4)
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel(f"{asr} (lower is better)")
    ax.set_ylabel(f"{stage}/ca (higher is better)")
    ax.set_xlim(-0.03, 1.03)
    ax.set_title(f"sweep {spec.name} ({spec.method}, {len(done)} finished trials)\n"
                 f"ringed: the best by {spec.goal} {spec.metric}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
