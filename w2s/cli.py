"""The one entry point: ``w2s`` on the shell, ``w2s.cli.main(args)`` from sweeps and notebooks.

Input errors (bad file, unknown name, invalid value) print one line, ``error: ...``, to
stderr and return exit code 2.
"""
from __future__ import annotations

import sys
from collections import Counter
from typing import Optional

from jsonargparse import ArgumentParser

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
    from w2s.attacks import PoisonConfig, build_attack, build_triggered_set, poison_examples
    from w2s.data.registry import get_dataset

    spec = get_dataset(dataset)
    config = PoisonConfig(attack=attack, mode=mode, target_label=target_label,
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


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="w2s", description="Backdoor unlearning by weak-to-strong distillation.")
    commands = parser.add_subcommands(dest="command")

    data = ArgumentParser(description="Inspect data files and poisoned datasets.")
    commands.add_subcommand("data", data)  # jsonargparse wants levels added top-down
    data_commands = data.add_subcommands(dest="action")
    check = ArgumentParser(description=data_check.__doc__)
    check.add_argument("path", type=str, help="a .jsonl / .json / .tsv / .csv file")
    check.add_argument("--text-column", "--text_column", type=Optional[str], help="name, or 0-based index if headerless")
    check.add_argument("--label-column", "--label_column", type=Optional[str], help="name, or 0-based index if headerless")
    check.add_argument("--format", type=Optional[str], help=f"one of {', '.join(FORMATS)}; default: detected")
    data_commands.add_subcommand("check", check)
    preview = ArgumentParser(description=data_preview.__doc__)
    preview.add_function_arguments(data_preview)
    data_commands.add_subcommand("preview", preview)
    return parser


def main(args: Optional[list[str]] = None) -> int:
    """Run ``w2s ARGS``; returns the exit code (0, or 2 for bad input)."""
    parsed = build_parser().parse_args(args)
    try:
        if parsed.command == "data":
            sub = parsed.data
            if sub.action == "check":
                c = sub.check
                data_check(c.path, c.text_column, c.label_column, getattr(c, "format"))
            else:
                data_preview(**{k: v for k, v in vars(sub.preview).items() if k != "__path__"})
    except (DataError, ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
