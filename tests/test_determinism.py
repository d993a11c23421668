"""Determinism on CPU: the same seed gives the same poisoned rows, weights and metrics in every
stage; another seed poisons other rows and ends elsewhere."""
import torch
from safetensors.torch import load_file

from tests.helpers import run, write_config
from w2s.pipeline.runs import load_manifest

STAGES = ("poisoned", "teacher", "defenses/lora", "defenses/w2s")
WEIGHTS = ("poisoned/model/model.safetensors", "teacher/model/encoder/model.safetensors",
           "defenses/w2s/model/adapter/adapter_model.safetensors")


def same_weights(a, b) -> bool:
    a, b = load_file(a), load_file(b)
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_same_seed_same_run_other_seed_other_run(tmp_path, task, models):
    config = write_config(tmp_path, task)
    for runs, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert run(config, models, tmp_path / runs, f"--seed={seed}") == 0
    a, b, c = (tmp_path / runs / "tiny" for runs in "abc")
    manifests = {name: {s: load_manifest(root / s) for s in STAGES} for name, root in (("a", a), ("b", b), ("c", c))}

    for stage in STAGES:                                    # two runs of seed 0: identical
        assert manifests["a"][stage]["metrics"] == manifests["b"][stage]["metrics"], stage
    assert all(same_weights(a / w, b / w) for w in WEIGHTS)
    indices = {name: m["poisoned"]["info"]["poisoned_indices"] for name, m in manifests.items()}
    assert len(indices["a"]) == 5 and indices["a"] == indices["b"]

    assert indices["c"] != indices["a"] and len(indices["c"]) == 5    # seed 1: other rows, other weights
    assert not any(same_weights(a / w, c / w) for w in WEIGHTS)
    assert any(manifests["a"][s]["metrics"] != manifests["c"][s]["metrics"] for s in STAGES)
