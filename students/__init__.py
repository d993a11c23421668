"""Students: any decoder or encoder as a sequence classifier, quantized and/or with LoRA."""
from students.build import StudentSpec, build_student
from students.lora import LoraSpec, attach_lora
from students.forward import StudentOutput, forward_with_features, model_inputs
from students.pooling import pool

__all__ = ["LoraSpec", "StudentOutput", "StudentSpec", "attach_lora", "build_student", "forward_with_features",
           "model_inputs", "pool"]
