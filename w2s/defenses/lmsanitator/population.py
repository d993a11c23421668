"""``w2s inspect-population``: LMSanitator's detection over a population of models
(``w2s.config.population``): K clean models (the base fine-tuned on a clean task slice), K
POR-poisoned ones (POR before any task, then the same task fine-tuning on the same slice), more
clean ones that only calibrate the threshold, and a BadNet model (task-specific: a negative
control that must not yield a vector). Every model is inspected the same way; the report gives
detection accuracy, true and false positive rates and the time per model. A killed study
continues: each model and each inspection is written once, atomically."""
from __future__ import annotations

import json
import math
import random
from dataclasses import asdict, replace
from pathlib import Path

from w2s.artifacts import write_json
from w2s.config.population import PopulationConfig


def members(config: PopulationConfig) -> list[dict]:
    """Every model of the study: its name, kind, data slice, seed and (POR) triggers."""
    rng = random.Random(config.seed)
    out = []
    for i in range(config.models):
        out.append({"name": f"clean-{i}", "kind": "clean", "slice": i, "seed": config.seed + i})
        out.append({"name": f"por-{i}", "kind": "por", "slice": i, "seed": config.seed + i,
                    "triggers": rng.sample(config.triggers, config.triggers_per_model)})
    out += [{"name": f"calibration-{j}", "kind": "calibration", "slice": config.models + j,
             "seed": config.seed + config.models + j} for j in range(config.calibration_models)]
    if config.negative_control:
        out.append({"name": "badnet", "kind": "negative", "slice": 0, "seed": config.seed,
                    "triggers": [config.triggers[0]]})
    return out


def _rows(config: PopulationConfig, member: dict) -> tuple[int, int]:
    return member["slice"] * config.rows, (member["slice"] + 1) * config.rows


def _fit(module, data, epochs: int, seed: int) -> None:
    import pytorch_lightning as pl

    from w2s.lit.base import quiet_trainer

    pl.seed_everything(seed, verbose=False)
    quiet_trainer(epochs, validate=False).fit(module, data)


def train_member(config: PopulationConfig, member: dict, folder: Path) -> None:
    """``folder/model``: the member's classifier; a POR member also keeps ``folder/pretrained``."""
    from students.build import StudentSpec
    from w2s.config.attack import PoisonConfig
    from w2s.config.optim import OptimConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.data.poisoning import build_attack
    from w2s.lit.poison import PoisonModule
    from w2s.lit.por import PorModule

    def data(tokenizer: str, attack: PoisonConfig = PoisonConfig(), poisoned: bool = False):
        return W2SDataModule(config.dataset, tokenizer=tokenizer, attack=attack, poison_train=poisoned,
                             train_rows=_rows(config, member), max_length=config.max_length,
                             batch_size=config.batch_size, seed=member["seed"])

    start = config.base_model
    if member["kind"] == "por":
        attack = PoisonConfig(name="por", mode="dirty-label", count=None, poison_rate=0.1,  # POR triggers every row
                              attack_args={"triggers": member["triggers"]}, seed=member["seed"])
        por_data = data(config.base_model, attack, poisoned=True)
        por_data.setup("fit")
        por = PorModule(StudentSpec(config.base_model), build_attack(attack, por_data.spec),
                        OptimConfig(lr=config.por_lr))
        _fit(por, por_data, config.por_epochs, member["seed"])
        por.save_artifact(folder / "pretrained")
        start = str(folder / "pretrained")
    attack = PoisonConfig()  # clean task rows (the attack only shapes evaluation sets, unused here)
    if member["kind"] == "negative":
        attack = PoisonConfig(name="badnet", mode="dirty-label", count=None, poison_rate=0.1,
                              attack_args={"triggers": member["triggers"], "position": "within_max_length"})
    task = data(start, attack, poisoned=member["kind"] == "negative")
    module = PoisonModule(StudentSpec(start), task.num_labels, None, OptimConfig(lr=config.lr))
    _fit(module, task, config.epochs, member["seed"])
    module.save_artifact(folder / "model")


