"""Students: any decoder or encoder as a sequence classifier, quantized and/or with LoRA."""
from students.build import StudentSpec, build_student, student_is_decoder
from students.lora import LoraSpec, attach_lora
from students.pooling import StudentOutput, forward_with_features, pool

__all__ = ["LoraSpec", "StudentOutput", "StudentSpec", "attach_lora", "build_student", "forward_with_features",
           "pool", "student_is_decoder"]
