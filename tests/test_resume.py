"""Interruption: a stage SIGKILLed mid-epoch resumes from its last Lightning checkpoint on the next
identical command and ends exactly as an uninterrupted run with the same seed."""
import json

import torch
from safetensors.torch import load_file

from tests.helpers import LONGER, kill_during, tiny_args, write_config
from w2s.cli import main
from w2s.pipeline.runs import load_manifest

DEFENSES = ("defenses:\n  w2s: {epochs: 3, batch_size: 4, keep: last, lora: {r: 4}, "
            "objective: {ce: 1, kd: 1, fa: 1, fa_target: fitted}}\n")


def test_killed_stages_resume_and_match_an_uninterrupted_run(tmp_path, task, models, capsys):
    """Each stage is killed once (the teacher's dropout checks the random state, the defense's
    frozen base the trimmed checkpoint); weights and metrics end as in one uninterrupted run."""
    config = write_config(tmp_path, task, defenses=DEFENSES)
    args = lambda runs: ["--config", str(config), *tiny_args(models, tmp_path / runs), *LONGER]  # noqa: E731

    kill_during("poisoned", args("runs"), tmp_path)
    root = tmp_path / "runs" / "tiny"
    assert load_manifest(root / "poisoned") is None                     # nothing taken as finished
    assert len(list(root.glob(".poisoned.resume-*/poisoned/last.ckpt"))) == 1
    kill_during("teacher", args("runs"), tmp_path)                        # poisoned resumes, then the teacher dies
    assert load_manifest(root / "poisoned")["info"]["resumed"] == ["poisoned"]
    assert not list(root.glob(".poisoned.resume-*"))                      # removed once the stage finished
    kill_during("w2s", args("runs"), tmp_path)
    assert main(["pipeline", *args("runs")]) == 0
    assert "w2s: w2s: resuming from" in capsys.readouterr().out

    assert main(["pipeline", *args("uninterrupted")]) == 0
    reference = tmp_path / "uninterrupted" / "tiny"
    for stage in ("poisoned", "teacher", "defenses/w2s"):
        resumed, whole = load_manifest(root / stage), load_manifest(reference / stage)
        assert resumed["metrics"] == whole["metrics"], stage
        assert resumed["info"].pop("resumed") == [stage.split("/")[-1]] and "resumed" not in whole["info"]
    for weights in ("poisoned/model/model.safetensors", "teacher/model/encoder/model.safetensors",
                    "defenses/w2s/model/adapter/adapter_model.safetensors"):
        resumed, whole = load_file(root / weights), load_file(reference / weights)
        assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole), weights
    assert not list(root.rglob(".*.resume-*"))


def test_checkpoint_holds_only_trainable_weights_and_plain_data(tmp_path, task, models):
    """What a resume loads: the LoRA weights and head, no frozen base, nothing that needs pickle."""
    config = write_config(tmp_path, task, defenses=DEFENSES)
    kill_during("w2s", ["--config", str(config), *tiny_args(models, tmp_path / "runs"), *LONGER], tmp_path)
    (last,) = (tmp_path / "runs" / "tiny" / "defenses").glob(".w2s.resume-*/w2s/last.ckpt")
    checkpoint = torch.load(last, weights_only=True)
    assert checkpoint["state_dict"] and all("lora_" in k or "score" in k for k in checkpoint["state_dict"])
    assert not {"hyper_parameters", "datamodule_hyper_parameters"} & set(checkpoint)
    assert json.dumps(sorted(checkpoint["callbacks"]))  # RestoreBest and RngState keep their state


def test_a_killed_por_stage_resumes_with_its_reference_states(tmp_path, task, models):
    """POR keeps clean rows near their states *before* poisoning: a resumed fit takes them from
    its checkpoint (recomputing them from the restored, partly poisoned weights moved the
    target, and the resumed model ended elsewhere)."""
    config = write_config(tmp_path, task, defenses="defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n")
    por = ["--attack.name", "por", "--poison.batch_size", "4", "--poison.epochs", "3", "--poison.lr", "3e-3",
           "--trainer.checkpoint_every", "5"]
    args = lambda runs: ["--config", str(config), *tiny_args(models, tmp_path / runs), *por]  # noqa: E731
    kill_during("por", args("runs"), tmp_path)
    assert main(["pipeline", *args("runs")]) == 0
    assert main(["pipeline", *args("uninterrupted")]) == 0
    resumed, whole = (load_file(tmp_path / runs / "tiny" / "poisoned" / "pretrained" / "model.safetensors")
                      for runs in ("runs", "uninterrupted"))
    assert resumed.keys() == whole.keys() and all(torch.equal(resumed[k], whole[k]) for k in whole)
