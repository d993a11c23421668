"""A W&B sweep file (https://docs.wandb.ai/guides/sweeps/sweep-config-keys), read for the local
engine: the same file drives ``wandb sweep FILE`` + ``wandb agent ID`` and ``w2s sweep FILE``.

Supported here: ``method`` grid / random / bayes; ``metric`` {name, goal}; ``run_cap``;
``parameters`` with flat dotted keys (``defenses.w2s.objective.fa``) given by ``value``,
``values``, or ``min``/``max`` with ``distribution`` int_uniform, uniform, q_uniform,
log_uniform_values or log_uniform; ``command`` calling the w2s entry point (``w2s ...`` or
``python -m w2s.cli ...``) with ``${args}``. ``early_terminate`` is ignored (trials run whole).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import yaml

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = ("int_uniform", "uniform", "q_uniform", "log_uniform_values", "log_uniform")
DROPPED_MACROS = ("${env}", "${interpreter}")


class SweepError(ValueError):
    """A sweep file the local engine cannot run (one line, naming the key)."""


@dataclass(frozen=True)
class Parameter:
    """One searched setting: ``values`` (categorical), or ``low``/``high`` with a distribution."""

    name: str
    values: Optional[tuple] = None
    distribution: Optional[str] = None
    low: Optional[float] = None
    high: Optional[float] = None
    q: Optional[float] = None

    @property
    def choices(self) -> list:
        """``values`` as Optuna's categorical choices, which must be scalars: others go as JSON."""
        return [v if _scalar(v) else json.dumps(v) for v in self.values]

    @property
    def bounds(self) -> tuple[Any, Any]:
        """``min``/``max`` as values (W&B's ``log_uniform`` gives their natural logs)."""
        if self.distribution == "log_uniform":
            return math.exp(self.low), math.exp(self.high)
        if self.distribution == "int_uniform":
            return int(self.low), int(self.high)
        return self.low, self.high

    @property
    def ends(self) -> tuple[Any, Any]:
        """The first and the last value (``values``) or the bounds."""
        return (self.values[0], self.values[-1]) if self.values is not None else self.bounds

    def grid(self) -> list:
        """Every value a grid visits (as Optuna sees it)."""
        if self.values is not None:
            return self.choices
        if self.distribution == "int_uniform":
            return list(range(self.bounds[0], self.bounds[1] + 1))
        raise SweepError(f"parameters.{self.name}: a grid needs values (or an int_uniform range), "
                         f"not a {self.distribution} distribution")

    def sample(self, trial) -> Any:
        """This parameter's value for an Optuna trial."""
        if self.values is not None:
            return self.values[self.choices.index(trial.suggest_categorical(self.name, self.choices))]
        if self.distribution == "int_uniform":
            return trial.suggest_int(self.name, *self.bounds)
        return trial.suggest_float(self.name, *self.bounds, step=self.q,
                                   log=self.distribution in ("log_uniform", "log_uniform_values"))


@dataclass(frozen=True)
class SweepSpec:
    name: str
    method: str
    metric: str
    goal: str
    parameters: tuple[Parameter, ...]
    constants: dict[str, Any]
    command: tuple[str, ...]
    run_cap: Optional[int] = None

    @property
    def stage(self) -> str:
        """The results-table row the metric reads (``w2s`` in ``w2s/asr``)."""
        return self.metric.split("/")[0]

    def grid(self) -> dict[str, list]:
        return {p.name: p.grid() for p in self.parameters}

    def grid_size(self) -> int:
        return math.prod(len(values) for values in self.grid().values())

    def argv(self, values: dict[str, Any]) -> list[str]:
        """The entry point's arguments for one trial: ``${args}`` becomes ``--key=value`` for
        the constants and ``values``, as a W&B agent passes them."""
        settings = self.constants | values
        args = [f"--{key}={_text(value)}" for key, value in settings.items()]
        return [a for token in self.command for a in (args if token == "${args}" else [token])]


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def _text(value: Any) -> str:
    """A value as W&B's ``${args}`` writes it, parsed back as YAML by the CLI."""
    return value if isinstance(value, str) else json.dumps(value)


