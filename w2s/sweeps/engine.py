"""``w2s sweep FILE``: a W&B sweep file run without a W&B server, on Optuna.

W&B's ``grid`` / ``random`` / ``bayes`` become Optuna's ``GridSampler`` / ``RandomSampler`` /
``TPESampler``. Every trial is a normal pipeline run, :func:`run_trial` (the file's ``command``
with ``${args}`` filled in, read by ``w2s.pipeline.load``, run by ``w2s.pipeline``) writing its report (and W&B run) to
``<experiment>/sweeps/<sweep>/trials/<hash of the trial's values>/``; its stages stay in the
experiment folder, so the poisoned student, the teacher and every defense a trial leaves
unchanged are trained once and shared by all trials (``report_dir`` in ``PipelineConfig``).

The study lives in Optuna storage (default: ``study.db``, SQLite, in the sweep folder):
``--trials N`` asks for N finished trials in all, so running the same command again after an
interruption runs only the missing ones. A trial stopped by Ctrl-C is queued again; one whose
process died is found by Optuna's heartbeat (after ``GRACE_S``) and queued again. Several
machines: point ``--storage`` at one database server (``postgresql://...``) and run
``w2s sweep FILE --storage URL`` on each.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any

from w2s.metrics.specs import columns as metric_columns
from w2s.pipeline.report import numeric
from w2s.config.jsonable import to_jsonable
from w2s.pipeline.load import load_config
from w2s.config.jsonable import fingerprint
from w2s.sweeps.report import trial_rows, write_trials
from w2s.sweeps.seeds import SEED, over_seeds, write_seeds
from w2s.sweeps.spec import SweepError, SweepSpec, load_sweep

HEARTBEAT_S, GRACE_S = 10, 60
MAX_RETRY = 2
TOP_STAGES = ("poisoned", "teacher")


class TrialFailed(Exception):
    """A trial whose pipeline run did not produce the metric (recorded, not retried)."""


def base_config(spec: SweepSpec, values: dict[str, Any]):
    """The trial's resolved :class:`PipelineConfig`, without running it (errors name the values)."""
    try:
        return load_config(spec.argv(values)[1:])
    except ValueError as err:
        raise SweepError(f"{spec.name}: command with {values}: {err}") from None


def check(spec: SweepSpec):
    """Before any training: the command with every parameter at its first and at its last value
    must give a valid config, and the metric must name a row and column of the results table.
    Returns the config with the first values."""
    first = base_config(spec, {p.name: p.ends[0] for p in spec.parameters})
    last = base_config(spec, {p.name: p.ends[1] for p in spec.parameters})
    if max(first.trainer.processes, last.trainer.processes) > 1:
        raise SweepError(f"{spec.name}: trials run in this process: trainer.devices x trainer.num_nodes must be 1 "
                         f"(run several trials at once with --parallel, or a multi-device trial with w2s pipeline)")
    column = spec.metric.partition("/")[2]
    stages = (*TOP_STAGES, *first.defenses)
    if spec.stage not in stages or column not in numeric():
        raise SweepError(f"{spec.name}: metric.name {spec.metric!r} is not <stage>/<column> with stage one of "
                         f"{', '.join(stages)} and column one of {', '.join(numeric())}")
    metric = dict(metric_columns()).get(column)
    if metric is not None and metric.rows == "triggered" and column == metric.name:  # reported, never ranked by
        better = f"rank by {spec.stage}/dev_{column} (triggered dev rows; parameters: dev_asr: {{value: true}})" \
            if metric.dev else "rank by a metric of clean rows or of triggered dev rows"
        raise SweepError(f"{spec.name}: metric.name {spec.metric!r} ranks trials by a metric of the triggered test "
                         f"rows the results report: {better}")
    if metric is not None and metric.rows == "triggered" and not (first.dev_asr and last.dev_asr):
        raise SweepError(f"{spec.name}: metric.name {spec.metric!r} needs dev_asr: true in every trial "
                         f"(parameters: dev_asr: {{value: true}})")
    return first


def sweep_folder(spec: SweepSpec, config=None) -> Path:
    """``<runs_dir>/<experiment>/sweeps/<sweep name>/``: the study, the trial reports and the table."""
    config = config or check(spec)
    return Path(config.runs_dir) / config.experiment / "sweeps" / spec.name


def finished(study) -> int:
    """Trials that ended (complete, or failed with a recorded error); interrupted ones do not count."""
    from optuna.trial import TrialState

    return sum(t.state == TrialState.COMPLETE or (t.state == TrialState.FAIL and "error" in t.user_attrs)
               for t in study.get_trials(deepcopy=False))


def _sampler(spec: SweepSpec, seed: int, offset: int):
    """The grid's order is fixed by ``seed`` alone (it maps trial numbers to points); the random
    and TPE seeds move on by ``offset``, so a resumed search does not propose its first points again."""
    import optuna

    if spec.method == "grid":
        return optuna.samplers.GridSampler(spec.grid(), seed=seed)
    if spec.method == "random":
        return optuna.samplers.RandomSampler(seed=seed + offset)
    return optuna.samplers.TPESampler(seed=seed + offset)


