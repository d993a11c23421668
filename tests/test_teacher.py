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
