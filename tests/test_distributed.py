"""The pipeline in several processes (DDP and FSDP, 2 gloo processes on CPU): the same stages,
steps and metrics as one process; the data split that makes it so; one writer."""
import csv
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from torchdata.stateful_dataloader import StatefulDataLoader
from torchdata.stateful_dataloader.sampler import RandomSampler

from tests import tiny
from tests.helpers import run, tiny_args, write_config
from tests.helpers import KILLER, LONGER
from w2s.data.sampling import EpochPermutation, ProcessBatches
from w2s.pipeline.runs import load_manifest

# No dropout anywhere: with it, two processes draw other masks than one (same distribution,
# other numbers), and this test compares numbers.
DEFENSES = ("defenses:\n  lora: {epochs: 2, lr: 3.0e-3, lora: {r: 4, dropout: 0}}\n"
            "  w2s: {epochs: 2, lr: 3.0e-3, lora: {r: 4, dropout: 0}, objective: {ce: 1, kd: 1, fa: 1}}\n"
            "  obliviate: {epochs: 2, lr: 3.0e-3, lora: {r: 4, dropout: 0}}\n"  # adapter norms: whole under FSDP
            "  fine-mixing: {epochs: 2, lr: 3.0e-3, lora: {r: 4, dropout: 0}}\n"
            "  psim: {epochs: 2, lr: 3.0e-3, lora: {r: 4, dropout: 0}, options: {module: lora, false_alarm: 0.3}}\n")
LEARN = ["--poison.train_rows", "[0, 192]", "--teacher.train_rows", "[0, 192]", "--defense_rows", "[192, 288]",
         "--poison.epochs", "3", "--teacher.epochs", "3", "--poison.lr", "3e-3", "--teacher.lr", "3e-3",
         "--max_eval_rows", "64", "--bucket_batches", "2"]  # length buckets: shared out like any batch
RESUMED_DEFENSES = "defenses:\n  w2s: {epochs: 3, batch_size: 4, keep: last, lora: {r: 4, dropout: 0}, objective: {kd: 1, fa: 1}}\n"
STAGES = ("poisoned", "teacher", "defenses/lora", "defenses/w2s", "defenses/obliviate", "defenses/fine-mixing",
          "defenses/psim")
WEIGHTS = ("poisoned/model/model.safetensors", "teacher/model/encoder/model.safetensors",
           "defenses/lora/model/adapter/adapter_model.safetensors", "defenses/w2s/model/adapter/adapter_model.safetensors",
           "defenses/obliviate/model/adapter/adapter_model.safetensors")
METRICS = ("ca", "dev_ca", "asr", "asr_clean_correct", "balanced_accuracy", "macro_f1", "majority_share")


def test_one_process_order_is_the_seeded_permutation_of_each_epoch():
    """The same order as a stateful RandomSampler with a generator seeded once (the order of
    earlier versions), epoch by epoch."""
    reference = RandomSampler(range(50), generator=torch.Generator().manual_seed(3))
    sampler = EpochPermutation(50, seed=3)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        assert list(sampler) == list(reference)
    sampler.set_epoch(1)
    assert list(sampler) != list(EpochPermutation(50, seed=3))


@pytest.mark.parametrize("n, batch, world", [(48, 16, 2), (50, 16, 2), (49, 16, 3), (17, 16, 2), (33, 16, 4)])
def test_processes_split_every_global_batch(n, batch, world):
    sampler = EpochPermutation(n, seed=0)
    whole = list(ProcessBatches(sampler, batch))
    shares = [list(ProcessBatches(sampler, batch, rank, world)) for rank in range(world)]
    assert len({len(s) for s in shares}) == 1 and all(len(s) == len(ProcessBatches(sampler, batch, r, world))
                                                      for r, s in enumerate(shares))
    for step, rows in enumerate(zip(*shares)):
        assert sorted(sum(rows, [])) == sorted(whole[step])                 # the one-process batch, split
        assert max(map(len, rows)) - min(map(len, rows)) <= 1 and min(map(len, rows)) >= 1
    dropped = len(whole) - len(shares[0])
    assert dropped == (1 if 0 < n % batch < world else 0)                  # a tail too small to share


