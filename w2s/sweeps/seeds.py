"""Mean and spread over seeds. A sweep with a ``seed`` parameter is also summarised per setting
of its other parameters (``seeds.md`` / ``seeds.csv``): for every row of the trials' results
tables (clean LoRA, W2S, ...) its CA, clean-correct ASR and ASR as mean ± sample standard
deviation over the seeds; for each defense beside clean LoRA (the row ``lora``) its CA change
against it, seed by seed, and how far it is from the target (clean-correct ASR <= 0.05 at CA
within 1 point of clean LoRA); and the hours a seed takes (every stage of its pipeline)."""
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
    return f"{mean:.3f} ± {statistics.stdev(values):.3f}" if len(values) > 1 else f"{mean:.3f}"


def _target(asr: list[float], delta: list[float]) -> str:
    """``met``, or by how much the means miss each half of the target."""
    if not asr or not delta:
        return "n/a"
    asr_mean, delta_mean = round(statistics.fmean(asr), 6), round(statistics.fmean(delta), 6)  # no float noise
    misses = []
    if asr_mean > TARGET_ASR:
        misses.append(f"clean-correct ASR {asr_mean - TARGET_ASR:.3f} over {TARGET_ASR}")
    if delta_mean < TARGET_DELTA_CA:
        misses.append(f"CA {100 * (TARGET_DELTA_CA - delta_mean):.1f} pt short")
    return "met" if not misses else "missed: " + "; ".join(misses)


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
            delta = [s[f"{name}/ca"] - s[f"{BASELINE}/ca"] for s in summaries
                     if f"{BASELINE}/ca" in s and f"{name}/ca" in s]
            baseline = name in (BASELINE, "poisoned") or name.startswith("teacher")
            row["ΔCA vs lora"] = "" if baseline else _spread(delta)
            row["target"] = "" if baseline else _target(column["asr_clean_correct"], delta)
            rows.append(row | {"hours per seed": f"{statistics.fmean(hours):.2f}"})
    return rows


def write_seeds(rows: list[dict], folder: Path, title: str) -> str:
    """``seeds.md`` and ``seeds.csv``; return the text printed to the terminal."""
    return f"{write_table(rows, folder, 'seeds', title)}\nwritten: {folder / 'seeds.md'}, {folder / 'seeds.csv'}"
