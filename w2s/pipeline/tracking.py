"""One W&B run per pipeline invocation.

The run's config is the resolved pipeline config; every stage trained in this invocation logs
its curves into the same run under its own name (``w2s/train/loss``, ``poisoned/val/ca``);
at the end the run gets the results table (``results``, a ``wandb.Table``), the chart
(``chart``) and the summary a sweep optimises: ``<defense>/<column>`` for every row of the
table (``w2s/asr``, ``w2s/ca``, ``w2s/asr_clean_correct``, ...). Stages reused from an
earlier invocation log no curves, but their rows are in the table and the summary.
"""
from __future__ import annotations

import netrc
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

from pytorch_lightning.loggers import WandbLogger

from w2s import distributed
from w2s.config.jsonable import to_jsonable
from w2s.pipeline.config import PipelineConfig
from w2s.pipeline.report import columns, summary


class StageLogger(WandbLogger):
    """Lightning's W&B logger writing one stage's metrics as ``<stage>/<metric>`` into the
    invocation's run."""

    LOGGER_JOIN_CHAR = "/"

    def __init__(self, run, stage: str):
        super().__init__(experiment=run, prefix=stage)

    def log_hyperparams(self, params: Any) -> None:
        """Nothing: the run's config is the resolved pipeline config, which holds every stage's
        settings (each stage's module hyperparameters are in its CSV logs' ``hparams.yaml``)."""


def _has_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    host = urlparse(os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")).hostname
    try:
        return netrc.netrc(os.environ.get("NETRC")).authenticators(host) is not None
    except (OSError, netrc.NetrcParseError):
        return False


def resolve_mode(mode: str) -> str:
    """``auto``: ``WANDB_MODE`` if set; online under a W&B agent or with credentials; else offline."""
    if mode != "auto":
        return mode
    if os.environ.get("WANDB_MODE"):
        return os.environ["WANDB_MODE"]
    return "online" if os.environ.get("WANDB_SWEEP_ID") or _has_credentials() else "offline"


@contextmanager
def tracking_run(config: PipelineConfig, folder: Path) -> Iterator[Any]:
    """The invocation's W&B run (files under ``folder/wandb``), or ``None`` when disabled; a
    failure inside marks the run failed. Only process 0 of a multi-process run has one."""
    mode = resolve_mode(config.wandb.mode)
    if mode == "disabled" or not distributed.is_writer():
        yield None
        return
    import wandb

    folder.mkdir(parents=True, exist_ok=True)
    options = config.wandb
    run = wandb.init(project=options.project, entity=options.entity, group=options.group, tags=list(options.tags),
                     name=config.experiment, dir=str(folder), mode=mode, config=to_jsonable(config),
                     settings=wandb.Settings(console="off", silent=True))
    where = Path(run.dir).parent
    print(f"w2s: W&B run {run.id} ({mode}): {where}" + (f" (upload later: wandb sync {where})"
                                                          if mode == "offline" else ""), flush=True)
    exit_code = 1
    try:
        yield run
        exit_code = 0
    finally:  # waits for W&B's service to write everything out: the run's files are complete on return
        run.finish(exit_code=exit_code)
        wandb.teardown()


def log_results(run, rows: list[dict], chart: Path) -> None:
    """The final table, chart and summary metrics of the invocation."""
    import wandb

    names = columns()
    run.log({"results": wandb.Table(columns=list(names), data=[[row.get(c) for c in names] for row in rows]),
             "chart": wandb.Image(str(chart))})
    run.summary.update(summary(rows))