def test_a_resumed_loader_continues_the_order():
    """What Lightning does on resume: a new loader, its saved state, then set_epoch, then iter."""
    def loader():
        return StatefulDataLoader(list(range(40)), batch_sampler=ProcessBatches(EpochPermutation(40, 1), 8, 1, 2))

    first = loader()
    first.batch_sampler.sampler.set_epoch(2)
    it = iter(first)
    seen = [next(it).tolist() for _ in range(2)]
    state = first.state_dict()
    rest = [b.tolist() for b in it]
    second = loader()
    second.load_state_dict(state)
    second.batch_sampler.sampler.set_epoch(2)
    assert [b.tolist() for b in second] == rest and len(seen) + len(rest) == 5


@pytest.fixture(scope="module")
def one_process(tmp_path_factory, task):
    """The tiny pipeline in one process: (config, models, its runs folder)."""
    root = tmp_path_factory.mktemp("one_process")
    models = {"llama": str(tiny.make_llama(root / "llama")), "bert": str(tiny.make_bert(root / "bert", dropout=0.0))}
    config = write_config(root, task, defenses=DEFENSES)
    assert run(config, models, root / "one", *LEARN) == 0
    return config, models, root / "one"


@pytest.mark.parametrize("strategy", ["auto", "fsdp"])  # auto: DDP
def test_pipeline_in_two_processes_matches_one(tmp_path, one_process, strategy):
    config, models, one_runs = one_process
    env = os.environ | {"PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "w2s", "pipeline", "--config", str(config), *tiny_args(models, tmp_path / "two"),
               *LEARN, "--trainer.devices", "2", "--trainer.strategy", strategy]
    two = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("| w2s |") == 1                              # one table: the other process is quiet
    assert two.stdout.count(": training (") == len(STAGES)
    for stage in STAGES:
        one, both = (load_manifest(runs / "tiny" / stage) for runs in (one_runs, tmp_path / "two"))
        assert both["processes"] == 2 and one["processes"] == 1
        for metric in METRICS:
            assert both["metrics"][metric] == pytest.approx(one["metrics"][metric], abs=1e-6), (stage, metric)
    psim = [load_manifest(runs / "tiny" / "defenses" / "psim")["info"]["threshold"] for runs in (one_runs, tmp_path / "two")]
    assert psim[1] == pytest.approx(psim[0], abs=1e-6)                  # calibrated on every process's dev rows
    for weights in WEIGHTS:                                                # the same steps
        one, both = (load_file(runs / "tiny" / weights) for runs in (one_runs, tmp_path / "two"))
        assert one.keys() == both.keys() and all(torch.allclose(one[k], both[k], rtol=1e-4, atol=1e-5) for k in one)
    trained = load_manifest(one_runs / "tiny" / "poisoned")["metrics"]
    assert trained["ca"] > 0.75 and trained["majority_share"] < 0.5       # it learned: the match is not trivial
    rows = [list(csv.DictReader(open(runs / "tiny" / "results.csv"))) for runs in (one_runs, tmp_path / "two")]
    assert [r["defense"] for r in rows[1]] == [r["defense"] for r in rows[0]]
    assert not list((tmp_path / "two").rglob(".*.tmp-*"))                 # nothing half-written left
    rerun = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert rerun.returncode == 0 and rerun.stdout.count("up to date, reused") == len(STAGES), rerun.stderr[-2000:]


POR = ["--attack.name", "por", "--poison.train_rows", "[0, 96]", "--defense_rows", "[96, 160]", "--poison.epochs", "2",
       "--poison.lr", "3e-3", "--max_eval_rows", "16", "--poison.head.epochs", "2"]
POR_DEFENSES = "defenses:\n  lora: {epochs: 1, lr: 3.0e-3, lora: {r: 4, dropout: 0}}\n"


