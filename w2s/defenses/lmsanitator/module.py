"""LMSanitator's filter as a LightningModule: the victim fine-tunes with LoRA, or tunes a soft
prompt on the frozen model, on the defender's rows (cross-entropy, as the undefended ``lora``
victim does); when fitting ends, attack vectors are mined (``mining``) on the pre-trained model
it started from or on the victim itself; at test time every input's monitored output is checked
against them, a flagged input is purged word by word until the flag clears (``monitor``), and
the prediction is made on the purged text.

Logged beside CA and ASR (after purging): ``false_alarm_rate`` (clean rows flagged),
``detection_rate`` (triggered rows flagged) and ``purge_passes`` (forward passes per flagged
triggered row)."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Optional

import torch
from torch import Tensor
from torchmetrics import MeanMetric

from students.build import StudentSpec
from students.forward import forward_with_features
from students.lora import LoraSpec
from w2s.data.datamodule import CLEAN
from w2s.defenses.lmsanitator.mining import MiningOptions, Search, search_model
from w2s.defenses.lmsanitator.monitor import flags, purge
from w2s.defenses.lmsanitator.options import LmsanitatorOptions
from w2s.lit.base import EVAL_STAGES, OptimConfig
from w2s.lit.unlearn import UnlearnModule
from w2s.metrics import FlagRate


class LmsanitatorModule(UnlearnModule):
    """Args:
        student: the poisoned student (for POR: the pre-trained model with the victim's head).
        options: where to mine, the agreement threshold, the search's size, the calibration file.
        clean_model: the clean pre-trained model the distance threshold is calibrated on when
            ``options.calibration`` is not given.
        pretrained: the folder of the pre-trained model mined when ``options.mine_on`` is ``pretrained``.
        calibrations: a folder where a threshold calibrated here is kept and found again (by the
            clean model, the search's settings and the texts), so stages alike calibrate once.
    The search inserts its trigger into the defender's training rows (their labels unread).
    """

    def __init__(self, student: StudentSpec = StudentSpec(), lora: LoraSpec = LoraSpec(r=16), num_labels: int = 2,
                 optim: OptimConfig = OptimConfig(lr=2e-4), target_label: int = 0,
                 options: LmsanitatorOptions = LmsanitatorOptions(), clean_model: Optional[str] = None,
                 pretrained: Optional[str] = None, calibrations: Optional[str] = None):
        super().__init__(student, None, lora, num_labels=num_labels, optim=optim, target_label=target_label)
        self.options, self.clean_model, self.pretrained = options, clean_model, pretrained
        self.calibrations = calibrations
        self.distance: Optional[float] = None
        self.calibration_source = ""
        self.vectors: Optional[Tensor] = None
        self.found: Optional[Search] = None  # its ``scaling`` maps outputs to the vectors' units
        self.max_length = 128  # the data's, once fitting starts: purged texts are tokenized alike
        for stage in EVAL_STAGES:
            self.metrics[f"{stage}_false_alarm_rate"], self.metrics[f"{stage}_detection_rate"] = FlagRate(), FlagRate()
            self.metrics[f"{stage}_purge_passes"] = MeanMetric()

    def build_model(self) -> None:
        """The victim: LoRA (``UnlearnModule``), or a soft prompt and the head on the frozen model."""
        if self.options.victim == "lora":
            return super().build_model()
        from students.prompt import attach_prompt

        self.build(self.spec, self.num_labels, None)
        self.model = attach_prompt(self.model, self.options.prompt_tokens)

    def on_fit_start(self) -> None:
        super().on_fit_start()
        self.max_length = self.trainer.datamodule.max_length

    def on_fit_end(self) -> None:
        """Mine once fitting ends (after the kept epoch's weights are back; the test loop runs
        without autograd, which the search needs)."""
        super().on_fit_end()
        self.vectors = self.mine().to(self.device)

    def on_test_start(self) -> None:
        super().on_test_start()
        if self.vectors is None:
            raise RuntimeError("lmsanitator mines its attack vectors when fitting ends: fit before testing")

    def mine(self) -> Tensor:
        """``(K, H)`` the attack vectors found (K = 0: none), at the calibrated distance threshold."""
        from w2s.config.jsonable import fingerprint
        from w2s.defenses.lmsanitator.inspect import calibrate, calibrate_on, read_calibration

        data = self.trainer.datamodule
        texts = [row["text"] for row in data.train][:self.options.lines]
        options = MiningOptions(seeds=self.options.seeds, lines=len(texts), max_length=data.max_length,
                                standardise=self.options.standardise)
        cached = None if self.calibrations is None else \
            Path(self.calibrations) / f"{fingerprint([self.clean_model, options, texts])}.json"
        if self.options.calibration:
            self.distance = read_calibration(self.options.calibration, options.standardise)["distance"]
            self.calibration_source = self.options.calibration
        elif cached is not None and cached.is_file():
            self.distance = read_calibration(cached, options.standardise)["distance"]
            self.calibration_source = f"calibrated on {self.clean_model} (kept in {cached})"
        else:
            self.distance = (calibrate([self.clean_model], texts, options, cached)["distance"] if cached is not None
                             else calibrate_on([self.clean_model], texts, options))
            self.calibration_source = f"calibrated on {self.clean_model}"
        options = replace(options, distance=self.distance)
        if self.options.mine_on == "victim":
            model, tokenizer = self.model, self.tokenizer
        else:
            from transformers import AutoModel

            model = AutoModel.from_pretrained(self.pretrained, dtype="float32").to(self.device)
            tokenizer = self.tokenizer
        self.found = search_model(model, self.decoder, texts, tokenizer, options, self.distance,
                                  first_only=not self.options.full)
        hidden = self.model.config.hidden_size
        return torch.stack(self.found.vectors) if self.found.vectors else torch.zeros(0, hidden)

    def _outputs(self, input_ids: Tensor, attention_mask: Tensor):
        return forward_with_features(self.model, input_ids, attention_mask, self.decoder)

    def _flagged(self, features: Tensor) -> Tensor:
        """Nothing is flagged before mining (validation while fitting sees the victim as it is)."""
        if self.vectors is None or len(self.vectors) == 0:
            return torch.zeros(len(features), dtype=torch.bool, device=features.device)
        scaling = self.found.scaling if self.found is not None else None
        features = features.float() if scaling is None else scaling(features.float())
        return flags(features, self.vectors.float(), self.options.agreement)

    def _encode(self, texts: list[str]) -> dict[str, Tensor]:
        encoded = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt",
                                 max_length=self.max_length)
        return {"input_ids": encoded["input_ids"].to(self.device),
                "attention_mask": encoded["attention_mask"].to(self.device)}

    def _flag_texts(self, texts: list[str]) -> list[bool]:
        return self._flagged(self._outputs(**self._encode(texts)).features).tolist()

    def monitored(self, batch: dict[str, Tensor]) -> tuple[Tensor, Tensor, Tensor]:
        """``(predictions after purging, flags, forward passes spent purging)``, each ``(B,)``."""
        out = self._outputs(batch["input_ids"], batch["attention_mask"])
        preds, flagged = out.logits.argmax(dim=-1), self._flagged(out.features)
        passes = torch.zeros(len(preds), device=preds.device)
        for i in flagged.nonzero().flatten().tolist():
            ids = batch["input_ids"][i][batch["attention_mask"][i].bool()]
            result = purge(self.tokenizer.decode(ids, skip_special_tokens=True), self._flag_texts)
            passes[i] = result.passes
            if result.cleared:
                preds[i] = self._outputs(**self._encode([result.text])).logits.argmax(dim=-1)[0]
        return preds, flagged, passes

    def predict(self, batch: dict[str, Tensor]) -> Tensor:
        return self.monitored(batch)[0]

    def _evaluate(self, stage: str, batch: dict[str, Tensor], dataloader_idx: int, preds=None) -> None:
        preds, flagged, passes = self.monitored(batch)
        super()._evaluate(stage, batch, dataloader_idx, preds)
        size = batch["input_ids"].shape[0]
        name = "false_alarm_rate" if dataloader_idx == CLEAN else "detection_rate"
        self.metrics[f"{stage}_{name}"].update(flagged)
        self.log(f"{stage}/{name}", self.metrics[f"{stage}_{name}"], add_dataloader_idx=False, batch_size=size)
        if dataloader_idx != CLEAN and flagged.any():
            metric = self.metrics[f"{stage}_purge_passes"]
            metric.update(passes[flagged])
            self.log(f"{stage}/purge_passes", metric, add_dataloader_idx=False, batch_size=size)
