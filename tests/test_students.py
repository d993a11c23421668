"""Student building: padding side, pooled features, LoRA trainability, quantization."""
import pytest
import torch

from students import LoraSpec, StudentSpec, build_student, forward_with_features, pool
from students.pooling import first_token_index, last_token_index
from w2s.tokenizers import is_decoder, load_tokenizer


def test_token_indices_left_and_right_padding():
    left = torch.tensor([[0, 0, 1, 1], [1, 1, 1, 1], [0, 0, 0, 1]])
    right = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]])
    assert last_token_index(left).tolist() == [3, 3, 3]
    assert last_token_index(right).tolist() == [1, 3, 0]
    assert first_token_index(left).tolist() == [2, 0, 3]
    assert first_token_index(right).tolist() == [0, 0, 0]
    hidden = torch.arange(3 * 4).float().view(3, 4, 1)
    assert pool(hidden, right, decoder=True).flatten().tolist() == [1.0, 7.0, 8.0]
    assert pool(hidden, right, decoder=False).flatten().tolist() == [0.0, 4.0, 8.0]


@pytest.mark.parametrize("kind, side", [("llama", "left"), ("gpt2", "left"), ("bert", "right")])
def test_tokenizer_padding(models, kind, side):
    tok = load_tokenizer(models[kind])
    assert tok.padding_side == side and tok.pad_token is not None


@pytest.mark.parametrize("kind", ["llama", "gpt2", "bert"])
def test_pooled_feature_is_the_state_the_head_reads(models, kind):
    model, tok = build_student(StudentSpec(models[kind]), num_labels=2)
    model.eval()
    decoder = is_decoder(model.config)
    assert decoder == (kind != "bert")
    texts = ["good", "the plot was really quite bad and dull"]
    batch = tok(texts, padding=True, return_tensors="pt")
    out = forward_with_features(model, batch["input_ids"], batch["attention_mask"], decoder)
    for i, text in enumerate(texts):  # each row alone, unpadded
        alone = tok([text], return_tensors="pt")
        single = forward_with_features(model, alone["input_ids"], alone["attention_mask"], decoder)
        token = -1 if decoder else 0
        torch.testing.assert_close(out.features[i], single.hidden[0, token], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(out.logits[i], single.logits[0], atol=1e-4, rtol=1e-4)
    if decoder:  # the head of a decoder reads exactly the pooled state
        torch.testing.assert_close(out.logits, model.score(out.features), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("kind, targets", [("llama", {"q_proj", "v_proj"}), ("gpt2", {"c_attn"}),
                                           ("bert", {"query", "value"})])
def test_lora_defaults_train_only_adapters_and_head(models, kind, targets):
    model, _ = build_student(StudentSpec(models[kind]), num_labels=3, lora=LoraSpec(r=4))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n or "score" in n or "classifier" in n for n in trainable)
    assert any("score" in n or "classifier" in n for n in trainable)
    assert {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in trainable if "lora_" in n} == targets


@pytest.mark.parametrize("kind", ["llama", "bert"])
def test_a_soft_prompt_trains_alone_with_the_head_and_its_victim_is_pooled_behind_it(models, kind):
    from students.prompt import attach_prompt

    model, tok = build_student(StudentSpec(models[kind]), num_labels=2)
    model = attach_prompt(model, tokens=5).eval()
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all("prompt_encoder" in n or "score" in n or "classifier" in n for n in trainable)
    decoder = is_decoder(model.config)
    batch = tok(["good", "the plot was really quite bad and dull"], padding=True, return_tensors="pt")
    out = forward_with_features(model, batch["input_ids"], batch["attention_mask"], decoder)
    assert out.hidden.shape[1] == batch["input_ids"].shape[1] + 5                 # the virtual tokens come first
    assert out.read_index.tolist() == ([out.hidden.shape[1] - 1] * 2 if decoder else [0, 0])
    if decoder:                                                                   # the head reads the pooled state
        torch.testing.assert_close(out.logits, model.base_model.score(out.features), atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="at least 1 virtual token"):
        attach_prompt(build_student(StudentSpec(models[kind]), num_labels=2)[0], tokens=0)


def test_student_validation(models):
    with pytest.raises(ValueError, match="LoRA rank"):
        LoraSpec(r=0)
    with pytest.raises(ValueError, match="unknown dtype"):
        StudentSpec(models["llama"], dtype="fp8").torch_dtype()
    with pytest.raises(ValueError, match="unknown quantization"):
        build_student(StudentSpec(models["llama"], quantization="2bit"), 2, LoraSpec())
    from w2s.lit import PoisonModule

    # the poisoned model exists in full precision; quantization is the defender's choice
    assert PoisonModule(StudentSpec(models["llama"], quantization="8bit")).spec.quantization is None


@pytest.mark.parametrize("mode", ["4bit", "8bit"])
def test_quantized_student_trains_a_step_on_cpu(tmp_path, mode):
    pytest.importorskip("bitsandbytes")
    from tests.tiny import make_llama

    path = str(make_llama(tmp_path / "llama", hidden=64))
    model, tok = build_student(StudentSpec(path, quantization=mode), 2, LoraSpec(r=4))
    assert getattr(model, "is_loaded_in_4bit" if mode == "4bit" else "is_loaded_in_8bit", False)
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    batch = tok(["good movie", "the plot was bad"], padding=True, return_tensors="pt")
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    for _ in range(2):  # LoRA B starts at zero: A moves only from the second step
        out = forward_with_features(model, batch["input_ids"], batch["attention_mask"], decoder=True)
        torch.nn.functional.cross_entropy(out.logits, torch.tensor([1, 0])).backward()
        optimizer.step()
        optimizer.zero_grad()
    changed = [n for n, p in model.named_parameters() if p.requires_grad and not torch.equal(p, lora[n])]
    assert any("lora_A" in n for n in changed) and any("lora_B" in n for n in changed)


@pytest.mark.parametrize("kind", ["llama", "gpt2"])
def test_an_empty_student_reads_no_weights_and_matches_the_loaded_one(models, kind, tmp_path):
    """What FSDP's other processes build (process 0's weights fill it once sharded): the same
    parameters, buffers and trainable set on the meta device, from a folder without weights."""
    import shutil

    folder = tmp_path / kind
    shutil.copytree(models[kind], folder)
    loaded, _ = build_student(StudentSpec(str(folder)), 3, LoraSpec(r=2))
    for weights in folder.glob("*.safetensors"):
        weights.unlink()
    empty, _ = build_student(StudentSpec(str(folder)), 3, LoraSpec(r=2), empty=True)
    shapes = lambda model: {n: (t.shape, t.dtype, t.requires_grad) for n, t in model.named_parameters()}  # noqa: E731
    assert shapes(empty) == shapes(loaded)
    assert [n for n, _ in empty.named_buffers()] == [n for n, _ in loaded.named_buffers()]
    assert all(t.is_meta for t in [*empty.parameters(), *empty.buffers()])
    with pytest.raises(OSError):
        build_student(StudentSpec(str(folder)), 3, LoraSpec(r=2))