def test_por_poisoning_in_two_processes_matches_one(tmp_path, task):
    """POR's clean reference states come from every process's share of the rows (a process
    alone has only its own rows: indexing all of them failed)."""
    models = {"llama": str(tiny.make_llama(tmp_path / "llama")), "bert": str(tiny.make_bert(tmp_path / "bert"))}
    config = write_config(tmp_path, task, defenses=POR_DEFENSES)
    assert run(config, models, tmp_path / "one", *POR) == 0
    env = os.environ | {"PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    command = [sys.executable, "-m", "w2s", "pipeline", "--config", str(config), *tiny_args(models, tmp_path / "two"),
               *POR, "--trainer.devices", "2"]
    two = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    for stage in ("poisoned", "defenses/lora"):
        one, both = (load_manifest(runs / "tiny" / stage)["metrics"] for runs in (tmp_path / "one", tmp_path / "two"))
        assert all(both[m] == pytest.approx(one[m], abs=1e-6) for m in ("ca", "asr")), stage
    one, both = (load_file(runs / "tiny" / "poisoned" / "pretrained" / "model.safetensors")
                 for runs in (tmp_path / "one", tmp_path / "two"))
    assert all(torch.allclose(one[k], both[k], rtol=1e-4, atol=1e-5) for k in one)


def test_fsdp_stages_killed_mid_epoch_resume_exactly(tmp_path, task):
    """Two FSDP processes (started by torchrun) killed mid-epoch in the poisoned student (full
    fine-tuning, keeping its best epoch) and then in a LoRA defense resume from their gathered
    checkpoints and end as an uninterrupted FSDP run: the same weights, the same metrics. (FSDP
    restores after Lightning has started the train loader: the resumed epoch must still skip
    the batches it took.)"""
    models = {"llama": str(tiny.make_llama(tmp_path / "llama")), "bert": str(tiny.make_bert(tmp_path / "bert", dropout=0))}
    config = write_config(tmp_path, task, defenses=RESUMED_DEFENSES)
    env = os.environ | {"PYTHONPATH": os.getcwd(), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]

    def pipeline(runs, script=("-m", "w2s")):
        return subprocess.run([*torchrun, *script, "pipeline", "--config", str(config), *tiny_args(models, tmp_path / runs),
                               *LONGER, "--trainer.devices", "2", "--trainer.strategy", "fsdp"],
                              capture_output=True, text=True, env=env, timeout=600)

    for stage in ("poisoned", "w2s"):
        killer = tmp_path / f"kill_{stage}.py"
        killer.write_text(KILLER.format(step=17, name=stage))
        assert pipeline("runs", (str(killer),)).returncode != 0
    resumed = pipeline("runs")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert pipeline("whole").returncode == 0
    for stage in ("poisoned", "teacher", "defenses/w2s"):
        one, other = (load_manifest(tmp_path / runs / "tiny" / stage) for runs in ("runs", "whole"))
        assert one["metrics"] == other["metrics"] and one["processes"] == 2, stage
    for stage in ("poisoned", "defenses/w2s"):
        assert load_manifest(tmp_path / "runs" / "tiny" / stage)["info"]["resumed"] == [stage.split("/")[-1]]
    for weights in (*WEIGHTS[:2], WEIGHTS[3]):
        one, other = (load_file(tmp_path / runs / "tiny" / weights) for runs in ("runs", "whole"))
        assert one.keys() == other.keys() and all(torch.equal(one[k], other[k]) for k in one), weights


def test_each_process_loads_its_share_of_the_rows(task, models):
    """Training, teacher-cache and evaluation rows split across two processes, none twice."""
    from types import SimpleNamespace

    from w2s.data.datamodule import W2SDataModule

    def rows(rank):
        data = W2SDataModule(task, tokenizer=models["llama"], train_rows=(0, 40), max_eval_rows=30, batch_size=8)
        data.trainer = SimpleNamespace(global_rank=rank, world_size=2)
        data.setup("fit")
        loaders = {"train": [data.train_dataloader()], "teacher": [data.teacher_dataloader()],
                   "test": data.test_dataloader()}
        return {name: [sorted(torch.cat([b["index"] for b in loader]).tolist()) for loader in group]
                for name, group in loaders.items()}

    first, second = rows(0), rows(1)
    for name in ("train", "teacher", "test"):
        for a, b in zip(first[name], second[name]):
            assert not set(a) & set(b) and abs(len(a) - len(b)) <= 1
    assert sorted(first["train"][0] + second["train"][0]) == list(range(40))
    assert sorted(first["test"][0] + second["test"][0]) == list(range(30))
