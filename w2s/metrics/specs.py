"""What a metric is to the rest of the framework. A :class:`MetricSpec`, registered once, drives
the evaluation step's update and logging (``ClassifierModule``: ``{val,test,dev}/NAME``), the
stage's manifest, the results table (``results.md``, ``results.csv``), the W&B summary
(``DEFENSE/NAME``) and the sweep's metric check (a metric on triggered rows is ranked by on dev
rows only). Pure: the registry imports no torch, so a method registers its metrics where it
registers itself."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

ROWS = ("clean", "triggered")


@dataclass
class EvalRows:
    """One evaluation batch. ``preds`` ``(N,)``; ``labels`` ``(N,)``: the true labels of clean rows,
    the attack's target on triggered rows (-1: task-agnostic, any change counts); on triggered
    rows, ``clean_preds``/``clean_labels`` ``(N,)`` are each row's clean version (None when the
    originals are unknown) and ``rows`` ``(N,)`` the source row of each version."""

    preds: Any
    labels: Any
    clean_preds: Optional[Any] = None
    clean_labels: Optional[Any] = None
    rows: Optional[Any] = None


@dataclass(frozen=True)
class MetricSpec:
    """``name``: the logged key and the column; ``label``: the results table's header; ``rows``:
    ``clean`` or ``triggered`` (uses the trigger: never ranked by on test rows); ``fmt``: its
    format in the table; ``table``: a column of ``results.md`` (every metric is a column of
    ``results.csv`` and the summary); ``dev``: its value on dev rows is a column too,
    ``dev_NAME`` (clean: the validation pass of the kept weights; triggered: the triggered dev
    rows, with ``dev_asr: true``). ``build(num_labels)`` makes the torchmetrics ``Metric`` and
    ``update(metric, rows: EvalRows)`` feeds it; without them the module that owns the metric
    (a filter's flag rates) logs it itself. ``needs_clean_version``: updated only on triggered
    rows whose clean version is known. ``headline``: in the progress bar."""

    name: str
    label: str
    rows: str
    fmt: str = ".3f"
    table: bool = True
    dev: bool = False
    build: Optional[Callable[[int], Any]] = None
    update: Optional[Callable[[Any, EvalRows], None]] = None
    needs_clean_version: bool = False
    headline: bool = False

    def __post_init__(self):
        if self.rows not in ROWS:
            raise ValueError(f"metric {self.name}: rows {self.rows!r}; valid: {', '.join(ROWS)}")
        if (self.build is None) != (self.update is None):
            raise ValueError(f"metric {self.name}: give both build and update, or neither (logged by its owner)")


METRICS: dict[str, MetricSpec] = {}


def register_metric(spec: MetricSpec) -> MetricSpec:
    """Add ``spec`` (once per name; registering the same spec again is a no-op)."""
    if METRICS.get(spec.name, spec) != spec:
        raise ValueError(f"metric {spec.name!r} is registered already")
    METRICS[spec.name] = spec
    return spec


def columns() -> list[tuple[str, MetricSpec]]:
    """``(column, spec)`` for every metric column in registry order, each ``dev_NAME`` after its metric."""
    return [(prefix + s.name, s) for s in METRICS.values() for prefix in ("", "dev_")[:1 + s.dev]]


def _metric(name: str, per_class: bool = False) -> Callable[[int], Any]:
    """``num_labels ->`` a ``w2s.metrics.modules.NAME`` (imported when first built: the registry
    stays free of torch)."""
    def build(num_labels: int):
        from w2s.metrics import modules

        return getattr(modules, name)(num_labels) if per_class else getattr(modules, name)()
    return build


def _clean(metric, rows: EvalRows) -> None:
    metric.update(rows.preds, rows.labels)


# The evaluation metrics every stage logs, in the results table's order.
for _spec in (
        MetricSpec("ca", "CA", "clean", dev=True, headline=True, build=_metric("CleanAccuracy"), update=_clean),
        MetricSpec("balanced_accuracy", "bal. acc", "clean", build=_metric("BalancedAccuracy", True), update=_clean),
        MetricSpec("macro_f1", "macro-F1", "clean", build=_metric("MacroF1", True), update=_clean),
        MetricSpec("majority_share", "majority share", "clean", table=False, build=_metric("MajorityShare"),
                   update=lambda m, r: m.update(r.preds)),
        MetricSpec("asr", "ASR", "triggered", dev=True, headline=True, build=_metric("AttackSuccessRate"),
                   update=lambda m, r: m.update(r.preds, r.labels, r.clean_preds, r.rows)),
        MetricSpec("asr_clean_correct", "ASR (clean-correct)", "triggered", dev=True, needs_clean_version=True,
                   build=_metric("CleanCorrectASR"),
                   update=lambda m, r: m.update(r.clean_preds, r.clean_labels, r.preds, r.labels, r.rows))):
    register_metric(_spec)
