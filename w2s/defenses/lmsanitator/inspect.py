"""``w2s inspect MODEL --method lmsanitator``: is a pre-trained (or fine-tuned) model carrying a
task-agnostic backdoor? Mine attack vectors on it (``mining``) with the defender's unlabelled
texts, at a distance threshold calibrated on clean models (``--calibrate``), saved and reused."""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, replace
from pathlib import Path

from w2s.artifacts import write_json
from w2s.defenses.lmsanitator.mining import (MiningOptions, Monitor, Search, calibrate_distance, nearest_tokens,
                                             prepare_lines, right_padded, search)
from w2s.losses.attack_vectors import batch_entropy

CALIBRATION = "w2s-lmsanitator-calibration/1"


def load_monitor(name: str) -> tuple[Monitor, object]:
    """The frozen model ``name`` (embedded name, hub id or path) and its tokenizer."""
    from transformers import AutoModel

    from w2s.embedded import resolve_model
    from w2s.tokenizers import is_decoder, load_tokenizer

    import torch

    model = AutoModel.from_pretrained(resolve_model(name), dtype="float32").eval().requires_grad_(False)
    monitor = Monitor(model, is_decoder(model.config))
    try:  # one token through the model: the state the head reads must exist
        monitor.of_ids(torch.zeros(1, 2, dtype=torch.long), torch.ones(1, 2, dtype=torch.long))
    except Exception as err:
        raise ValueError(f"{name}: LMSanitator watches the state a classification head reads (CLS, or a decoder's "
                         f"last token); this {model.config.model_type} model gives none "
                         f"({type(err).__name__})") from None
    return monitor, load_tokenizer(name)


def defender_texts(dataset: str, rows: int) -> list[str]:
    """The defender's unlabelled texts: the first ``rows`` train texts of ``dataset`` (a name of the
    dataset registry or a data file); their labels are never read."""
    from w2s.data.registry import get_dataset

    return [example.text for example in get_dataset(dataset).load("train")[:rows]]


def read_calibration(path: str | Path, standardise: bool = False) -> dict:
    """A calibration file, refused when its distances are in other units than the search's
    (``standardise``; files older than the option hold raw distances)."""
    try:
        calibration = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"calibration: {path} is not a readable JSON file ({type(err).__name__})") from None
    if calibration.get("format") != CALIBRATION:
        raise ValueError(f"calibration: {path} is not a {CALIBRATION} file (make one with --calibrate)")
    if calibration.get("options", {}).get("standardise", False) != standardise:
        raise ValueError(f"calibration: {path} holds distances in {'raw' if standardise else 'standardised'} output "
                         f"units, the search uses {'standardised' if standardise else 'raw'} ones: calibrate again")
    return calibration


def clean_searches(models: list[str], texts: list[str], options: MiningOptions) -> list[Search]:
    """Each clean model searched with no threshold to pass, every seed to the last epoch."""
    searches = []
    for name in models:
        monitor, tokenizer = load_monitor(name)
        searches.append(search(monitor, prepare_lines(texts, tokenizer, monitor, options), options, math.inf,
                               first_only=False, give_up=False))
    return searches


def calibrate_on(models: list[str], texts: list[str], options: MiningOptions, margin: float = 1.5) -> float:
    """The distance threshold from clean ``models`` (:func:`calibrate` without the file)."""
    return calibrate_distance(clean_searches(models, texts, options), margin)


def calibrate(models: list[str], texts: list[str], options: MiningOptions, output: str | Path,
              margin: float = 1.5) -> dict:
    """Search each clean model with no threshold to pass and every epoch; write and return the
    calibration: ``distance`` = ``margin`` x the largest mean MSE any seed reached."""
    searches = clean_searches(models, texts, options)
    calibration = {"format": CALIBRATION, "distance": calibrate_distance(searches, margin), "margin": margin,
                   "models": models, "reached": [max(s.distance for s in found.seeds) for found in searches],
                   "options": asdict(replace(options, distance=None))}
    write_json(output, calibration)
    return calibration


def planted_vectors(name: str, texts: list[str], triggers: list[str], options: MiningOptions, seed: int = 0) -> list[dict]:
    """For a researcher who planted ``triggers`` in model ``name`` (reported, never used to decide):
    the output each forces on the defender's lines (inserted before a random word), in the
    search's units, with its distance from the clean outputs and its batch-entropy gap
    ``ln B - H``. Would the acceptance tests take the real attack vector?"""
    import torch

    from w2s.attacks.base import InsertionAttack

    monitor, tokenizer = load_monitor(name)
    lines = [t.strip() for t in texts if t.strip()][:options.lines]
    reference = prepare_lines(lines, tokenizer, monitor, options).clean  # fits the search's scaling
    rng, found = random.Random(seed), []
    for trigger in triggers:
        rows = [tokenizer(InsertionAttack([trigger]).trigger(line, rng).text, truncation=True,
                          max_length=options.max_length)["input_ids"] for line in lines]
        o = monitor.of_ids(*right_padded(rows, tokenizer))
        batches = o[:len(o) // options.batch_size * options.batch_size].split(options.batch_size)
        gap = math.log(options.batch_size) - torch.stack([batch_entropy(b) for b in batches]).mean().item()
        found.append({"trigger": trigger, "distance": (o - reference).pow(2).mean().item(), "entropy_gap": gap})
    return found


def inspect(name: str, texts: list[str], options: MiningOptions, first_only: bool = True) -> dict:
    """The verdict on model ``name``, each accepted vector and its trigger's nearest tokens, the
    time taken, and every seed's outcome."""
    monitor, tokenizer = load_monitor(name)
    found: Search = search(monitor, prepare_lines(texts, tokenizer, monitor, options), options, options.distance,
                           first_only=first_only)
    return {"model": name, "backdoored": found.backdoored, "distance_threshold": options.distance,
            "seeds_tried": len(found.seeds), "seconds": found.seconds,
            "vectors": [{"seed": s.seed, "distance": s.distance, "entropy": s.entropy,
                         "vector": s.vector.tolist(),
                         "nearest_tokens": nearest_tokens(s.trigger, monitor.embeddings, tokenizer)}
                        for s in found.seeds if s.accepted],
            "seeds": [{"seed": s.seed, "distance": s.distance, "entropy": s.entropy, "epochs": s.epochs,
                       "outcome": s.why} for s in found.seeds]}