def _parameter(name: str, spec: Any) -> tuple[Optional[Parameter], Any]:
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        raise SweepError(f"{where}: expected a mapping with value, values or min/max")
    if "parameters" in spec:
        raise SweepError(f"{where}: nested parameters are not supported; use flat dotted keys "
                         f"such as defenses.w2s.objective.fa")
    unknown = set(spec) - {"value", "values", "min", "max", "distribution", "q"}
    if unknown:
        raise SweepError(f"{where}: unsupported keys {', '.join(sorted(unknown))}")
    if "value" in spec:
        return None, spec["value"]
    distribution = spec.get("distribution")
    if "values" in spec:
        values = spec["values"]
        if not isinstance(values, list) or not values or distribution not in (None, "categorical"):
            raise SweepError(f"{where}: values must be a non-empty list")
        return Parameter(name, values=tuple(values)), None
    if "min" not in spec or "max" not in spec:
        raise SweepError(f"{where}: give value, values, or both min and max")
    low, high = spec["min"], spec["max"]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (low, high)) or low > high:
        raise SweepError(f"{where}: min and max must be numbers with min <= max, got {low!r} and {high!r}")
    distribution = distribution or ("int_uniform" if isinstance(low, int) and isinstance(high, int) else "uniform")
    if distribution not in DISTRIBUTIONS:
        raise SweepError(f"{where}: distribution {distribution!r} is not supported by w2s sweep; "
                         f"supported: {', '.join(DISTRIBUTIONS)}")
    if distribution == "log_uniform_values" and low <= 0:
        raise SweepError(f"{where}: log_uniform_values needs min > 0")
    if distribution == "q_uniform" and "q" not in spec:
        raise SweepError(f"{where}: q_uniform needs q")
    return Parameter(name, distribution=distribution, low=low, high=high, q=spec.get("q")), None


def _entry_point(command: list[str], where: str) -> list[str]:
    """The arguments after the w2s entry point."""
    tokens = [t for t in command if t not in DROPPED_MACROS]
    if tokens and Path(tokens[0]).name == "w2s":
        return tokens[1:]
    for i in range(len(tokens) - 1):
        if tokens[i:i + 2] == ["-m", "w2s.cli"]:
            return tokens[i + 2:]
    raise SweepError(f"{where}: must call the w2s entry point (w2s pipeline ... or python -m w2s.cli pipeline ...)")


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a W&B sweep file (one-line :class:`SweepError` naming the key)."""
    path = Path(path)
    if not path.is_file():
        raise SweepError(f"{path}: no such sweep file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SweepError(f"{path}: not YAML: {' '.join(str(err).split())}") from None
    if not isinstance(data, dict):
        raise SweepError(f"{path}: expected a mapping (a W&B sweep config)")
    method = data.get("method")
    if method not in METHODS:
        raise SweepError(f"{path}: method: {method!r} is not one of {', '.join(METHODS)}")
    metric = data.get("metric") or {}
    goal = metric.get("goal", "minimize")
    if goal not in GOALS:
        raise SweepError(f"{path}: metric.goal: {goal!r} is not one of {', '.join(GOALS)}")
    if not metric.get("name"):
        raise SweepError(f"{path}: metric.name: w2s sweep needs the metric to optimise and to rank trials by")
    if not isinstance(data.get("parameters"), dict) or not data["parameters"]:
        raise SweepError(f"{path}: parameters: name at least one")
    parameters, constants = [], {}
    for name, spec in data["parameters"].items():
        try:
            parameter, constant = _parameter(name, spec)
        except SweepError as err:
            raise SweepError(f"{path}: {err}") from None
        if parameter is None:
            constants[name] = constant
        else:
            parameters.append(parameter)
    command = data.get("command")
    if not isinstance(command, list) or "${args}" not in command:
        raise SweepError(f"{path}: command: a list calling the w2s entry point with ${{args}}")
    argv = _entry_point([str(t) for t in command], f"{path}: command")
    macros = [t for t in argv if t.startswith("${") and t != "${args}"]
    if macros:
        raise SweepError(f"{path}: command: {macros[0]} is not supported by w2s sweep (use ${{args}})")
    if argv[:1] != ["pipeline"]:
        raise SweepError(f"{path}: command: a sweep runs `w2s pipeline ...`, got `w2s {' '.join(argv[:1])}`")
    spec = SweepSpec(name=path.stem, method=method, metric=metric.get("name"), goal=goal,
                     parameters=tuple(parameters), constants=constants, command=tuple(argv),
                     run_cap=data.get("run_cap"))
    if method == "grid":
        try:
            spec.grid()
        except SweepError as err:
            raise SweepError(f"{path}: {err}") from None
    return spec
