"""The trial table of a sweep, best first: terminal, ``sweep.md``, ``sweep.csv`` and the
frontier chart (``sweep.png``: each trial's CA against its ASR, the Pareto front marked)."""
from __future__ import annotations

import csv
import math
from pathlib import Path

from w2s.pipeline.frontier import plot_frontier
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


def write_table(rows: list[dict], folder: Path, stem: str, title: str) -> str:
    """``STEM.md`` and ``STEM.csv``; return the text printed to the terminal (without the
    ``written:`` line)."""
    table = markdown(rows) if rows else "(no trials)\n"
    (folder / f"{stem}.md").write_text(f"# {title}\n\n{table}")
    with open(folder / f"{stem}.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=_columns(rows) or ["trial"])
        writer.writeheader()
        writer.writerows(rows)
    return f"\n{title}\n\n{table}"


def write_trials(rows: list[dict], spec: SweepSpec, folder: Path) -> str:
    """Write the table and chart; return the text printed to the terminal."""
    title = f"sweep {spec.name}: {spec.method}, {spec.goal} {spec.metric} ({len(rows)} trials, best first)"
    text = write_table(rows, folder, "sweep", title)
    plot(rows, spec, folder / "sweep.png")
    return f"{text}\nwritten: {folder / 'sweep.md'}, {folder / 'sweep.csv'}, {folder / 'sweep.png'}"


def plot(rows: list[dict], spec: SweepSpec, path: Path) -> None:
    """Each finished trial at (ASR among clean-correct rows, or ASR; CA) of the metric's stage,
    numbered; the Pareto front joined, the best trial by the metric ringed."""
    stage = spec.stage
    done = [r for r in rows if r[spec.metric] is not None and r.get(f"{stage}/ca") is not None]
    asr = f"{stage}/asr_clean_correct" if all(r.get(f"{stage}/asr_clean_correct") is not None for r in done) \
        else f"{stage}/asr"
    done = [r for r in done if r.get(asr) is not None]
    plot_frontier([(r[asr], r[f"{stage}/ca"]) for r in done], [str(r["trial"]) for r in done], path,
                  f"sweep {spec.name} ({spec.method}, {len(done)} finished trials)\n"
                  f"ringed: the best by {spec.goal} {spec.metric}", f"{asr} (lower is better)",
                  f"{stage}/ca (higher is better)", ringed=0 if done else None)