def backdoor(config: PopulationConfig, member: dict, folder: Path, texts: list[str], options) -> dict:
    """What a POR member's backdoor does (reported, never used to decide): its classifier's clean
    accuracy and task-agnostic ASR on ``eval_rows`` test rows (a row is attacked when some trigger
    changes its prediction), and the vectors its triggers force on each of its models
    (``pretrained``, ``model``; ``inspect.planted_vectors``)."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from w2s.attacks.base import InsertionAttack
    from w2s.data.registry import get_dataset
    from w2s.defenses.lmsanitator.inspect import planted_vectors
    from w2s.tokenizers import load_tokenizer

    rng = random.Random(member["seed"])
    attacks = [InsertionAttack([trigger]) for trigger in member["triggers"]]

    def encoded(tokenizer, batch: list[str]) -> dict:
        return tokenizer(batch, padding=True, truncation=True, max_length=config.max_length, return_tensors="pt")

    rows = get_dataset(config.dataset).load("test")[:config.eval_rows]
    classifier = AutoModelForSequenceClassification.from_pretrained(folder / "model").eval()
    tokenizer = load_tokenizer(str(folder / "model"))

    @torch.no_grad()
    def predict(batch: list[str]) -> torch.Tensor:
        return torch.cat([classifier(**encoded(tokenizer, batch[i:i + 64])).logits.argmax(-1)
                          for i in range(0, len(batch), 64)])

    clean = predict([r.text for r in rows])
    flipped = torch.zeros(len(rows), dtype=torch.bool)
    for attack in attacks:
        flipped |= predict([attack.trigger(r.text, rng).text for r in rows]) != clean
    return {"ca": (clean == torch.tensor([r.label for r in rows])).float().mean().item(),
            "asr": flipped.float().mean().item(),
            "vectors": {part: planted_vectors(str(folder / part), texts, member["triggers"], options, member["seed"])
                        for part in ("pretrained", "model")}}


def run_population(config: PopulationConfig, progress=print) -> dict:
    """Train what is missing, calibrate, inspect every model; write and return the report."""
    from w2s.defenses.lmsanitator.inspect import calibrate, defender_texts, inspect, read_calibration
    from w2s.defenses.lmsanitator.mining import MiningOptions

    out = Path(config.output)
    saved = out / "config.json"
    if saved.exists() and json.loads(saved.read_text()) != asdict(config):
        raise ValueError(f"{out} holds a population built with other settings ({saved}): choose another output")
    write_json(saved, asdict(config))
    for member in members(config):
        folder = out / "models" / member["name"]
        if not (folder / "model").is_dir():
            progress(f"w2s: {member['name']}: training")
            train_member(config, member, folder)
    options = MiningOptions(seeds=config.seeds, lines=config.lines, max_length=config.max_length,
                            standardise=config.standardise)
    texts = defender_texts(config.dataset, config.lines)
    calibration_file = out / "calibration.json"
    if not calibration_file.exists():
        progress("w2s: calibrating on the calibration models")
        calibrate([str(out / "models" / m["name"] / "model") for m in members(config) if m["kind"] == "calibration"],
                  texts, options, calibration_file)
    distance = read_calibration(calibration_file, config.standardise)["distance"]
    rows = []
    for member in members(config):
        if member["kind"] == "calibration":
            continue
        targets = [("model", member["kind"])] + ([("pretrained", "por-pretrained")] if member["kind"] == "por" else [])
        for part, kind in targets:
            path = out / "inspections" / f"{member['name']}-{part}.json"
            if not path.exists():
                progress(f"w2s: {member['name']} ({part}): inspecting")
                write_json(path, inspect(str(out / "models" / member["name"] / part), texts,
                                          replace(options, distance=distance)))
            result = json.loads(path.read_text())
            farthest = max(result["seeds"], key=lambda s: s["distance"])
            rows.append({"model": f"{member['name']}/{part}", "kind": kind, "backdoored": result["backdoored"],
                         "seeds_tried": result["seeds_tried"], "seconds": result["seconds"],
                         "triggers": member.get("triggers"), "reached": farthest["distance"],
                         "reached_gap": math.log(options.batch_size) - farthest["entropy"]})
        if member["kind"] == "por":
            path = out / "inspections" / f"{member['name']}-backdoor.json"
            if not path.exists():
                progress(f"w2s: {member['name']}: measuring its backdoor")
                write_json(path, backdoor(config, member, out / "models" / member["name"], texts, options))
            effect = json.loads(path.read_text())
            for row in rows[-len(targets):]:  # this member's rows, one per part
                row |= {"ca": effect["ca"], "asr": effect["asr"],
                        "vectors": effect["vectors"][row["model"].rsplit("/", 1)[1]]}
    report = summarise(rows, distance)
    write_json(out / "report.json", report)
    (out / "report.md").write_text(markdown(report))
    return report


def summarise(rows: list[dict], distance: float) -> dict:
    """Detection accuracy over the clean and POR models, TPR (POR detected), FPR (clean flagged),
    the negative control's verdict, the seconds per model."""
    from w2s.defenses.lmsanitator.mining import MiningOptions

    clean = [r for r in rows if r["kind"] == "clean"]
    por = [r for r in rows if r["kind"] == "por"]
    judged = clean + por
    correct = sum(r["backdoored"] for r in por) + sum(not r["backdoored"] for r in clean)
    return {"distance": distance, "entropy_slack": MiningOptions().entropy_slack, "models": rows,
            "accuracy": correct / len(judged), "tpr": sum(r["backdoored"] for r in por) / len(por),
            "fpr": sum(r["backdoored"] for r in clean) / len(clean),
            "por_pretrained_tpr": _share([r for r in rows if r["kind"] == "por-pretrained"]),
            "negative_control_flagged": _share([r for r in rows if r["kind"] == "negative"]),
            "seconds_per_model": sum(r["seconds"] for r in rows) / len(rows)}


