"""The levers that act on a trained adapter or on what it distils from: rescaling the LoRA
update (RoRA's spectral rescaling), refitting the head as a linear probe, blending with another
entry's adapter, editing a saved adapter without training it again (``method: edit``), and
distilling the logits of another entry's student (two targets). Each changes what it claims,
and nothing else."""
import pytest
import torch

from students.edits import classification_head, fit_probe, head_inputs, rescale_lora
from w2s.config.finish import FinishConfig


def lora_student(models, name="llama", seed=0):
    """A tiny student with LoRA r 4 whose update is not zero (B drawn at random)."""
    from students import StudentSpec
    from students.build import build_student
    from students.lora import LoraSpec

    torch.manual_seed(seed)
    model, tokenizer = build_student(StudentSpec(models[name]), 2, LoraSpec(r=4, dropout=0.0))
    with torch.no_grad():
        for param_name, param in model.named_parameters():
            if "lora_B" in param_name:
                param.normal_(0, 0.05)
    return model.eval(), tokenizer


def rows(tokenizer, n=64, length=12, seed=0):
    generator = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, tokenizer.vocab_size, (n, length), generator=generator)
    mask = torch.ones_like(ids)
    mask[: n // 2, : length // 3] = 0  # half the rows left-padded (a decoder's side)
    return ids, mask, torch.randint(0, 2, (n,), generator=generator)


def test_rescale_scales_every_update_and_nothing_else(models):
    from peft.tuners.lora import LoraLayer

    model, _ = lora_student(models)
    layers = [m for m in model.modules() if isinstance(m, LoraLayer)]
    before = [m.get_delta_weight("default").clone() for m in layers]
    others = {n: p.clone() for n, p in model.named_parameters() if "lora_B" not in n}
    assert rescale_lora(model, 2.5) == len(layers) > 0
    for layer, delta in zip(layers, before):
        assert torch.allclose(layer.get_delta_weight("default"), 2.5 * delta, atol=1e-6)
    assert all(torch.equal(p, others[n]) for n, p in model.named_parameters() if "lora_B" not in n)


@pytest.mark.parametrize("name", ["llama", "bert"])
def test_head_inputs_are_what_the_head_reads(models, name):
    model, tokenizer = lora_student(models, name)
    ids, mask, _ = rows(tokenizer)
    if name == "bert":  # an encoder is padded on the right
        ids, mask = ids.flip(1), mask.flip(1)
    head = classification_head(model)
    features = head_inputs(model, head, ids, mask, decoder=name == "llama")
    from students.forward import model_inputs

    with torch.no_grad():
        logits = model(**model_inputs(ids, mask, name == "llama")).logits
    assert features.shape == (len(ids), head.in_features)
    assert torch.allclose(head(features), logits, atol=1e-5)


def test_probe_refits_only_the_head_and_fits_the_rows(models):
    model, tokenizer = lora_student(models)
    ids, mask, labels = rows(tokenizer)
    head = classification_head(model)
    features = head_inputs(model, head, ids, mask, decoder=True)
    before = torch.nn.functional.cross_entropy(head(features), labels).item()
    frozen = {n: p.clone() for n, p in model.named_parameters() if "score" not in n}
    old_head = head.weight.clone()
    after = fit_probe(head, features, labels, l2=1e-3)
    assert after < before                                                    # fits the clean rows better
    assert not torch.equal(head.weight, old_head)
    assert all(torch.equal(p, frozen[n]) for n, p in model.named_parameters() if "score" not in n)
    stronger = lora_student(models)[0]                                      # more ridge: a smaller head
    strong_head = classification_head(stronger)
    fit_probe(strong_head, features, labels, l2=10.0)
    assert strong_head.weight.norm() < head.weight.norm()


def test_finish_settings():
    assert not FinishConfig().edits and FinishConfig(rescale=2.0).edits and FinishConfig(refit_head=True).edits
    with pytest.raises(ValueError, match="finish.rescale must be > 0"):
        FinishConfig(rescale=0.0)
    with pytest.raises(ValueError, match="finish.probe_l2 must be >= 0"):
        FinishConfig(probe_l2=-1.0)


def test_kd_source_replaces_the_teachers_logits_only(tmp_path, trained, task):
    """Two targets: with ``kd_source`` the logit targets are that adapter's logits on each
    training row; the features stay the teacher's."""
    from students import StudentSpec
    from students.build import build_student
    from students.forward import model_inputs
    from students.lora import LoraSpec
    from tests.helpers import make_trainer
    from w2s.config.attack import PoisonConfig
    from w2s.data.datamodule import W2SDataModule
    from w2s.lit.unlearn import UnlearnModule
    from w2s.losses import ObjectiveConfig

    torch.manual_seed(1)
    source, _ = build_student(StudentSpec(trained["student"]), 4, LoraSpec(r=4))
    with torch.no_grad():
        for name, param in source.named_parameters():
            if "lora_B" in name or "score" in name:
                param.normal_(0, 0.2)
    source.save_pretrained(tmp_path / "source", safe_serialization=True)

    def started(kd_source=None):
        module = UnlearnModule(StudentSpec(trained["student"]), trained["teacher"], num_labels=4,
                               objective=ObjectiveConfig(ce=1.0, kd=1.0, fa=1.0), kd_source=kd_source)
        data = W2SDataModule(task, tokenizer=trained["student"], teacher_tokenizer=f"{trained['teacher']}/encoder",
                             attack=PoisonConfig(name="badnet"), train_rows=(0, 32), batch_size=16)
        make_trainer(1, limit_train_batches=0, limit_val_batches=0).fit(module, data)
        return module, data

    plain, data = started()
    two, _ = started(str(tmp_path / "source"))
    assert torch.equal(two.teacher_features, plain.teacher_features)         # the features stay the teacher's
    source.eval()
    expected = []
    for batch in data.teacher_dataloader():
        with torch.no_grad():
            logits = source(**model_inputs(batch["input_ids"], batch["attention_mask"], True)).logits
        expected.append((batch["index"], logits))
    index = torch.cat([i for i, _ in expected])
    logits = torch.cat([l for _, l in expected])[index.argsort()]
    assert torch.allclose(two.teacher_logits, logits, atol=1e-5)
    assert not torch.allclose(two.teacher_logits, plain.teacher_logits)
    with pytest.raises(ValueError, match="objective.kd is 0"):
        UnlearnModule(StudentSpec(trained["student"]), trained["teacher"], num_labels=4,
                      objective=ObjectiveConfig(ce=1.0, fa=1.0), kd_source=str(tmp_path / "source"))


def test_pipeline_runs_the_two_targets_and_the_finishing(tmp_path, task, models):
    """``kd_from`` names an earlier entry (its stage's key is among this one's inputs);
    ``finish`` edits the kept weights and the dev CA is that of the edited weights."""
    import csv

    from tests.helpers import run, write_config
    from w2s.pipeline.runs import load_manifest

    teacher = "objective: {ce: 1, kd: 1, fa: 1, normalize_features: true}"
    defenses = ("defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n"
                f"  w2s: {{epochs: 1, lora: {{r: 4}}, {teacher}}}\n"
                f"  two: {{method: w2s, epochs: 1, lora: {{r: 4}}, {teacher}, kd_from: lora}}\n"
                f"  probe: {{method: w2s, epochs: 1, lora: {{r: 4}}, {teacher}, finish: {{refit_head: true, rescale: 1.5}}}}\n"
                "  edited: {method: edit, options: {of: w2s}, finish: {refit_head: true, rescale: 1.5}}\n")
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 0
    root = tmp_path / "runs" / "tiny"
    manifests = {name: load_manifest(root / "defenses" / name) for name in ("lora", "w2s", "two", "probe", "edited")}
    assert manifests["two"]["inputs"]["lora"] == manifests["lora"]["key"]
    assert "lora" not in manifests["w2s"]["inputs"]
    rows = {r["defense"]: r for r in csv.DictReader(open(root / "results.csv"))}
    assert rows["two"]["ca"] != "" and rows["probe"]["ca"] != ""
    logged = [float(r["val/ca"]) for r in csv.DictReader(open(root / "defenses" / "probe" / "logs" / "metrics.csv"))
              if r.get("val/ca")]
    assert manifests["probe"]["metrics"]["dev_ca"] == pytest.approx(logged[-1])   # validated after the edits
    from safetensors.torch import load_file

    # w2s and probe train alike (same seed and settings): the saved adapters differ by the edits alone
    plain, finished, edited = (load_file(root / "defenses" / name / "model" / "adapter" / "adapter_model.safetensors")
                               for name in ("w2s", "probe", "edited"))
    assert plain.keys() == finished.keys()
    for key, value in plain.items():
        if "lora_B" in key:
            assert torch.allclose(finished[key], 1.5 * value, atol=1e-6)
        elif "score" in key:
            assert not torch.equal(finished[key], value)                          # the refitted head
        else:
            assert torch.equal(finished[key], value)
    # an edit of w2s's saved adapter, not trained again, is the same as training with the edits
    assert edited.keys() == finished.keys()
    assert all(torch.allclose(edited[k], finished[k], atol=1e-5) for k in finished)
    assert manifests["edited"]["inputs"]["w2s"] == manifests["w2s"]["key"]
    assert manifests["edited"]["metrics"]["ca"] == pytest.approx(manifests["probe"]["metrics"]["ca"])


@pytest.mark.parametrize("entry, message", [
    ("{method: w2s, kd_from: later}", "'later' is not an entry before it"),
    ("{method: w2s, kd_from: two}", "'two' is not an entry before it"),
    ("{method: lora, kd_from: lora}", "objective.kd is 0"),
    ("{method: w2s, finish: {rescale: -1}}", "finish.rescale must be > 0"),
    ("{method: edit, finish: {rescale: 2}}", "options.of must name the earlier entry"),
    ("{method: edit, options: {of: lora}}", "an edit changes nothing without finish"),
    ("{method: edit, options: {of: later}, finish: {rescale: 2}}", "'later' is not an entry before it"),
    ("{method: lora, finish: {blend: lora}}", "objective.fa is 0"),
])
def test_bad_kd_from_and_finish_exit_2(tmp_path, task, models, capsys, entry, message):
    from tests.helpers import run, write_config

    defenses = f"defenses:\n  lora: {{epochs: 1}}\n  two: {entry}\n  later: {{method: lora}}\n"
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]


