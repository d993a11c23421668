"""Teachers: a small clean encoder with a projection head to the student's hidden size."""
from teachers.model import TeacherModel, TeacherSpec

__all__ = ["TeacherModel", "TeacherSpec"]
