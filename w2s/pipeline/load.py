"""Read a pipeline configuration: YAML files, dotted overrides and defense entries, checked
before anything runs. ``load_config(args)`` is what ``w2s pipeline ARGS`` runs, and what
sweep trials and notebooks call (``w2s.pipeline.run_pipeline(config)`` then runs it).

Errors are one ``ValueError`` naming the key, or ``FILE:LINE`` for a YAML file that does not
parse. Pure, like the settings it reads: no torch or Lightning."""
from __future__ import annotations

from argparse import ArgumentError
from typing import Any, Optional

from jsonargparse import ActionConfigFile, ArgumentParser

from w2s.config.jsonable import to_jsonable
from w2s.defenses import DEFENSES
from w2s.pipeline.config import PipelineConfig, default_defenses


def strict_parser(**kwargs) -> ArgumentParser:
    """A parser that raises ``ArgumentError`` (``w2s.cli.main`` prints it on one line, exit 2)
    instead of printing its usage text."""
    return ArgumentParser(exit_on_error=False, **kwargs)


def check_config_files(args: list[str]) -> None:
    """Each ``--config FILE`` exists and is YAML; errors as ``FILE:LINE: problem``."""
    import yaml

    files = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--config"]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in files:
        try:
            yaml.safe_load(open(path))
        except OSError as err:
            raise ValueError(f"{path}: {err.strerror.lower()}") from None
        except yaml.MarkedYAMLError as err:
            mark = err.problem_mark or err.context_mark
            context = f" ({err.context} at line {err.context_mark.line + 1})" if err.context and err.context_mark else ""
            raise ValueError(f"{path}:{mark.line + 1}: {err.problem or err.context}{context}") from None
        except yaml.YAMLError as err:
            raise ValueError(f"{path}: not YAML ({' '.join(str(err).split())})") from None


def pipeline_parser() -> ArgumentParser:
    parser = strict_parser(prog="w2s pipeline", description="attack -> teacher -> poisoned student -> "
                            "defenses -> CA/ASR table, from one YAML (stages whose inputs did not change are reused).")
    parser.add_argument("--config", action=ActionConfigFile, help="experiment YAML (see experiments/)")
    parser.add_class_arguments(PipelineConfig, None, skip={"defenses"})
    # each entry holds changes to its method's defaults, resolved by PipelineConfig (w2s.defenses)
    parser.add_argument("--defenses", type=dict[str, Optional[dict[str, Any]]],
                        default=to_jsonable(default_defenses()),
                        help=f"name -> changes to its method's defaults; methods: {', '.join(sorted(DEFENSES))}")
    return parser


DEFENSE_KEY = "--defenses."


def defense_overrides(args: list[str]) -> tuple[list[str], dict[str, Any]]:
    """Split off flat dotted defense settings, ``--defenses.w2s.objective.fa=0.5`` (or with the
    value as the next argument), the form W&B sweep agents pass (``${args}``); values are
    YAML. Returns the other arguments and ``{dotted key: value}``."""
    import yaml

    rest, overrides, i = [], {}, 0
    while i < len(args):
        arg = args[i]
        if arg.startswith(DEFENSE_KEY) and len(arg) > len(DEFENSE_KEY):
            key, eq, value = arg[len(DEFENSE_KEY):].partition("=")
            if not eq:
                if i + 1 == len(args):
                    raise ValueError(f"{arg}: expected a value")
                i, value = i + 1, args[i + 1]
            try:
                overrides[key] = yaml.safe_load(value)
            except yaml.YAMLError:
                raise ValueError(f"{DEFENSE_KEY}{key}: not a YAML value: {value!r}") from None
        else:
            rest.append(arg)
        i += 1
    return rest, overrides


def load_config(args: list[str]) -> PipelineConfig:
    """The :class:`PipelineConfig` of ``w2s pipeline ARGS``: ``--config FILE`` (any number, later
    ones change earlier ones), ``--key value`` overrides, and flat dotted defense settings
    (``--defenses.w2s.objective.fa=0.5``, the form W&B sweep agents pass). ``--help`` exits
    (``SystemExit``) after printing the settings."""
    check_config_files(args)
    args, overrides = defense_overrides(args)
    parser = pipeline_parser()
    parsed = parser.parse_args(args)
    defenses = parsed.defenses
    for key, value in overrides.items():
        name, *path = key.split(".")
        if not path:
            defenses[name] = value
            continue
        entry = defenses[name] = dict(defenses.get(name) or {})
        for part in path[:-1]:
            entry[part] = dict(entry[part]) if isinstance(entry.get(part), dict) else {}
            entry = entry[part]
        entry[path[-1]] = value
    try:
        return PipelineConfig(**{k: v for k, v in vars(instantiate(parser, parsed)).items()
                                 if k not in ("__path__", "config")})
    except (ValueError, TypeError) as err:
        section = _failing_section(parsed)  # the key the message names, if it names none
        raise ValueError(f"{section + ': ' if section else ''}{' '.join(str(err).split())}") from None


def instantiate(parser: ArgumentParser, parsed):
    # newer jsonargparse releases name it instantiate, older ones instantiate_classes
    return (getattr(parser, "instantiate", None) or parser.instantiate_classes)(parsed)


def _failing_section(namespace) -> Optional[str]:
    """The first settings section (``teacher``, ``attack``, ...) of a parsed pipeline command
    that fails on its own: the key an error message names."""
    from dataclasses import is_dataclass
    from typing import get_type_hints

    for name, kind in get_type_hints(PipelineConfig).items():
        if not (isinstance(kind, type) and is_dataclass(kind)) or name not in namespace:
            continue
        section = strict_parser()
        section.add_class_arguments(kind, name)
        try:
            instantiate(section, section.parse_object({name: namespace[name].as_dict()}))
        except (ValueError, TypeError, ArgumentError):
            return name
    return None