def test_blend_is_the_weighted_sum_of_the_two_updates_and_heads(tmp_path, models):
    """``AdapterBlend``: at w the student computes (1 - w) of its own update and head plus w of the
    other's, exactly; w = 0 and w = 1 are the two adapters; the saved blend loads as plain LoRA."""
    from peft.tuners.lora import LoraLayer

    from students import StudentSpec
    from students.build import build_student
    from students.edits import AdapterBlend
    from students.forward import model_inputs
    from students.lora import load_adapter

    own, tokenizer = lora_student(models, seed=0)
    other, _ = lora_student(models, seed=1)
    with torch.no_grad():
        classification_head(other).weight.normal_(0, 0.3)
    other.save_pretrained(tmp_path / "other", safe_serialization=True)
    ids, mask, _ = rows(tokenizer, n=8)

    def logits(model):
        with torch.no_grad():
            return model(**model_inputs(ids, mask, True)).logits

    deltas = {name: [m.get_delta_weight("default") for m in model.modules() if isinstance(m, LoraLayer)]
              for name, model in (("own", own), ("other", other))}
    heads = {"own": classification_head(own).weight.clone(), "other": classification_head(other).weight.clone()}
    expected_own, expected_other = logits(own), logits(other)
    blend = AdapterBlend(own, str(tmp_path / "other"))
    assert torch.allclose(logits(own), expected_own, atol=1e-5)                       # w = 0: the trained adapter
    blend.set(1.0)
    assert torch.allclose(logits(own), expected_other, atol=1e-5)                     # w = 1: the other
    blend.set(0.3)
    layers = [m for m in own.modules() if isinstance(m, LoraLayer)]
    for layer, a, b in zip(layers, deltas["own"], deltas["other"]):
        assert torch.allclose(layer.get_delta_weight("default"), 0.7 * a + 0.3 * b, atol=1e-6)
    assert torch.allclose(classification_head(own).weight, 0.7 * heads["own"] + 0.3 * heads["other"])
    blended = logits(own)
    own.save_pretrained(tmp_path / "blended", safe_serialization=True)
    reloaded = load_adapter(build_student(StudentSpec(models["llama"]), 2)[0], str(tmp_path / "blended")).eval()
    assert torch.allclose(logits(reloaded), blended, atol=1e-5)


