import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "disabled")  # tests that need W&B set their mode

from hypothesis import settings  # noqa: E402

from tests import tiny  # noqa: E402
from tests.helpers import BACKDOOR, make_trainer  # noqa: E402

# Property tests draw the same examples on every run: a red CI is reproducible, never a coin toss.
settings.register_profile("w2s", derandomize=True, deadline=None)
settings.load_profile("w2s")

# Tiers: `unit` (pure functions, parsing, data, the command line: `make test-unit`, about a
# minute) and `integration` (trains tiny models or runs the pipeline); `slow` (the embedded
# models) and `gpu` are left out of `make test`. A test is integration when it asks for a
# fixture that builds models or lives in a module that runs whole pipelines.
MODEL_FIXTURES = {"models", "trained", "compared", "one_process"}
PIPELINE_MODULES = {"test_concurrency", "test_console", "test_determinism", "test_distributed", "test_notebooks",
                    "test_resume", "test_benchmarks", "test_safe_loading", "test_tracking"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("gpu") and not _cuda():
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
        if MODEL_FIXTURES & set(item.fixturenames) or item.module.__name__.split(".")[-1] in PIPELINE_MODULES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of tiny random models: llama and gpt2 (decoders), bert (encoder)."""
    root = tmp_path_factory.mktemp("models")
    return {"llama": str(tiny.make_llama(root / "llama")), "gpt2": str(tiny.make_gpt2(root / "gpt2")),
            "bert": str(tiny.make_bert(root / "bert"))}


@pytest.fixture(scope="session")
def task(tmp_path_factory):
    """A 4-class synthetic task (train 400, dev/test 200)."""
    return str(tiny.make_task(tmp_path_factory.mktemp("task"), n_train=400, n_eval=200, num_labels=4))


@pytest.fixture(scope="session")
def trained(tmp_path_factory, models, task):
    """Stage artifacts on the synthetic task: a clean fine-tuned tiny LLaMA student and a
    teacher (tiny BERT + projection to the student's width), each with test CA/ASR."""
    import pytorch_lightning as pl

    from students import StudentSpec
    from teachers import TeacherSpec
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit import OptimConfig, PoisonModule, TeacherModule

    root, attack = tmp_path_factory.mktemp("stages"), PoisonConfig(**BACKDOOR)
    pl.seed_everything(0)
    student = PoisonModule(StudentSpec(models["llama"]), num_labels=4, optim=OptimConfig(lr=3e-3))
    data = W2SDataModule(task, tokenizer=models["llama"], attack=attack, batch_size=16)
    make_trainer(5).fit(student, data)
    student.save_artifact(root / "student")
    teacher = TeacherModule(TeacherSpec(models["bert"], student=models["llama"], num_labels=4), OptimConfig(lr=3e-3))
    data = W2SDataModule(task, tokenizer=models["bert"], attack=attack, batch_size=16)
    make_trainer(8).fit(teacher, data)
    teacher.save_artifact(root / "teacher")
    return {"student": str(root / "student"), "teacher": str(root / "teacher"),
            "teacher_test": make_trainer().test(teacher, data, verbose=False)}

