"""Stage 4 (defend): LoRA unlearning of the poisoned student, guided by a frozen clean teacher.

    L = ce * CE(s, y) + kd * KD_T(t, s) + fa * FA(z, f) + amp * L_amp + attn * L_attn   (w2s.losses)

with the weights moved over training by ``objective.schedule``, ``f`` the state of the
student's layer ``objective.fa_layer`` (default the last) pooled by ``objective.fa_pool``, and
``z`` the teacher's feature, or with ``objective.fa_target: fitted`` that feature mapped by a
ridge regression fitted at fit start on the training rows (clean for a defender) to the
student's own pooled states (kept in checkpoints: a resumed fit does not refit it on updated
weights).

The clean-LoRA baseline is the same module with only ``ce`` (no teacher is loaded);
Obliviate is ``ce`` + ``amp`` + ``attn``.
The teacher never changes, so its logits and features are computed once per training row
(at fit start) and looked up by row index at every step. With ``kd_source`` (an adapter of the
same student, e.g. clean LoRA's) the logit-distillation targets are that model's logits on the
same rows instead, while the features stay the teacher's: two targets.
After training, ``finish`` edits the kept weights (``w2s.config.finish``: rescaling the LoRA
update, refitting the head as a linear probe on the clean training rows).
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import torch

from students.build import StudentSpec, build_student
from students.edits import AdapterBlend, classification_head, fit_probe, head_inputs, rescale_lora
from students.forward import forward_with_features, model_inputs
from students.lora import LoraSpec, load_adapter
from teachers.model import TeacherModel
from w2s.artifacts import atomic_folder
from w2s.config.finish import FinishConfig
from w2s.distributed import whole
from w2s.lit.base import OptimConfig
from w2s.lit.student import StudentModule
from w2s.losses.objective import TERMS, LossInputs, ObjectiveConfig, compose, pooled
from w2s.losses.projection import fit_projection, project


class UnlearnModule(StudentModule):
    """Args:
        student: the poisoned student (a folder saved by the poisoning stage, or any name).
        teacher: folder of a saved teacher; needed when a term needs one (``kd``, ``fa`` > 0).
        lora: LoRA on the student (the reference uses r=512, alpha=512).
        objective: term weights; the default, cross-entropy alone, is clean LoRA (no teacher).
        kd_source: an adapter folder of ``student`` whose logits replace the teacher's as the
            ``kd`` targets (the features stay the teacher's).
        finish: edits of the kept weights after training; ``blend_source`` the adapter folder of
            the entry ``finish.blend`` names.
        adapter: a trained adapter folder to start from instead of a new LoRA (``lora`` unused).
    """

    def __init__(self, student: StudentSpec = StudentSpec(), teacher: Optional[str] = None,
                 lora: LoraSpec = LoraSpec(r=8), objective: ObjectiveConfig = ObjectiveConfig(),
                 num_labels: int = 2, optim: OptimConfig = OptimConfig(lr=2e-4), target_label: int = 0,
                 class_weights: Optional[list[float]] = None, kd_source: Optional[str] = None,
                 finish: FinishConfig = FinishConfig(), blend_source: Optional[str] = None,
                 adapter: Optional[str] = None):
        super().__init__(optim, target_label, num_labels, class_weights)
        if objective.needs_teacher and teacher is None:
            raise ValueError(f"objective terms {', '.join(objective.terms)} use the teacher but no teacher folder "
                             f"was given")
        if kd_source is not None and not objective.kd > 0:
            raise ValueError("kd_source sets the targets of logit distillation, whose weight objective.kd is 0")
        self.save_hyperparameters()
        self.spec, self.teacher_path, self.lora, self.objective = student, teacher, lora, objective
        if (finish.blend is None) != (blend_source is None):
            raise ValueError("finish.blend names an entry and blend_source is its adapter: give both or neither")
        self.kd_source, self.finishing, self.blend_source, self.adapter = kd_source, finish, blend_source, adapter
        self.teacher = self.teacher_logits = self.teacher_features = None
        self.projection: Optional[torch.Tensor] = None  # fa_target fitted: teacher -> student states

    def build_model(self) -> None:
        self.build(self.spec, self.num_labels, None if self.adapter else self.lora)
        if self.adapter:
            self.model = load_adapter(self.model, self.adapter, trainable=True)
        if self.objective.needs_attentions and self.model.config._attn_implementation != "eager":
            raise ValueError(f"objective.attn > 0 needs attention probabilities, which attn_implementation "
                             f"{self.model.config._attn_implementation!r} does not return: set "
                             f"student.attn_implementation: eager")
        if self.objective.needs_teacher:
            teacher = TeacherModel.load(self.teacher_path)
            hidden = self.model.config.hidden_size
            if teacher.spec.student_hidden_size != hidden:
                raise ValueError(f"teacher projects to {teacher.spec.student_hidden_size} dims but the student's "
                                 f"hidden size is {hidden}: train the teacher for this student")
            if teacher.spec.num_labels != self.num_labels:
                raise ValueError(f"teacher: {self.teacher_path} was trained for {teacher.spec.num_labels} classes, "
                                 f"the data has {self.num_labels}: train a teacher on this task")
            # Not registered as a submodule: it is not trained, checkpointed or wrapped by DDP.
            object.__setattr__(self, "teacher", teacher.eval().requires_grad_(False))

    def adapter_weights(self) -> list[torch.Tensor]:
        """The LoRA matrices, whole: looked up at each call (FSDP replaces the parameters when it
        shards them) and gathered, with their gradient, when sharded."""
        return [whole(p) for n, p in self.model.named_parameters()
                if p.requires_grad and ("lora_A" in n or "lora_B" in n)]

    def on_fit_start(self) -> None:
        super().on_fit_start()
        if self.teacher is not None:
            data = self.trainer.datamodule
            self.cache_teacher(data.teacher_dataloader(), rows=len(data.train))
            if self.kd_source is not None:
                self.teacher_logits = self.source_logits(data.teacher_dataloader(), rows=len(data.train))

    @torch.no_grad()
    def source_logits(self, loader, rows: int | None = None) -> torch.Tensor:
        """``(N, C)`` the logits of the student with ``kd_source``'s adapter for every training row."""
        model = load_adapter(build_student(self.spec, self.num_labels)[0], self.kd_source).to(self.device).eval()

        def logits(batch):
            inputs = model_inputs(batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device),
                                  self.decoder)
            return (model(**inputs).logits.float(),)
        return self.per_row(loader, logits, rows)[0]

    @torch.no_grad()
    def cache_teacher(self, loader, rows: int | None = None) -> None:
        """Teacher logits ``(N, C)`` and features ``(N, H)`` for every training row, once: each
        process computes the rows of ``loader`` (its share of the ``rows``), all processes get all."""
        self.teacher.to(self.device)
        self.teacher_logits, self.teacher_features = self.per_row(
            loader, lambda batch: self.teacher(batch["teacher_input_ids"].to(self.device),
                                               batch["teacher_attention_mask"].to(self.device)), rows)
        self.teacher.to("cpu")  # not needed on the accelerator any more
        if self.objective.fa_target == "fitted" and self.objective.fa > 0:
            if self.projection is None:  # a resumed fit has the one fitted before the first update
                self.projection = fit_projection(self.teacher_features, self.student_features(loader, rows))
            self.teacher_features = project(self.teacher_features, self.projection.to(self.teacher_features.device))

    def finish(self, data) -> dict:
        """Apply ``finish`` to the kept weights, in order: rescale, blend, refit the head."""
        done: dict = {}
        if self.finishing.rescale != 1.0:
            done["rescaled_layers"] = rescale_lora(self.model, self.finishing.rescale)
        if self.finishing.blend is not None:
            done["blend"] = self.blend(data.val_dataloader())
        if self.finishing.refit_head:
            self.refit_head(data.teacher_dataloader(), rows=len(data.train))
            done["refit_head"] = True
        return done

    @torch.no_grad()
    def blend(self, loaders) -> dict:
        """Blend in ``blend_source`` at the weight the rule chooses on the clean dev rows
        (``w2s.config.finish``); ``{"chosen": w, "weights": {w: {"dev_ca", "dev_fa"}}}``."""
        finishing, blend = self.finishing, AdapterBlend(self.model, self.blend_source)
        training = self.model.training
        self.model.eval()
        self.teacher.to(self.device)
        batches = [b for loader in loaders for b in loader]
        targets = [self.teacher(b["teacher_input_ids"].to(self.device), b["teacher_attention_mask"].to(self.device))[1]
                   for b in batches]
        if self.projection is not None:  # fa_target fitted: the map the training aligned to
            targets = [project(t, self.projection.to(t.device)) for t in targets]
        scores = {}
        for w in ((0.0,) if finishing.blend_bound is not None else ()) + tuple(finishing.blend_weights):
            blend.set(w)
            right = fa = 0.0
            for batch, target in zip(batches, targets):
                ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
                out = forward_with_features(self.model, ids, mask, self.decoder, layer=self.objective.fa_layer)
                right += (out.logits.argmax(-1) == batch["labels"].to(self.device)).sum().item()
                fa += TERMS["fa"](LossInputs(out.logits, batch["labels"], student_features=out.features,
                                             student_hidden=out.hidden, teacher_features=target,
                                             attention_mask=mask), self.objective).item() * len(ids)
            totals = torch.tensor([right, fa, sum(len(b["input_ids"]) for b in batches)], device=self.device)
            if self._trainer is not None and self.trainer.world_size > 1:  # each process holds a share of the rows
                totals = self.all_gather(totals).sum(dim=0)
            right, fa, rows = totals.tolist()
            scores[w] = {"dev_ca": right / rows, "dev_fa": fa / rows}
        bound = None if finishing.blend_bound is None else (1 + finishing.blend_bound) * scores[0.0]["dev_fa"]
        chosen = max((w for w in scores if bound is None or scores[w]["dev_fa"] <= bound),
                     key=lambda w: (scores[w]["dev_ca"], -w))
        blend.set(chosen)
        self.teacher.to("cpu")
        self.model.train(training)
        return {"chosen": chosen, "weights": scores}

    def refit_head(self, loader, rows: int | None = None) -> None:
        """The head refitted as a linear probe on what it reads for every training row (no dropout)."""
        head = classification_head(self.model)
        training = self.model.training
        self.model.eval()
        features, labels = self.per_row(loader, lambda batch: (head_inputs(
            self.model, head, batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device),
            self.decoder), batch["labels"].to(self.device)), rows)
        self.model.train(training)
        fit_probe(head, features, labels, self.finishing.probe_l2, self.class_weights)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.projection is not None:
            checkpoint["fa_projection"] = self.projection.cpu()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.projection = checkpoint.get("fa_projection")

    @torch.no_grad()
    def student_features(self, loader, rows: int | None = None) -> torch.Tensor:
        """``(N, H)`` the student's pooled states (``fa_layer``, ``fa_pool``) for every training
        row in index order, before any update and without dropout."""
        training = self.model.training
        self.model.eval()

        def pooled_states(batch):
            ids, mask = batch["input_ids"].to(self.device), batch["attention_mask"].to(self.device)
            out = forward_with_features(self.model, ids, mask, self.decoder, layer=self.objective.fa_layer)
            return (pooled(self.objective, out.features, out.hidden, mask).float(),)

        (features,) = self.per_row(loader, pooled_states, rows)
        self.model.train(training)
        return features

    def training_step(self, batch, batch_idx):
        needs = self.objective.needs
        out = forward_with_features(self.model, batch["input_ids"], batch["attention_mask"], self.decoder,
                                    attentions="attentions" in needs, layer=self.objective.fa_layer)
        inputs = LossInputs(out.logits, batch["labels"], self.class_weights, out.features, out.hidden,
                            adapter_weights=self.adapter_weights() if "adapter_weights" in needs else None,
                            attentions=out.attentions,
                            attention_mask=batch["attention_mask"], query_index=out.read_index)
        if self.teacher_logits is not None:
            index = batch["index"].to(self.teacher_logits.device)
            inputs.teacher_logits = self.teacher_logits[index]
            inputs.teacher_features = self.teacher_features[index]
        progress = (0.0 if self.objective.schedule == "constant"  # the share of training done, for the schedule
                    else self.global_step / max(1, self.trainer.estimated_stepping_batches))
        total, terms = compose(self.objective, inputs, progress)
        self.log_losses(total, terms, batch["labels"].shape[0])
        return total

    def save_artifact(self, folder: str | Path, merged: bool = False) -> None:
        """``folder/adapter`` (peft, safetensors, with tokenizer) and, if ``merged``, ``folder/merged``
        (merging folds LoRA into the weights in place: call it after training)."""
        with atomic_folder(folder) as staging:
            self.model.save_pretrained(staging / "adapter", safe_serialization=True)
            self.tokenizer.save_pretrained(staging / "adapter")
            if merged:
                merged_model = self.model.merge_and_unload()
                merged_model.save_pretrained(staging / "merged", safe_serialization=True)
                self.tokenizer.save_pretrained(staging / "merged")
