"""Every registered defense on tiny models: each changes what it claims to change.

One pipeline run trains every defense with the same LoRA, learning rate, rows and seed, so
two LoRA-family defenses differ only by their objective: one that silently fell back to
plain LoRA (or ignored its teacher or regularisers) would end with ``lora``'s exact weights.
"""
import json

import pytest
import torch
from safetensors.torch import load_file

from tests.helpers import tiny_args
from w2s.cli import main
from w2s.defenses import DEFENSES, Defense
from w2s.pipeline.config import PipelineConfig, resolve_defense
from w2s.pipeline.runs import load_manifest

SAME = "epochs: 1, lr: 0.003, lora: {r: 4}"
OBJECTIVES = ("w2s", "w2s+obliviate", "obliviate", "kd", "fa")


@pytest.fixture(scope="module")
def compared(tmp_path_factory, models, task):
    tmp = tmp_path_factory.mktemp("compare")
    entries = [f"  {name}: {{{SAME}}}" for name in ("lora", *OBJECTIVES, "fine-mixing")]
    entries += [f"  lora_again: {{method: lora, {SAME}}}",
                "  psim: {epochs: 1, lr: 0.003}",
                "  psim_low: {method: psim, epochs: 1, lr: 0.003, options: {threshold: 0.000001}}",
                "  psim_calibrated: {method: psim, epochs: 1, lr: 0.003, options: {false_alarm: 0.25}}"]
    config = tmp / "compare.yaml"
    config.write_text(f"experiment: compare\ndataset: {task}\ndefenses:\n" + "\n".join(entries) + "\n")
    assert main(["pipeline", "--config", str(config), *tiny_args(models, tmp / "runs", (0, 160), (160, 320)),
                 "--poison.lr", "0.003", "--poison.epochs", "3"]) == 0
    return tmp / "runs" / "compare"


def adapter(root, name):
    return load_file(root / "defenses" / name / "model" / "adapter" / "adapter_model.safetensors")


def same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_registry_names_and_unknown_names():
    assert set(DEFENSES) == {"lora", "w2s", "edit", "w2s+obliviate", "obliviate", "kd", "fa", "fine-mixing", "psim",
                             "peftguard", "lmsanitator"}
    assert all(d.summary for d in DEFENSES.values())
    with pytest.raises(ValueError, match=r"defenses.nope: unknown defense 'nope'; valid: edit, fa, fine-mixing, kd"):
        PipelineConfig(defenses={"nope": {}})


def test_the_ablations_of_w2s_train_its_adapter():
    """kd, fa and w2s+obliviate change W2S's objective only; clean LoRA stays plain LoRA."""
    from w2s.pipeline.config import resolve_defenses

    stages = resolve_defenses({name: {} for name in ("lora", "w2s", "kd", "fa", "w2s+obliviate")})
    assert stages["w2s"].lora.variant == "rslora" and stages["w2s"].lora.alpha == 64
    assert all(stages[name].lora == stages["w2s"].lora for name in ("kd", "fa", "w2s+obliviate"))
    assert stages["lora"].lora.variant == "lora" and stages["lora"].lora.alpha is None


def test_defenses_command_lists_each_with_its_paper(capsys):
    assert main(["defenses"]) == 0
    listed = capsys.readouterr().out
    assert all(f"{name}: " in listed for name in DEFENSES) and "arXiv 2409.14119" in listed and "rho=0.5" in listed
    assert listed.index("fine-tuning:") < listed.index("  w2s: ") < listed.index("filter:") < listed.index("  psim: ")
    with pytest.raises(ValueError, match="family 'sorcery' is not one of fine-tuning, filter, detector"):
        type("Spell", (Defense,), {"family": "sorcery"})


def test_entries_change_their_methods_defaults():
    obliviate = resolve_defense("obliviate", {"epochs": 1})
    assert (obliviate.lora.r, obliviate.lr, obliviate.objective.amp, obliviate.objective.attn) == (16, 3e-4, 3e-3, 3e-2)
    assert obliviate.epochs == 1 and not obliviate.objective.needs_teacher
    both = resolve_defense("both", {"method": "w2s+obliviate", "objective": {"fa": 3.0}})
    assert (both.objective.kd, both.objective.fa, both.objective.amp, both.lora.r) == (1.0, 3.0, 3e-3, 512)
    assert resolve_defense("fine-mixing", {}).options == {"rho": 0.5, "seed": 0}
    # the baselines at W2S's rank by default: a config without `defenses:` compares like with like
    assert {resolve_defense(name, {}).lora.r for name in ("lora", "fine-mixing", "w2s")} == {512}
    with pytest.raises(ValueError, match=r"defenses.fine-mixing: unknown option 'rh' for defense fine-mixing"):
        resolve_defense("fine-mixing", {"options": {"rh": 0.5}})
    with pytest.raises(ValueError, match=r"defenses.psim: .*threshold"):
        resolve_defense("psim", {"options": {"threshold": 1.5}})