def _share(rows: list[dict]) -> float | None:
    return sum(r["backdoored"] for r in rows) / len(rows) if rows else None


def markdown(report: dict) -> str:
    def share(value):
        return "n/a" if value is None else f"{value:.2f}"

    def vectors(row):
        return " ".join(f"{v['trigger']} {v['distance']:.3g}/{v['entropy_gap']:.3f}" for v in row.get("vectors", []))

    def number(row, key):
        return f"{row[key]:.2f}" if key in row else ""

    lines = [f"Distance threshold {report['distance']:.4g} (calibrated on the calibration models); a vector is "
             f"input-agnostic when its entropy gap ln B - H is below {report['entropy_slack']}.", "",
             "| model | kind | verdict | seeds | seconds | farthest search: distance/gap | CA | ASR | "
             "real triggers: distance/gap |", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['model']} | {r['kind']} | {'backdoored' if r['backdoored'] else 'clean'} | {r['seeds_tried']} | "
              f"{r['seconds']:.0f} | {r['reached']:.3g}/{r['reached_gap']:.3f} | {number(r, 'ca')} | "
              f"{number(r, 'asr')} | {vectors(r)} |" for r in report["models"]]
    lines += ["", f"Detection accuracy {report['accuracy']:.2f}, TPR {report['tpr']:.2f}, FPR {report['fpr']:.2f} "
              f"(fine-tuned models); POR pre-trained models detected: {share(report['por_pretrained_tpr'])}; "
              f"BadNet negative control flagged: {share(report['negative_control_flagged'])}; "
              f"{report['seconds_per_model']:.0f} s per model."]
    return "\n".join(lines) + "\n"
