import os

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")

from tests import tiny  # noqa: E402


@pytest.fixture(scope="session")
def models(tmp_path_factory):
    """Paths of tiny random models: llama and gpt2 (decoders), bert (encoder)."""
    root = tmp_path_factory.mktemp("models")
    return {"llama": str(tiny.make_llama(root / "llama")), "gpt2": str(tiny.make_gpt2(root / "gpt2")),
            "bert": str(tiny.make_bert(root / "bert"))}


@pytest.fixture(scope="session")
def task(tmp_path_factory):
    return str(tiny.make_task(tmp_path_factory.mktemp("task")))
