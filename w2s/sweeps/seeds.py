"""Mean and spread over seeds. A sweep with a ``seed`` parameter is also summarised per setting
of its other parameters (``seeds.md`` / ``seeds.csv``): for every row of the trials' results
tables (clean LoRA, W2S, ...) its CA, clean-correct ASR and ASR as mean ± sample standard
deviation over the seeds with their range (lowest, highest); for each defense beside clean LoRA
(the row ``lora``) its CA change against it, seed by seed, and the target (clean-correct ASR
<= 0.05 at CA within 1 point of clean LoRA) checked on every seed, not on the mean: on how
many seeds it is met and the largest miss of each half over the seeds (they may be different
seeds); and the hours a seed takes (every stage of its pipeline)."""
from __future__ import annotations

import statistics
from pathlib import Path

from w2s.sweeps.report import write_table

SEED = "seed"
BASELINE = "lora"
COLUMNS = ("ca", "asr_clean_correct", "asr")
TARGET_ASR, TARGET_DELTA_CA = 0.05, -0.01


def _spread(values: list[float]) -> str:
    if not values:
        return "n/a"
    mean = statistics.fmean(values)
    if len(values) == 1:
        return f"{mean:.3f}"
    return f"{mean:.3f} ± {statistics.stdev(values):.3f} ({min(values):.3f} to {max(values):.3f})"


def _target(seeds: list[tuple[float, float]]) -> str:
    """``seeds``: (clean-correct ASR, CA change) per seed. ``met on n/n seeds``, or on how many
    it is met and the largest miss of each half of the target over the seeds."""
    if not seeds:
        return "n/a"
    seeds = [(round(asr, 6), round(delta, 6)) for asr, delta in seeds]  # no float noise
    met = sum(asr <= TARGET_ASR and delta >= TARGET_DELTA_CA for asr, delta in seeds)
    text = f"met on {met}/{len(seeds)} seeds"
    worst_asr, worst_delta = max(asr for asr, _ in seeds), min(delta for _, delta in seeds)
    misses = []
    if worst_asr > TARGET_ASR:
        misses.append(f"clean-correct ASR {worst_asr - TARGET_ASR:.3f} over {TARGET_ASR}")
    if worst_delta < TARGET_DELTA_CA:
        misses.append(f"CA {100 * (TARGET_DELTA_CA - worst_delta):.1f} pt short")
    return text if not misses else f"{text}; misses up to: " + ", ".join(misses)


def over_seeds(trials: list[dict]) -> list[dict]:
    """``trials``: ``{"values": {...}, "summary": {"<row>/<column>": number}}`` of finished
    trials. One row per setting of the non-seed values and results row."""
    groups: dict[tuple, list[dict]] = {}
    for t in trials:
        setting = tuple((k, v) for k, v in t["values"].items() if k != SEED)
        groups.setdefault(setting, []).append(t["summary"])
    rows = []
    for setting, summaries in groups.items():
        names = list(dict.fromkeys(key.split("/")[0] for s in summaries for key in s))
        hours = [sum(v for k, v in s.items() if k.endswith("/wall_s")) / 3600 for s in summaries]
        for name in names:
            column = {c: [s[f"{name}/{c}"] for s in summaries if s.get(f"{name}/{c}") is not None] for c in COLUMNS}
            row = dict(setting) | {"row": name, "seeds": len(summaries)} | {c: _spread(v) for c, v in column.items()}
            cc, ca, base = keys = (f"{name}/asr_clean_correct", f"{name}/ca", f"{BASELINE}/ca")
            paired = [(s[cc], s[ca] - s[base]) for s in summaries if all(s.get(k) is not None for k in keys)]
            baseline = name in (BASELINE, "poisoned") or name.startswith("teacher")
            row["ΔCA vs lora"] = "" if baseline else _spread([delta for _, delta in paired])
            row["target"] = "" if baseline else _target(paired)
            rows.append(row | {"hours per seed": f"{statistics.fmean(hours):.2f}"})
    return rows


def write_seeds(rows: list[dict], folder: Path, title: str) -> str:
    """``seeds.md`` and ``seeds.csv``; return the text printed to the terminal."""
    return f"{write_table(rows, folder, 'seeds', title)}\nwritten: {folder / 'seeds.md'}, {folder / 'seeds.csv'}"