def test_a_run_is_deterministic_so_weight_differences_mean_something(compared):
    assert same(adapter(compared, "lora"), adapter(compared, "lora_again"))


@pytest.mark.parametrize("name", OBJECTIVES)
def test_each_objective_defense_trains_otherwise_than_clean_lora(compared, name):
    assert not same(adapter(compared, "lora"), adapter(compared, name))
    recorded = load_manifest(compared / "defenses" / name)["config"]["defense"]["objective"]
    expected = set(resolve_defense(name, {}).objective.terms) - {"ce"}
    assert {t for t in ("kd", "fa", "amp", "attn") if recorded[t] > 0} == expected


def test_obliviate_amplifies_the_adapters(compared):
    def norms(name):
        weights = adapter(compared, name)
        return sum(w.norm().item() for k, w in weights.items() if "lora_" in k)

    assert norms("obliviate") > norms("lora")


def test_the_teacher_terms_use_the_teacher(compared):
    assert not same(adapter(compared, "kd"), adapter(compared, "fa"))
    assert load_manifest(compared / "defenses" / "kd")["inputs"]["teacher"]
    assert "teacher" not in load_manifest(compared / "defenses" / "obliviate")["inputs"]


def test_fine_mixing_mixes_the_poisoned_and_clean_weights(compared, models):
    from transformers import AutoModelForSequenceClassification

    poisoned = AutoModelForSequenceClassification.from_pretrained(compared / "poisoned" / "model").state_dict()
    mixed = load_file(compared / "defenses" / "fine-mixing" / "mixed" / "model.safetensors")
    clean = AutoModelForSequenceClassification.from_pretrained(models["llama"], num_labels=4).state_dict()
    from_poisoned = differing = 0
    for name, weight in mixed.items():
        if name.startswith("score"):                          # no clean head: the poisoned one stays
            assert torch.equal(weight, poisoned[name])
            continue
        changed = poisoned[name] != clean[name]
        assert torch.all((weight == poisoned[name]) | (weight == clean[name]))
        from_poisoned += (weight[changed] == poisoned[name][changed]).sum().item()
        differing += changed.sum().item()
    assert differing > 1000 and 0.45 < from_poisoned / differing < 0.55      # rho = 0.5
    assert load_manifest(compared / "defenses" / "fine-mixing")["info"]["mixed_elements"] > 0
    assert not same(adapter(compared, "lora"), adapter(compared, "fine-mixing"))


def test_psim_filters_what_it_flags(compared):
    poisoned = load_manifest(compared / "poisoned")["metrics"]
    low = load_manifest(compared / "defenses" / "psim_low")["metrics"]
    assert low["detection_rate"] == low["false_alarm_rate"] == 1.0      # every input flagged ...
    assert low["ca"] == low["asr"] == 0.0                                 # ... and rejected
    calibrated = load_manifest(compared / "defenses" / "psim_calibrated")
    assert 0.0 < calibrated["metrics"]["false_alarm_rate"] < 0.6 and 0 < calibrated["info"]["threshold"] < 1
    reference = load_manifest(compared / "defenses" / "psim")
    assert reference["info"]["threshold"] == 0.7 and reference["config"]["defense"]["options"]["module"] == "p-tuning"
    flagged = reference["metrics"]["false_alarm_rate"]
    assert reference["metrics"]["ca"] <= poisoned["ca"] + 1e-6 if flagged else reference["metrics"]["ca"] == poisoned["ca"]


def test_the_table_has_every_defense_and_the_filter_note(compared):
    table = (compared / "results.md").read_text()
    assert all(f"| {name} |" in table for name in ("lora", *OBJECTIVES, "fine-mixing", "psim"))
    assert "filter (psim_low): flags 100.0% of the triggered test rows" in table and "peak mem" in table
    assert json.loads((compared / "defenses" / "obliviate" / "manifest.json").read_text())["peak_memory_mb"] > 0


@pytest.mark.parametrize("width, expected", [(None, "hidden"), (8, 8)])
def test_psims_prompt_encoder_width(models, width, expected):
    """The reference's P-tuning encoder is 128 wide (``encoder_hidden_size``); by default the student's."""
    from transformers import AutoConfig

    from students import StudentSpec
    from w2s.defenses.psim import PsimOptions
    from w2s.defenses.psim.module import PsimModule

    module = PsimModule(StudentSpec(models["llama"]), num_labels=4, options=PsimOptions(encoder_hidden_size=width))
    module.configure_model()
    encoder = module.model.prompt_encoder["default"].mlp_head[0]
    hidden = AutoConfig.from_pretrained(models["llama"]).hidden_size
    assert encoder.out_features == (hidden if expected == "hidden" else expected) and hidden != 8
