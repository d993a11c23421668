"""The one entry point: ``w2s`` on the shell, ``w2s.cli.main(args)`` from sweeps and notebooks.

Input errors (bad file, unknown name, invalid value) print one line, ``error: ...``, to
stderr and return exit code 2.
"""
from __future__ import annotations

import sys
import warnings
from argparse import ArgumentError
from collections import Counter
from typing import Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from w2s.config.adapters import AdapterBenchmarkConfig
from w2s.config.population import PopulationConfig
from w2s.pipeline.load import check_config_files, instantiate, load_config
from w2s.pipeline.load import strict_parser as _parser

from w2s.data.readers import FORMATS, DataError, read_examples


def _column(value: Optional[str]):
    return int(value) if value is not None and value.isdigit() else value


def _shorten(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def data_check(path: str, text_column: Optional[str] = None, label_column: Optional[str] = None,
               fmt: Optional[str] = None) -> None:
    """Print the row count, label counts and two sample rows of a data file."""
    rows = read_examples(path, _column(text_column), _column(label_column), fmt=fmt)
    counts = Counter(ex.label for ex in rows)
    print(f"{path}: {len(rows)} rows")
    print("labels: " + ", ".join(f"{label}: {counts[label]}" for label in sorted(counts)))
    for ex in rows[:2]:
        print(f"  [{ex.label}] {_shorten(ex.text)}")


def data_preview(dataset: str = "sst2", attack: str = "badnet", mode: str = "clean-label",
                 target_label: int = 0, count: Optional[int] = 1000, poison_rate: Optional[float] = None,
                 selection: str = "random", seed: int = 0, num_examples: int = 3) -> None:
    """Poison a dataset's train split and print poisoned examples and the poison counts."""
    from w2s.config.attack import PoisonConfig
    from w2s.data.poisoning import build_attack, build_triggered_set, poison_examples
    from w2s.data.registry import get_dataset

    spec = get_dataset(dataset)
    config = PoisonConfig(name=attack, mode=mode, target_label=target_label,
                          count=None if poison_rate is not None else count,
                          poison_rate=poison_rate, selection=selection, seed=seed)
    trigger = build_attack(config, spec)
    train = spec.load("train")
    split = poison_examples(train, trigger, config)
    counts = Counter(ex.label for ex in split.examples)
    print(f"{spec.name} train: {len(train)} rows; {attack} {mode}, target_label {target_label}: "
          f"{len(split.poisoned_indices)} poisoned")
    print("labels after poisoning: " + ", ".join(f"{k}: {counts[k]}" for k in sorted(counts)))
    for i in split.poisoned_indices[:num_examples]:
        before, after = train[i], split.examples[i]
        print(f"  row {i}: [{before.label}] {_shorten(before.text)}")
        print(f"  {'':>{len(str(i)) + 4}}-> [{after.label}] {_shorten(after.text)}")
    test = build_triggered_set(spec.load("test"), trigger, target_label, seed=seed, dataset=spec)
    print(f"{spec.name} test ASR set: {len(test.texts)} triggered non-target rows ({test.source})")


STAGES = {"teacher": "w2s.lit.teacher.TeacherModule", "poison": "w2s.lit.poison.PoisonModule",
          "unlearn": "w2s.lit.unlearn.UnlearnModule"}


def stage_cli(stage: str, args: list[str]) -> None:
    """``w2s STAGE {fit,validate,test} ...``: LightningCLI over the stage's module and the DataModule."""
    import importlib

    from pytorch_lightning.cli import LightningCLI

    from w2s import distributed
    from w2s.attacks import attack_class
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit.callbacks import RestoreBest

    # args are sys.argv minus the stage word; Lightning warns whenever both are set
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    module_path, class_name = STAGES[stage].rsplit(".", 1)
    module_class = getattr(importlib.import_module(module_path), class_name)

    class StageCLI(LightningCLI):
        def add_arguments_to_parser(self, parser):
            parser.add_argument("--output", type=Optional[str], default=None,
                                help="after fit, save the trained artifact to this folder (atomically)")
            parser.link_arguments("data.attack.target_label", "model.target_label")
            if stage == "teacher":
                parser.link_arguments("model.teacher.name", "data.tokenizer")
            else:
                parser.link_arguments("model.student.name", "data.tokenizer")
                parser.link_arguments("data.num_labels", "model.num_labels", apply_on="instantiate")
            if stage == "unlearn":
                parser.link_arguments("model.teacher", "data.teacher_tokenizer",
                                      compute_fn=lambda folder: f"{folder}/encoder" if folder else None)

        def before_instantiate_classes(self):
            """Names are checked before any model or tokenizer loads."""
            attack_class(self.config[self.subcommand].data.attack.name)

        def instantiate_trainer(self, **kwargs):
            """``--trainer.strategy fsdp``: the pipeline's FSDP (``w2s.distributed``), not Lightning's FSDP1."""
            trainer = self.config_init[self.subcommand]["trainer"]
            if trainer.get("strategy") == "fsdp":
                devices, nodes = trainer.get("devices"), trainer.get("num_nodes") or 1
                if not str(devices).isdigit():
                    raise ValueError(f"trainer.strategy fsdp needs trainer.devices as a number, got {devices!r}")
                kwargs["strategy"] = distributed.lightning_strategy("fsdp", int(devices) * nodes)
            return super().instantiate_trainer(**kwargs)

        def after_fit(self):
            output = self.config[self.subcommand].get("output")
            if output:
                distributed.save_artifact(self.model, output)

    StageCLI(module_class, W2SDataModule, args=args, parser_kwargs={"prog": f"w2s {stage}"},
             trainer_defaults={"callbacks": [RestoreBest()], "num_sanity_val_steps": 0,
                               "use_distributed_sampler": False},  # W2SDataModule shares the rows itself
             save_config_kwargs={"overwrite": True})


def evaluate(student: str, adapter: Optional[str] = None, dataset: str = "sst2", attack: str = "badnet",
             target_label: int = 0, max_eval_rows: Optional[int] = None, max_length: int = 128, batch_size: int = 64,
             quantization: Optional[str] = None, seed: int = 0) -> dict[str, float]:
    """CA and ASR of a student (and optional LoRA adapter) on a dataset's test split."""
    import pytorch_lightning as pl

    from students.build import StudentSpec
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit.evaluate import EvaluateModule

    data = W2SDataModule(dataset, tokenizer=student, attack=PoisonConfig(name=attack, target_label=target_label),
                         max_eval_rows=max_eval_rows, max_length=max_length, batch_size=batch_size, seed=seed)
    module = EvaluateModule(StudentSpec(student, quantization=quantization), adapter, data.num_labels, target_label)
    clean, triggered = pl.Trainer(logger=False, enable_model_summary=False).test(module, data, verbose=False)
    result = {"ca": clean["test/ca"], "asr": triggered["test/asr"]}
    print(f"{student}{' + ' + adapter if adapter else ''} on {dataset} / {attack} (target {target_label}): "
          f"CA {result['ca']:.4f}  ASR {result['asr']:.4f}")
    return result


def list_defenses() -> None:
    """Print every registered defense by family: what it is, where it comes from, its defaults."""
    from dataclasses import fields

    from w2s.defenses import DEFENSES, FAMILIES

    for family in FAMILIES:
        members = sorted((name, d) for name, d in DEFENSES.items() if d.family == family)
        for i, (name, defense) in enumerate(members):
            options = defense.Options()
            print((f"{family}:\n" if i == 0 else "") + f"  {name}: {defense.summary}\n    defaults: {defense.defaults}"
                  + (f"; {options}" if fields(options) else ""))


def adapters_build(benchmark: AdapterBenchmarkConfig, processes: int = 1) -> None:
    """Train N benign and N backdoored LoRA adapters (hyper-parameters drawn from the same
    distributions for both classes) and store them as a dataset; rerun to continue a killed build."""
    from w2s.adapters.build import build_benchmark

    counts = build_benchmark(benchmark, processes)
    print(f"{benchmark.output}: {counts['benign']} benign and {counts['backdoored']} backdoored adapters "
          f"({counts['dropped']} backdoored dropped, the attack did not take: "
          f"{', '.join(f'{a} {n}' for a, n in counts['dropped_by_attack'].items()) or 'none'}; "
          f"{counts['missing']} still to train); "
          f"metadata.jsonl loads with datasets.load_dataset('json', data_files=...)")


def adapters_train(benchmark: str, output: str, epochs: int = 20, seed: int = 0, channels: int = 16, kernel: int = 8,
                   stride: int = 8, standardize: bool = True, dtype: str = "float32") -> None:
    """Train PEFTGuard's detector on every adapter of a built benchmark (10% held out to choose the
    epoch) and save it, with a manifest of its preprocessing, to OUTPUT (for `w2s scan --detector`).
    The network's size: channels, kernel and stride of its convolution (the authors': 16, 8, 8);
    standardize: scale the updates to unit variance over the training adapters (the authors feed
    them raw; docs/adapters.md measures both)."""
    from w2s.adapters.scan import train_detector

    if dtype not in ("float32", "float16"):
        raise ValueError(f"dtype must be float32 or float16, got {dtype!r}")
    manifest = train_detector(benchmark, output, epochs, seed, dtype, standardize, channels=channels, kernel=kernel,
                              stride=stride)
    trained, val = manifest["trained_on"], manifest["validation"]
    print(f"{output}: detector trained on {trained['adapters']} adapters ({trained['backdoored']} backdoored); "
          f"validation ROC-AUC {val['auroc']:.3f} at epoch {val['epoch']} on {val['adapters']} adapters")


def adapters_eval(benchmark: str, output: str, transfer: Optional[list[str]] = None, seeds: int = 3,
                  epochs: int = 20, methods: Optional[list[str]] = None) -> None:
    """Evaluate PEFTGuard's detector, the spectral and norm baselines and the controls as the
    paper does: in distribution (data subsets held out), leave one attack out, rank transfer and
    PEFT-method transfer (--transfer+ DIR, once per benchmark built with variant rslora or dora), over seeds.
    Writes OUTPUT/results.csv (every seed), results.md (mean ± spread) and auroc.png."""
    import csv
    from pathlib import Path

    from w2s.adapters.benchmark import load_benchmark
    from w2s.adapters.evaluate import chart, evaluate, markdown, methods as known, summarise

    bench = load_benchmark(benchmark)
    others = [load_benchmark(t) for t in transfer or []]
    unknown = set(methods or []) - set(known(bench))
    if unknown:
        raise ValueError(f"unknown method(s) {sorted(unknown)}: choose from {list(known(bench))}")
    if seeds < 1 or epochs < 1:
        raise ValueError(f"seeds and epochs must be >= 1, got {seeds}, {epochs}")
    rows = evaluate(bench, others, seeds, epochs, methods, progress=print)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    summary = summarise(rows)
    (out / "results.md").write_text(markdown(summary))
    chart(summary, out / "auroc.png")
    print(markdown(summary) + f"written: {out}/results.csv, results.md, auroc.png")


def scan_adapters(adapters: list[str], detector: Optional[str] = None, json: bool = False) -> None:
    """P(backdoored) of each LoRA adapter (a folder or a hub id) and the verdict at the detector's
    threshold. Default detector: the one that ships for the embedded MiniLM-L6 (query, value)."""
    from w2s.adapters.scan import scan

    results = scan(adapters, detector)
    _report(results, json, lambda r: [
        f"{r['adapter']}: P(backdoored) {r['p_backdoored']:.3f} -> {'BACKDOORED' if r['backdoored'] else 'benign'} "
        f"(threshold {r['threshold']}; {r['seconds']:.2f} s)"], f"detector: {results[0]['detector']}")


def _report(results: list[dict], as_json: bool, lines, footer: str = "") -> None:
    """``results`` as one JSON list, or each result's ``lines(result)`` (and a footer line)."""
    import json

    if as_json:
        print(json.dumps(results, indent=1))
        return
    for result in results:
        print("\n".join(lines(result)))
    if footer:
        print(footer)


INSPECTORS = ("lmsanitator",)


def inspect_models(models: list[str], method: str = "lmsanitator", dataset: str = "sst2",
                   calibration: Optional[str] = None, calibrate: Optional[str] = None, seeds: int = 30,
                   lines: int = 256, max_length: int = 64, full: bool = False, standardise: bool = False,
                   triggers: Optional[list[str]] = None, json: bool = False) -> None:
    """Does a pre-trained (or fine-tuned) model carry a task-agnostic backdoor? LMSanitator mines
    attack vectors on the frozen model with the defender's unlabelled texts (DATASET's train
    texts, labels never read) and gives the verdict, each vector found, its inverted trigger's
    nearest tokens and the time taken; exit 0 either way. The distance threshold comes from
    --calibration FILE, written by --calibrate FILE on clean models; --full searches every seed
    instead of stopping at the first vector; --standardise searches in units of the clean outputs'
    spread (a calibration holds the units it was made in); --triggers WORD... (for a researcher who
    planted them; reported, never used to decide) adds the vector each forces, with its distance
    and entropy gap."""
    import json as json_module
    from dataclasses import replace

    from w2s.defenses.lmsanitator.inspect import calibrate as run_calibration, defender_texts, inspect, \
        planted_vectors, read_calibration
    from w2s.defenses.lmsanitator.mining import MiningOptions

    if method not in INSPECTORS:
        raise ValueError(f"unknown inspection method {method!r}; valid: {', '.join(INSPECTORS)}")
    if (calibration is None) == (calibrate is None):
        raise ValueError("give --calibration FILE (a threshold calibrated on clean models) or --calibrate FILE "
                         "(make one from these clean models), not both")
    options = MiningOptions(seeds=seeds, lines=lines, max_length=max_length, standardise=standardise)
    texts = defender_texts(dataset, lines)
    if calibrate is not None:
        result = run_calibration(models, texts, options, calibrate)
        print(json_module.dumps(result, indent=1) if json else
              f"{calibrate}: distance threshold {result['distance']:.4g} ({result['margin']} x the largest mean MSE "
              f"a search reached on {len(models)} clean model(s): {max(result['reached']):.4g})")
        return
    options = replace(options, distance=read_calibration(calibration, standardise)["distance"])
    results = [inspect(name, texts, options, first_only=not full) for name in models]
    for result in results:
        result["planted"] = planted_vectors(result["model"], texts, triggers, options) if triggers else []
    _report(results, json, lambda r: [
        f"{r['model']}: {'BACKDOORED' if r['backdoored'] else 'no attack vector found'} ({r['seeds_tried']} seeds, "
        f"{r['seconds']:.0f} s; threshold {r['distance_threshold']:.4g})"] + [
        f"  vector from seed {v['seed']}: MSE from clean {v['distance']:.4g}, entropy {v['entropy']:.3f}; "
        f"trigger's nearest tokens {' '.join(t[0] for t in v['nearest_tokens'])}" for v in r["vectors"]] + [
        f"  planted trigger {p['trigger']!r} (reported only): MSE from clean {p['distance']:.4g}, entropy gap "
        f"{p['entropy_gap']:.3f}" for p in r["planted"]])


def inspect_population(population: PopulationConfig) -> None:
    """LMSanitator's detection over a population: K clean and K POR-poisoned models of one base
    model, calibration models and a BadNet negative control, trained (resumably) and inspected
    alike; prints and writes OUTPUT/report.md (detection accuracy, TPR, FPR, seconds per model)."""
    from w2s.defenses.lmsanitator.population import markdown, run_population

    print(markdown(run_population(population)) + f"written: {population.output}/report.md, report.json")


PIPELINE = ("attack -> teacher -> poisoned student -> defenses -> CA/ASR table, from one YAML (stages whose "
            "inputs did not change are reused); w2s pipeline --help lists every setting.")


def build_parser() -> ArgumentParser:
    """The command line; ``pipeline`` reads its settings itself (``w2s.pipeline.load``)."""
    parser = _parser(prog="w2s", description="Backdoor unlearning by weak-to-strong distillation.")
    parser.add_argument("--verbose", action="store_true", help="also print what the libraries print (Lightning's "
                        "tips, load reports, deprecation warnings); anywhere on the command line")
    commands = parser.add_subcommands(dest="command")

    data = _parser(description="Inspect data files and poisoned datasets.")
    commands.add_subcommand("data", data)  # jsonargparse wants levels added top-down
    data_commands = data.add_subcommands(dest="action")
    check = _parser(description=data_check.__doc__)
    check.add_argument("path", type=str, help="a .jsonl / .json / .tsv / .csv file")
    check.add_argument("--text-column", "--text_column", type=Optional[str], help="name, or 0-based index if headerless")
    check.add_argument("--label-column", "--label_column", type=Optional[str], help="name, or 0-based index if headerless")
    check.add_argument("--format", type=Optional[str], help=f"one of {', '.join(FORMATS)}; default: detected")
    data_commands.add_subcommand("check", check)
    preview = _parser(description=data_preview.__doc__)
    preview.add_argument("--config", action=ActionConfigFile)
    preview.add_function_arguments(data_preview)
    data_commands.add_subcommand("preview", preview)

    commands.add_subcommand("pipeline", _parser(description=PIPELINE))
    sweep = _parser(description="Run a W&B sweep file (experiments/sweeps/) without a W&B server: Optuna "
                           "searches its parameters, every trial a `w2s pipeline` run; rerun to resume.")
    sweep.add_argument("file", type=str, help="a W&B sweep YAML")
    sweep.add_argument("--trials", type=Optional[int], default=None,
                       help="finished trials wanted in all (default: run_cap, or the whole grid)")
    sweep.add_argument("--parallel", type=int, default=1, help="trials at a time, one process each")
    sweep.add_argument("--storage", type=Optional[str], default=None,
                       help="Optuna storage URL shared by several machines (default: SQLite in the sweep folder)")
    sweep.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    commands.add_subcommand("sweep", sweep)
    evaluation = _parser(description=evaluate.__doc__)
    evaluation.add_argument("--config", action=ActionConfigFile)
    evaluation.add_function_arguments(evaluate)
    commands.add_subcommand("evaluate", evaluation)
    commands.add_subcommand("defenses", _parser(description=list_defenses.__doc__))
    adapters = _parser(description="Adapter backdoor detection (PEFTGuard): build a benchmark of adapters, train "
                       "a detector on it, evaluate detectors and baselines (then: w2s scan).")
    commands.add_subcommand("adapters", adapters)
    adapter_commands = adapters.add_subcommands(dest="action")
    build = _parser(description=adapters_build.__doc__)
    build.add_argument("--config", action=ActionConfigFile, help="benchmark YAML (experiments/adapters/)")
    build.add_class_arguments(AdapterBenchmarkConfig, "benchmark")
    build.add_argument("--processes", type=int, default=1, help="adapters trained at a time, one process each")
    adapter_commands.add_subcommand("build", build)
    for name, function in (("train", adapters_train), ("eval", adapters_eval)):
        sub = _parser(description=function.__doc__)
        sub.add_function_arguments(function)
        adapter_commands.add_subcommand(name, sub)
    scanner = _parser(description=scan_adapters.__doc__)
    scanner.add_argument("adapters", type=str, nargs="+", help="peft LoRA adapter folders or hub ids")
    scanner.add_argument("--detector", type=Optional[str], default=None, help="a folder `w2s adapters train` wrote")
    scanner.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    commands.add_subcommand("scan", scanner)
    inspector = _parser(description=inspect_models.__doc__)
    inspector.add_argument("models", type=str, nargs="+", help="embedded names, hub ids or model folders")
    for name, kind, default in (("method", str, "lmsanitator"), ("dataset", str, "sst2"),
                                ("calibration", Optional[str], None), ("calibrate", Optional[str], None),
                                ("seeds", int, 30), ("lines", int, 256), ("max_length", int, 64)):
        inspector.add_argument(f"--{name}", type=kind, default=default)
    inspector.add_argument("--full", action="store_true", help="search every seed")
    inspector.add_argument("--standardise", action="store_true", help="search in units of the clean outputs' spread")
    inspector.add_argument("--triggers", type=str, nargs="+", default=None,
                           help="words you planted: the vectors they force, reported only")
    inspector.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    commands.add_subcommand("inspect", inspector)
    population = _parser(description=inspect_population.__doc__)
    population.add_argument("--config", action=ActionConfigFile, help="population YAML (experiments/lmsanitator/)")
    population.add_class_arguments(PopulationConfig, "population")
    commands.add_subcommand("inspect-population", population)
    for stage in STAGES:
        commands.add_subcommand(stage, _parser(
            description=f"Lightning CLI for the {stage} stage: w2s {stage} {{fit,validate,test}} --help"))
    return parser


def pipeline(args: list[str]) -> int:
    """``w2s pipeline ARGS``: run the study, or print its resolved settings (``--print_config``)."""
    config = load_config([a for a in args if a != "--print_config"])
    if "--print_config" in args:
        import yaml

        from w2s.config.jsonable import to_jsonable

        print(yaml.safe_dump(to_jsonable(config), sort_keys=False), end="")
        return 0
    from w2s.console import quiet_libraries
    from w2s.pipeline import run_pipeline

    quiet_libraries()
    run_pipeline(config)
    return 0


def main(args: Optional[list[str]] = None) -> int:
    """Run ``w2s ARGS``; returns the exit code (0, or 2 for bad input)."""
    args = list(sys.argv[1:] if args is None else args)
    from w2s.console import configure, quiet_libraries

    configure(verbose="--verbose" in args)
    args = [a for a in args if a != "--verbose"]
    try:
        if args and args[0] in STAGES:
            quiet_libraries()
            stage_cli(args[0], args[1:])
            return 0
        if args[:1] == ["pipeline"]:
            return pipeline(args[1:])
        check_config_files(args)
        parsed = build_parser().parse_args(args)
        if parsed.command == "data":
            sub = parsed.data
            if sub.action == "check":
                c = sub.check
                data_check(c.path, c.text_column, c.label_column, getattr(c, "format"))
            else:
                data_preview(**_arguments(sub.preview))
        elif parsed.command == "sweep":
            from w2s.sweeps import run_sweep

            quiet_libraries()
            run_sweep(**_arguments(parsed.sweep))
        elif parsed.command == "defenses":
            list_defenses()
        elif parsed.command == "adapters":
            quiet_libraries()
            sub = parsed.adapters
            if sub.action == "build":
                adapters_build(instantiate(build_parser(), parsed).adapters.build.benchmark, sub.build.processes)
            else:
                (adapters_train if sub.action == "train" else adapters_eval)(**_arguments(sub[sub.action]))
        elif parsed.command == "inspect":
            quiet_libraries()
            inspect_models(**_arguments(parsed.inspect))
        elif parsed.command == "inspect-population":
            quiet_libraries()
            inspect_population(instantiate(build_parser(), parsed)["inspect-population"].population)
        elif parsed.command == "scan":
            quiet_libraries()
            scan_adapters(**_arguments(parsed.scan))
        elif parsed.command == "evaluate":
            quiet_libraries()
            evaluate(**_arguments(parsed.evaluate))
    except SystemExit as done:  # argument errors (code 2) and --help (0) from the parsers
        return done.code if isinstance(done.code, int) else 2
    except (DataError, ValueError, OSError, ArgumentError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 2
    return 0


def _arguments(namespace) -> dict:
    return {k: v for k, v in vars(namespace).items() if k not in ("__path__", "config")}


if __name__ == "__main__":
    sys.exit(main())
