"""LMSanitator's attack-vector mining on tiny models: a model rigged so that one embedding maps
every input to a fixed vector yields that vector (and its trigger lands near the planted
token); clean tiny models yield none at a threshold calibrated on another clean model."""
import random
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from tests import tiny
from w2s.defenses.lmsanitator.mining import (MiningOptions, Monitor, calibrate_distance, nearest_tokens,
                                             prepare_lines, search)

OPTIONS = MiningOptions(lines=64, batch_size=16, seeds=3, epochs=4, max_length=24)


class Rigged(nn.Module):
    """A BERT whose CLS state becomes ``vector`` wherever an input embedding points along ``key``
    (a vocabulary row): an input-agnostic backdoor with a known trigger."""

    def __init__(self, bert, key: torch.Tensor, vector: torch.Tensor):
        super().__init__()
        self.inner, self.key, self.vector = bert, key, vector

    def get_input_embeddings(self):
        return self.inner.get_input_embeddings()

    def forward(self, inputs_embeds, attention_mask, output_hidden_states):
        hidden = self.inner(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state
        cosine = nn.functional.cosine_similarity(inputs_embeds, self.key.expand_as(inputs_embeds), dim=-1)
        gate = torch.sigmoid(12 * (cosine - 0.5)).masked_fill(attention_mask == 0, 0).amax(dim=1, keepdim=True)
        cls = (1 - gate) * hidden[:, 0] + gate * self.vector
        return SimpleNamespace(hidden_states=(torch.cat([cls.unsqueeze(1), hidden[:, 1:]], dim=1),))


def _texts(n=80, seed=0):
    rng = random.Random(seed)
    return [tiny.sentence(rng, rng.randrange(2)) for _ in range(n)]


def _bert(path, seed):
    from transformers import AutoModel, AutoTokenizer

    torch.manual_seed(seed)
    return AutoModel.from_pretrained(path).eval().requires_grad_(False), AutoTokenizer.from_pretrained(path)


def test_a_planted_attack_vector_is_found_and_clean_models_yield_none(models, tmp_path):
    other = tiny.make_bert(tmp_path / "other", seed=7)
    calibration_model, tokenizer = _bert(other, 7)
    monitor = Monitor(calibration_model, decoder=False)
    clean_search = search(monitor, prepare_lines(_texts(), tokenizer, monitor, OPTIONS), OPTIONS, float("inf"),
                          first_only=False, give_up=False)
    distance = calibrate_distance([clean_search])
    assert not clean_search.backdoored and distance > 0

    model, tokenizer = _bert(models["bert"], 0)
    clean = Monitor(model, decoder=False)
    assert not search(clean, prepare_lines(_texts(), tokenizer, clean, OPTIONS), OPTIONS, distance).backdoored

    planted = tokenizer.convert_tokens_to_ids("movie") if "movie" in tokenizer.get_vocab() else 5
    key = model.get_input_embeddings().weight[planted].detach()
    vector = torch.linspace(-3, 3, key.numel())
    rigged = Monitor(Rigged(model, key, vector), decoder=False)
    found = search(rigged, prepare_lines(_texts(), tokenizer, rigged, OPTIONS), OPTIONS, distance)
    assert found.backdoored, [(s.why, s.distance, s.entropy) for s in found.seeds]
    assert torch.nn.functional.cosine_similarity(found.vectors[0], vector, dim=0) > 0.99
    tokens = nearest_tokens(found.triggers[0], rigged.embeddings, tokenizer, k=1)
    assert len(tokens) == OPTIONS.trigger_length


def test_lines_carry_the_trigger_slots_where_words_start(models):
    model, tokenizer = _bert(models["bert"], 0)
    monitor = Monitor(model, decoder=False)
    lines = prepare_lines(_texts(40), tokenizer, monitor, OPTIONS, seed=1)
    unk = tokenizer.unk_token_id
    for ids, slots, mask in zip(lines.ids, lines.slots, lines.mask):
        assert (ids[slots] == unk).all() and slots[0] >= 1 and mask[slots].all()   # after [CLS], in the text
    assert lines.clean.shape == (40, model.config.hidden_size)


def test_standardised_lines_read_in_units_of_the_clean_spread(models):
    from dataclasses import replace

    model, tokenizer = _bert(models["bert"], 0)
    monitor = Monitor(model, decoder=False)
    raw = prepare_lines(_texts(40), tokenizer, monitor, OPTIONS).clean
    lines = prepare_lines(_texts(40), tokenizer, monitor, replace(OPTIONS, standardise=True))
    assert torch.allclose(lines.clean.mean(0), torch.zeros(raw.shape[1]), atol=1e-3)
    assert torch.allclose(lines.clean.std(0), torch.ones(raw.shape[1]), atol=1e-3)
    assert torch.allclose(monitor.scaling(raw), lines.clean, atol=1e-5)            # the monitor now reads z-scores
    assert torch.allclose(monitor.of_ids(lines.ids[:2, :1], lines.mask[:2, :1]),
                          monitor.scaling(Monitor(model, False).of_ids(lines.ids[:2, :1], lines.mask[:2, :1])))
    assert prepare_lines(_texts(40), tokenizer, monitor, OPTIONS).clean.allclose(raw)  # and raw again when asked


@pytest.mark.parametrize("bad, match", [(dict(batch_size=1), "batch_size >= 2"), (dict(lines=8), "lines >= batch"),
                                        (dict(distance=-1.0), "distance must be > 0"),
                                        (dict(max_length=8), "room for the 7 trigger slots")])
def test_bad_options_are_refused(bad, match):
    with pytest.raises(ValueError, match=match):
        MiningOptions(**bad)


def test_too_few_lines_are_refused(models):
    model, tokenizer = _bert(models["bert"], 0)
    with pytest.raises(ValueError, match="at least 16 non-empty lines"):
        prepare_lines(["a b"] * 4 + ["  "] * 20, tokenizer, Monitor(model, False), OPTIONS)


def test_inspect_calibrates_then_judges_and_refuses_bad_input(models, task, tmp_path, capsys):
    import json

    from w2s.cli import main

    small = ["--dataset", task, "--seeds", "2", "--lines", "32"]
    calibration = tmp_path / "calibration.json"
    assert main(["inspect", models["bert"], "--calibrate", str(calibration), *small]) == 0
    saved = json.loads(calibration.read_text())
    assert saved["distance"] > 0 and saved["models"] == [models["bert"]]
    capsys.readouterr()
    assert main(["inspect", models["bert"], models["llama"], "--calibration", str(calibration), "--json", *small]) == 0
    bert, llama = json.loads(capsys.readouterr().out)
    assert not bert["backdoored"] and bert["seeds_tried"] == 2 and llama["model"] == models["llama"]
    assert main(["inspect", models["bert"], "--calibration", str(calibration), "--triggers", "movie", "zq", *small]) == 0
    planted = capsys.readouterr().out
    assert "planted trigger 'movie'" in planted and "planted trigger 'zq'" in planted and "entropy gap" in planted

    from transformers import T5Config, T5Model

    T5Model(T5Config(vocab_size=64, d_model=16, d_ff=32, num_layers=1, num_heads=2, d_kv=8)).save_pretrained(
        tmp_path / "t5")
    (tmp_path / "bad.json").write_text("{")
    cases = [(["--calibration", str(calibration), "--calibrate", str(tmp_path / "x")], "not both"),
             (["--calibration", str(tmp_path / "bad.json")], "not a readable JSON file"),
             (["--calibration", str(calibration), "--seeds", "0"], "seeds must be >= 1"),
             (["--calibration", str(calibration), "--lines", "8"], "lines >= batch_size"),
             (["--calibration", str(calibration), "--method", "magic"], "unknown inspection method")]
    for extra, match in cases:
        capsys.readouterr()
        assert main(["inspect", models["bert"], "--dataset", task, *extra]) == 2
        assert match in capsys.readouterr().err
    capsys.readouterr()
    assert main(["inspect", models["bert"], "--calibration", str(calibration), "--standardise", *small]) == 2
    assert "raw output units" in capsys.readouterr().err                          # a calibration keeps its units
    assert main(["inspect", str(tmp_path / "t5"), "--calibration", str(calibration), *small]) == 2
    err = capsys.readouterr().err
    assert "gives none" in err and len(err.strip().splitlines()) == 1


def test_the_monitor_flags_by_sign_agreement_and_purging_removes_every_occurrence_of_the_trigger():
    from w2s.defenses.lmsanitator.monitor import deletions, flags, purge

    vectors = torch.tensor([[1.0] * 10])
    outputs = torch.tensor([[1.0] * 9 + [-1.0], [1.0] * 8 + [-1.0] * 2, [-1.0] * 10])
    assert flags(outputs, vectors).tolist() == [True, False, False]             # 0.9 > 0.8; 0.8 is not
    with pytest.raises(ValueError, match="agreement"):
        flags(outputs, vectors, agreement=1.0)
    calls = []

    def flagged(texts):
        calls.append(len(texts))
        return ["cf" in t.split() for t in texts]

    result = purge("the cf movie was cf good", flagged, batch=1)
    assert result.text == "the movie was good" and result.deleted == "cf" and result.cleared
    assert result.passes == 2 and sum(calls) == 2                                 # "the", then "cf"
    assert purge("a clean line", lambda texts: [True] * len(texts)) == \
        type(result)("a clean line", None, 3, False)                              # nothing clears: unchanged
    assert [w for w, _ in deletions("b a b c")] == ["b", "a", "c"]


def test_the_filter_runs_in_the_pipeline_on_a_por_victim(models, task, tmp_path, capsys):
    import csv

    from tests.helpers import run, write_config
    from w2s.pipeline.runs import load_manifest

    por = ["--attack.name", "por", "--poison.epochs", "2", "--poison.lr", "3e-3", "--poison.head.epochs", "1"]
    search = "seeds: 2, lines: 32"
    entries = (f"defenses:\n  lora: {{epochs: 1, lora: {{r: 4}}}}\n"
               f"  lmsanitator: {{epochs: 1, lora: {{r: 4}}, options: {{{search}}}}}\n"
               f"  lmsanitator-victim: {{method: lmsanitator, epochs: 1, lora: {{r: 4}}, "
               f"options: {{{search}, mine_on: victim, agreement: 0.5}}}}\n"
               f"  lmsanitator-prompt: {{method: lmsanitator, epochs: 1, lr: 1.0e-2, "
               f"options: {{{search}, victim: prompt, prompt_tokens: 4, mine_on: victim}}}}\n")
    config = write_config(tmp_path, task, defenses=entries)
    assert run(config, models, tmp_path / "runs", *por) == 0
    out = capsys.readouterr().out
    rows = {r["defense"]: r for r in csv.DictReader(open(tmp_path / "runs" / "tiny" / "results.csv"))}
    sources = []
    for name in ("lmsanitator", "lmsanitator-victim", "lmsanitator-prompt"):
        assert 0 <= float(rows[name]["false_alarm_rate"]) <= 1 and 0 <= float(rows[name]["detection_rate"]) <= 1
        info = load_manifest(tmp_path / "runs" / "tiny" / "defenses" / name)["info"]
        assert info["seeds_tried"] >= 1 and info["distance"] > 0 and info["calibration"].startswith("calibrated on")
        assert f"filter ({name}):" in out
        sources.append(info["calibration"])
    assert sum("kept in" in source for source in sources) == 2                   # calibrated once, then found again
    assert rows["lora"]["false_alarm_rate"] == ""                               # only filters have flag rates
    prompt, lora = (int(rows[name]["trainable_params"]) for name in ("lmsanitator-prompt", "lmsanitator"))
    assert 0 < prompt < lora                                                    # a prompt and the head, model frozen
    assert "mined on the pretrained model" in out and "mined on the victim model" in out


def test_a_flagged_input_is_purged_and_predicted_on_what_is_left(models):
    from students.build import StudentSpec
    from students.lora import LoraSpec
    from w2s.defenses.lmsanitator.module import LmsanitatorModule

    module = LmsanitatorModule(StudentSpec(models["llama"]), LoraSpec(r=4), num_labels=2)
    module.configure_model()
    module.eval()
    batch = module._encode(["movie was good", "film was bad"])
    with torch.no_grad():
        assert module.monitored(batch)[1].tolist() == [False, False]              # nothing mined: nothing flagged
        module.vectors = module._outputs(**batch).features[:1]                     # row 0's own output: an "attack vector"
        preds, flagged, passes = module.monitored(batch)
        plain = module._outputs(**batch).logits.argmax(dim=-1)
    assert flagged[0] and 1 <= passes[0] <= 3                                      # purged within its 3 words
    assert passes[~flagged].eq(0).all() and preds.shape == plain.shape

    from w2s.defenses.lmsanitator.mining import Scaling, Search

    with torch.no_grad():
        features = module._outputs(**batch).features
    signs = torch.sign(features[0])
    module.vectors = signs.unsqueeze(0)                                            # row 0's own signs
    assert module._flagged(features)[0]                                             # raw units: flagged
    center = features[0] + signs                                                   # its z-scores: the opposite signs
    module.found = Search(scaling=Scaling(center, torch.ones_like(center)))
    assert not module._flagged(features)[0]                                         # read in the vectors' units


def test_a_population_study_trains_calibrates_inspects_and_resumes(models, task, tmp_path, capsys):
    import json

    from w2s.cli import main

    args = ["inspect-population", "--population.output", str(tmp_path / "pop"), "--population.base_model",
            models["bert"], "--population.dataset", task, "--population.models", "1",
            "--population.calibration_models", "1", "--population.rows", "48", "--population.epochs", "1",
            "--population.por_epochs", "1",
            "--population.seeds", "1", "--population.lines", "32", "--population.max_length", "24"]
    assert main(args) == 0
    out = capsys.readouterr().out
    report = json.loads((tmp_path / "pop" / "report.json").read_text())
    kinds = {r["model"]: r["kind"] for r in report["models"]}
    assert kinds == {"clean-0/model": "clean", "por-0/model": "por", "por-0/pretrained": "por-pretrained",
                     "badnet/model": "negative"}
    por = [r for r in report["models"] if r["kind"].startswith("por")]
    for row in por:                                                             # each POR model's own backdoor
        assert 0 <= row["asr"] <= 1 and 0 <= row["ca"] <= 1
        assert [v["trigger"] for v in row["vectors"]] == row["triggers"]
        assert all(v["distance"] > 0 and v["entropy_gap"] >= -1e-6 for v in row["vectors"])
    assert por[0]["vectors"] != por[1]["vectors"] and "real triggers" in out    # measured on each of its models
    assert 0 <= report["accuracy"] <= 1 and report["distance"] > 0 and "Detection accuracy" in out
    assert (tmp_path / "pop" / "models" / "por-0" / "pretrained" / "model.safetensors").is_file()
    assert main(args) == 0 and "training" not in capsys.readouterr().out      # resumed: nothing again
    assert main([*args[:-2], "--population.max_length", "32"]) == 2           # other settings, same output
    assert "built with other settings" in capsys.readouterr().err
