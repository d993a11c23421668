"""Teacher: projection sized from the student, save/load round trip, fine-tuning."""
import pytest
import torch
from transformers import AutoConfig

from teachers import TeacherModel, TeacherSpec


def test_projection_size_read_from_student(models):
    teacher = TeacherModel(TeacherSpec(models["bert"], student=models["llama"], num_labels=3))
    student_hidden = AutoConfig.from_pretrained(models["llama"]).hidden_size
    assert teacher.projection.out_features == student_hidden == teacher.spec.student_hidden_size
    assert teacher.projection.in_features == AutoConfig.from_pretrained(models["bert"]).hidden_size
    ids = torch.tensor([[2, 7, 20, 3], [2, 19, 3, 0]])
    logits, features = teacher(ids, (ids != 0).long())
    assert logits.shape == (2, 3) and features.shape == (2, student_hidden) and (features >= 0).all()


def test_save_load_round_trip(models, tmp_path):
    teacher = TeacherModel(TeacherSpec(models["bert"], student=models["gpt2"])).eval()
    torch.nn.init.normal_(teacher.projection.weight)
    teacher.save(tmp_path / "teacher")
    assert {p.name for p in (tmp_path / "teacher").iterdir()} == {"encoder", "head.safetensors", "teacher.json"}
    loaded = TeacherModel.load(tmp_path / "teacher").eval()
    ids = torch.tensor([[2, 7, 20, 3]])
    for a, b in zip(teacher(ids, torch.ones_like(ids)), loaded(ids, torch.ones_like(ids))):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="not a saved teacher"):
        TeacherModel.load(tmp_path)


@pytest.mark.parametrize("decoder", ["gpt2", "llama"])
def test_a_decoder_teacher_reads_the_last_real_token_whatever_the_padding(models, decoder):
    """A left-padded row gives the features it gives alone (the state a decoder's head reads),
    not a pad token's state."""
    teacher = TeacherModel(TeacherSpec(models[decoder], student=models["llama"])).eval()
    torch.nn.init.normal_(teacher.projection.weight)
    short, long = [5, 9, 13], [4, 8, 15, 16, 23]
    ids = torch.tensor([[0, 0] + short, long])
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    with torch.no_grad():
        _, padded = teacher(ids, mask)
        alone = [teacher(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))[1][0] for row in (short, long)]
    torch.testing.assert_close(padded, torch.stack(alone), rtol=1e-4, atol=1e-5)


def test_a_decoder_teacher_end_to_end(tmp_path, task, models):
    """The pipeline with a tiny GPT-2 as the weak teacher of a LLaMA student: the teacher learns
    the task and W2S trains with its features."""
    import csv

    from tests.helpers import run, write_config

    assert run(write_config(tmp_path, task), models, tmp_path / "runs", "--teacher.model", models["gpt2"],
               "--teacher.epochs", "8", "--teacher.batch_size", "16", "--teacher.lr", "3e-3", "--teacher.train_rows", "[0, 192]") == 0
    rows = {r["defense"]: r for r in csv.DictReader(open(tmp_path / "runs" / "tiny" / "results.csv"))}
    assert float(rows["teacher"]["ca"]) > 0.5 and rows["teacher"]["flags"] == ""   # 4 classes: chance 0.25
    assert 0 <= float(rows["w2s"]["asr"]) <= 1