def open_study(spec: SweepSpec, storage: str, seed: int, worker: int = 0):
    """Create or load the study, with a sampler for this worker."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # each trial's outcome is printed by the objective
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats
    rdb = optuna.storages.RDBStorage(storage, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                     heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(MAX_RETRY))
    study = optuna.create_study(study_name=spec.name, storage=rdb, load_if_exists=True,
                                direction=spec.goal)
    return optuna.load_study(study_name=spec.name, storage=rdb,
                             sampler=_sampler(spec, seed, len(study.trials) + 7919 * worker))


def run_trial(args: list[str]) -> None:
    """One trial: ``w2s pipeline ARGS`` through the Python API (a bad value raises ``ValueError``)."""
    from w2s.pipeline import run_pipeline

    run_pipeline(load_config(args))


def _objective(spec: SweepSpec, folder: Path, current: dict):
    def objective(trial) -> float:
        current["trial"] = trial
        values = {p.name: p.sample(trial) for p in spec.parameters}
        report = folder / "trials" / fingerprint(values)
        trial.set_user_attr("values", to_jsonable(values))
        trial.set_user_attr("folder", str(report))
        print(f"w2s sweep: trial {trial.number}: " + " ".join(f"{k}={v}" for k, v in values.items()), flush=True)
        try:
            run_trial(spec.argv(values)[1:] + [f"--report_dir={report}", f"--wandb.group={spec.name}"])
            summary = json.loads((report / "summary.json").read_text())
            trial.set_user_attr("summary", summary)
            value = summary.get(spec.metric)
            if value is None:
                raise TrialFailed(f"{spec.metric} is n/a in this trial's results")
        except Exception as err:  # recorded on the trial; the sweep goes on
            trial.set_user_attr("error", " ".join(str(err).split()) or type(err).__name__)
            print(f"w2s sweep: trial {trial.number} failed: {trial.user_attrs['error']}", flush=True)
            raise TrialFailed(str(err)) from err
        print(f"w2s sweep: trial {trial.number}: {spec.metric} = {value:.4f}", flush=True)
        return value

    return objective


def work(file: str, storage: str, folder: str, quota: int, seed: int, worker: int = 0) -> None:
    """Run ``quota`` trials of the study (one worker process, or the sweep's own)."""
    spec = load_sweep(file)
    study = open_study(spec, storage, seed, worker)
    current: dict = {}
    try:
        study.optimize(_objective(spec, Path(folder), current), n_trials=quota, catch=(TrialFailed,))
    except KeyboardInterrupt:  # queue the interrupted trial's values again for the next run
        if "trial" in current:
            study.enqueue_trial(current["trial"].params)
        raise


def _spawn(file: str, storage: str, folder: Path, quotas: list[int], seed: int) -> None:
    """One process per quota; with several GPUs each process gets one of them."""
    import multiprocessing

    import torch

    context = multiprocessing.get_context("spawn")
    gpus, visible = torch.cuda.device_count(), os.environ.get("CUDA_VISIBLE_DEVICES")
    ids = visible.split(",") if visible else [str(i) for i in range(gpus)]
    processes = []
    for worker, quota in enumerate(quotas, start=1):
        if gpus > 1:  # a spawned process starts with the environment of this moment
            os.environ["CUDA_VISIBLE_DEVICES"] = ids[worker % len(ids)]
        process = context.Process(target=work, args=(file, storage, str(folder), quota, seed, worker))
        process.start()
        processes.append(process)
    if gpus > 1 and visible is None:
        del os.environ["CUDA_VISIBLE_DEVICES"]
    elif gpus > 1:
        os.environ["CUDA_VISIBLE_DEVICES"] = visible
    for process in processes:
        process.join()
    failed = [p.exitcode for p in processes if p.exitcode]
    if failed:
        raise RuntimeError(f"{len(failed)} sweep worker(s) exited with codes {failed}")


def run_sweep(file: str, trials: int | None = None, parallel: int = 1, storage: str | None = None,
              seed: int = 0) -> list[dict]:
    """Run a W&B sweep file locally until the study has ``trials`` finished trials (default:
    ``run_cap``, or the whole grid); print and write the trial table (best first)."""
    spec = load_sweep(file)
    if parallel < 1:
        raise SweepError(f"--parallel must be >= 1, got {parallel}")
    config = check(spec)
    total = trials if trials is not None else spec.run_cap or (spec.grid_size() if spec.method == "grid" else None)
    if total is None or total < 1:
        raise SweepError(f"{file}: --trials N (>= 1): a {spec.method} search has no natural end")
    if spec.method == "grid" and total > spec.grid_size():
        print(f"w2s sweep: the grid has {spec.grid_size()} points: running {spec.grid_size()}, not {total}")
        total = spec.grid_size()
    folder = sweep_folder(spec, config)
    folder.mkdir(parents=True, exist_ok=True)
    storage = storage or f"sqlite:///{(folder / 'study.db').resolve()}"
    study = open_study(spec, storage, seed)
    remaining = total - finished(study)
    print(f"w2s sweep: {spec.name} ({spec.method}, {spec.goal} {spec.metric}): {total - remaining} of {total} "
          f"trials finished; running {max(remaining, 0)}" + (f", {parallel} at a time" if parallel > 1 else "")
          + f" (study: {storage})", flush=True)
    if remaining > 0:
        first = 1 if parallel > 1 else remaining  # the first trial alone builds the shared stages
        work(file, storage, str(folder), first, seed)
        rest = remaining - first
        if rest > 0:
            workers = min(parallel, rest)
            _spawn(file, storage, folder, [rest // workers + (i < rest % workers) for i in range(workers)], seed)
    trials = study.get_trials(deepcopy=False)
    rows = trial_rows(trials, spec)
    print(write_trials(rows, spec, folder))
    if any(p.name == SEED for p in spec.parameters):
        done = [{"values": t.user_attrs["values"], "summary": t.user_attrs["summary"]} for t in trials
                if "summary" in t.user_attrs]  # every trial whose pipeline finished, ranked or not
        print(write_seeds(over_seeds(done), folder, f"sweep {spec.name}: mean ± sd over seeds"))
    return rows
