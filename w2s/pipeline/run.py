"""Run the whole study from one config, reusing every stage whose inputs did not change."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from w2s import distributed
from w2s.attacks import attack_class
from w2s.pipeline.config import PipelineConfig, TeacherStage
from w2s.data.registry import dataset_name, get_dataset
from w2s.pipeline import stages
from w2s.pipeline.context import PipelineContext
from w2s.pipeline.report import markdown, notes, result_rows, write_report
from w2s.config.jsonable import fingerprint
from w2s.pipeline.runs import load_manifest, stage
from w2s.pipeline.tracking import log_results, tracking_run
from w2s.pipeline.validate import dataset_key, validate


def _run_stage(folder: Path, name: str, config: dict, inputs: dict, seed: int, tracker, body) -> dict:
    with stage(folder, name, config, inputs, seed) as run:
        print(f"w2s: {name}: {'training' if run is not None else 'up to date, reused'} ({folder})", flush=True)
        if run is not None:
            run.wandb = tracker
            body(run)
    return load_manifest(folder)


def run_pipeline(config: PipelineConfig) -> list[dict]:
    """Poisoned student, teacher (if a defense uses one), each defense, in one W&B run (unless
    disabled); returns the result rows."""
    validate(config)  # everything, before any training
    options = config.trainer
    distributed.launch(options.accelerator, options.devices, options.num_nodes)  # with several processes
    root = Path(config.runs_dir) / config.experiment
    report = Path(config.report_dir) if config.report_dir else root
    with tracking_run(config, report) as tracker:
        rows = _run(config, root, report, tracker)
        if tracker is not None:
            log_results(tracker, rows, report / "results.png")
    return rows


def shared_settings(config: PipelineConfig) -> dict:
    """What every stage reads: the data, the attack, the evaluation rows (a triggered row counts
    only when its trigger survives every tokenizer of the run: their names decide which)."""
    return {"dataset": config.dataset, "attack": config.attack, "max_length": config.max_length,
            "max_eval_rows": config.max_eval_rows, "precision": config.trainer.precision,
            "bucket_batches": config.bucket_batches, "trigger_tokenizers": stages.trigger_tokenizers(config),
            "dev_asr": config.dev_asr}


def poison_settings(config: PipelineConfig) -> dict:
    """What the poisoning stage reads: never the defender's choice of quantization (it poisons
    in full precision)."""
    return shared_settings(config) | {"student": replace(config.student, quantization=None), "poison": config.poison}


def _run(config: PipelineConfig, root: Path, report: Path, tracker) -> list[dict]:
    shared = shared_settings(config)
    data = {dataset_key(d): get_dataset(d).digest() for d in (config.dataset, config.poison.dataset or config.dataset)}

    def place(name: str, settings) -> Path:
        """``root/name``; with ``report_dir`` (runs that share stages, e.g. sweep trials over the
        attack or the seed) ``root/stages/name-HASH``, named by the settings and the seed."""
        return root / "stages" / f"{name}-{fingerprint([settings, config.seed])}" if config.report_dir else root / name

    poison_config = poison_settings(config)
    poisoned = place("poisoned", poison_config)
    manifests = {"poisoned": _run_stage(poisoned, "poisoned", poison_config, data, config.seed, tracker,
                                        lambda run: stages.poison(config, run))}
    teachers: dict[Path, str] = {}  # teacher folder -> its row in the table

    def teacher(spec: TeacherStage, owner: str) -> Path:
        """The teacher stage ``spec``, trained once per distinct setting (the pipeline's own
        ``teacher``, or ``teacher-OWNER`` for the first defense with its own): its folder."""
        shared_teacher = spec == config.teacher
        teacher_config = shared | {"student": config.student.name, "teacher": spec}
        folder = place("teacher", teacher_config) if shared_teacher else root / "teachers" / fingerprint(
            [teacher_config, config.seed])
        if folder not in teachers:
            teachers[folder] = "teacher" if shared_teacher else f"teacher-{owner}"
            manifests[teachers[folder]] = _run_stage(folder, "teacher", teacher_config, data, config.seed, tracker,
                                                     lambda run: stages.teacher(replace(config, teacher=spec), run))
        return folder

    teacher_folders = {name: teacher(spec, name) for name, spec in config.defense_teachers().items()}
    adapters = {"poisoned": poisoned / "model" / "adapter"}  # row -> the LoRA adapter its stage saved, if any
    detectors = {name: d for name, d in config.defenses.items() if d.defense.family == "detector"}
    for name, defense in config.defenses.items():
        if name in detectors:
            continue
        inputs = {"poisoned": manifests["poisoned"]["key"]} | {used: manifests[used]["key"] for used in defense.uses}
        teacher_folder = teacher_folders.get(name)
        if teacher_folder:
            inputs["teacher"] = manifests[teachers[teacher_folder]]["key"]
        defense_config = shared | {"defense": defense, "rows": config.defense_rows, "dev_rows": config.defense_dev_rows,
                                   "poisoned_data": config.defense_data_poisoned, "student": config.student}
        folder = root / "defenses" / (f"{name}-{fingerprint([defense_config, inputs])}" if config.report_dir else name)
        manifests[name] = _run_stage(
            folder, name, defense_config, inputs | data, config.seed, tracker,
            lambda run, name=name, defense=defense, teacher_folder=teacher_folder: defense.defense.run(
                PipelineContext(config, run, name, poisoned / "model", teacher_folder / "model" if teacher_folder
                                else None, {used: adapters[used] for used in defense.uses}), defense))
        adapters[name] = folder / "model" / "adapter"

    adapters = {row: path for row, path in adapters.items() if path.is_dir()}
    scans: dict[str, dict] = {}  # row -> the columns detectors add to it
    for name, defense in detectors.items():  # after every stage whose adapter they scan
        inputs = {row: manifests[row]["key"] for row in adapters}
        settings = shared | {"defense": defense}
        folder = root / "defenses" / (f"{name}-{fingerprint([settings, inputs])}" if config.report_dir else name)
        manifest = _run_stage(folder, name, settings, inputs, config.seed, tracker,
                              lambda run, name=name, defense=defense: defense.defense.run(
                                  PipelineContext(config, run, name, poisoned / "model", adapters=adapters), defense))
        for row, values in defense.defense.scores(manifest).items():
            scans.setdefault(row, {}).update(values)
        manifests[name] = manifest

    clean_lora = [name for name, d in config.defenses.items() if d.is_clean_lora]
    rows = result_rows({name: m for name, m in manifests.items() if name not in detectors}, scans)
    attack = ("task-agnostic: ASR = triggered rows whose prediction changes"
              if attack_class(config.attack.name).task_agnostic
              else f"{config.attack.mode}, target {config.attack.target_label}")
    title = f"{config.experiment}: {dataset_name(config.dataset)}, {config.attack.name} ({attack})"
    lines = notes(manifests, clean_lora)
    if distributed.is_writer():
        write_report(rows, report, title, lines)
    written = ["results.md", "results.csv", "results.png", "frontier.png"] + \
        (["frontier_dev.png"] if (report / "frontier_dev.png").is_file() else [])
    print(f"\n{title}\n\n{markdown(rows)}" + "".join(f"\n{n}" for n in lines) + ("\n" if lines else "")
          + f"\nwritten: {', '.join(str(report / f) for f in written)}")
    return rows