def test_blend_rule_and_its_path_in_the_pipeline(tmp_path, task, models):
    """``finish.blend``: the weights tried with their clean dev accuracy and alignment are kept in
    the manifest; the chosen one has the best dev accuracy within the alignment bound (no bound
    and one weight: that weight)."""
    from tests.helpers import run, write_config
    from w2s.pipeline.runs import load_manifest

    teacher = "objective: {ce: 1, kd: 1, fa: 1, normalize_features: true}"
    defenses = ("defenses:\n  lora: {epochs: 1, lora: {r: 4}}\n"
                f"  ruled: {{method: w2s, epochs: 1, lora: {{r: 4}}, {teacher}, "
                f"finish: {{blend: lora, blend_weights: [0.25, 0.5, 1.0], blend_bound: 0.2}}}}\n"
                f"  half: {{method: w2s, epochs: 1, lora: {{r: 4}}, {teacher}, "
                f"finish: {{blend: lora, blend_weights: [0.5], blend_bound: null}}}}\n")
    assert run(write_config(tmp_path, task, defenses=defenses), models, tmp_path / "runs") == 0
    root = tmp_path / "runs" / "tiny" / "defenses"
    ruled = load_manifest(root / "ruled")["info"]["finish"]["blend"]
    scores = {float(w): s for w, s in ruled["weights"].items()}
    assert set(scores) == {0.0, 0.25, 0.5, 1.0}
    bound = 1.2 * scores[0.0]["dev_fa"]
    eligible = [w for w, s in scores.items() if s["dev_fa"] <= bound]
    assert ruled["chosen"] == max(eligible, key=lambda w: (scores[w]["dev_ca"], -w))
    half = load_manifest(root / "half")
    assert half["info"]["finish"]["blend"]["chosen"] == 0.5 and set(half["info"]["finish"]["blend"]["weights"]) == {"0.5"}
    assert half["inputs"]["lora"] == load_manifest(root / "lora")["key"]
    assert half["metrics"]["dev_ca"] == pytest.approx(half["info"]["finish"]["blend"]["weights"]["0.5"]["dev_ca"])
