"""Run the whole study from one config, reusing every stage whose inputs did not change."""
from __future__ import annotations

from pathlib import Path

from w2s.data.registry import get_dataset
from w2s.pipeline import stages
from w2s.pipeline.config import PipelineConfig
from w2s.pipeline.report import collapse_warnings, markdown, result_rows, write_report
from w2s.pipeline.runs import file_digest, load_manifest, stage


def _data_digest(name: str) -> str:
    spec = get_dataset(name)
    return file_digest([spec.path(f) for f in list(spec.files.values()) + list(spec.paraphrases.values())])


def _run_stage(folder: Path, name: str, config: dict, inputs: dict, seed: int, body) -> dict:
    with stage(folder, name, config, inputs, seed) as run:
        print(f"w2s: {name}: {'training' if run is not None else 'up to date, reused'} ({folder})", flush=True)
        if run is not None:
            body(run)
    return load_manifest(folder)


def _check_rows(config: PipelineConfig) -> None:
    """Fail before any training if a row range runs past its train split."""
    ranges = {"poison.train_rows": (config.poison.dataset or config.dataset, config.poison.train_rows),
              "teacher.train_rows": (config.dataset, config.teacher.train_rows),
              "defense_rows": (config.dataset, config.defense_rows)}
    sizes = {dataset: len(get_dataset(dataset).load("train")) for dataset, rows in ranges.values() if rows}
    for key, (dataset, rows) in ranges.items():
        if rows is None:
            continue
        size = sizes[dataset]
        if not 0 <= rows[0] < rows[1] <= size:
            raise ValueError(f"{key}: {list(rows)} is not a range [start, stop) within the {size} train rows "
                             f"of {dataset}")


def run_pipeline(config: PipelineConfig) -> list[dict]:
    """Poisoned student, teacher (if a defense uses one), each defense; returns the result rows."""
    _check_rows(config)
    root = Path(config.runs_dir) / config.experiment
    shared = {"dataset": config.dataset, "attack": config.attack, "max_length": config.max_length,
              "eval_rows": config.eval_rows, "precision": config.trainer.precision}
    data = {config.dataset: _data_digest(config.dataset)}
    poison_data = config.poison.dataset or config.dataset
    data[poison_data] = _data_digest(poison_data)

    manifests = {"poisoned": _run_stage(
        root / "poisoned", "poisoned", shared | {"student": config.student, "poison": config.poison}, data,
        config.seed, lambda run: stages.poison(config, run))}
    needs_teacher = any(d.objective.needs_teacher for d in config.defenses.values())
    if needs_teacher:
        manifests["teacher"] = _run_stage(
            root / "teacher", "teacher", shared | {"student": config.student.name, "teacher": config.teacher},
            data, config.seed, lambda run: stages.teacher(config, run))
    for name, defense in config.defenses.items():
        inputs = {"poisoned": manifests["poisoned"]["key"]}
        if defense.objective.needs_teacher:
            inputs["teacher"] = manifests["teacher"]["key"]
        defense_config = shared | {"defense": defense, "rows": config.defense_rows,
                                   "poisoned_data": config.defense_data_poisoned, "student": config.student}
        manifests[name] = _run_stage(
            root / "defenses" / name, name, defense_config, inputs | data, config.seed,
            lambda run, name=name, defense=defense: stages.defense(
                config, run, name, defense, root / "poisoned" / "model",
                root / "teacher" / "model" if defense.objective.needs_teacher else None))

    rows = result_rows(manifests)
    title = f"{config.experiment}: {config.dataset}, {config.attack.attack} ({config.attack.mode}, target {config.attack.target_label})"
    notes = collapse_warnings(manifests)
    write_report(rows, root, title, notes)
    print(f"\n{title}\n\n{markdown(rows)}" + "".join(f"{n}\n" for n in notes)
          + f"\nwritten: {root / 'results.md'}, {root / 'results.csv'}, {root / 'results.png'}")
    return rows
