"""PEFTGuard (arXiv 2411.17453; Vincent-HKUSTGZ/PEFTGuard) as a pipeline entry: after every
other stage, scan the LoRA adapters the run made (the attacker's, when the poisoning stage trains
one with ``poison.lora``, and each defense's) with a detector (``w2s adapters train``; by default
the one that ships for the embedded MiniLM-L6) and add P(backdoored) as a column of their rows."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from w2s.adapters.manifest import read_manifest, same_model
from w2s.defenses.base import Defense, register_defense
from w2s.metrics import MetricSpec, register_metric

register_metric(MetricSpec("p_backdoored", "P(backdoored adapter)", "clean"))


@dataclass(frozen=True)
class PeftguardOptions:
    """``detector``: a folder ``w2s adapters train`` wrote (null: the one that ships, for the
    embedded MiniLM-L6 with LoRA on query and value)."""

    detector: Optional[str] = None


@register_defense("peftguard")
class Peftguard(Defense):
    family = "detector"
    summary = ("PEFTGuard: a convolutional detector reads each LoRA adapter's updates (alpha/r) B A and gives "
               "P(backdoored) (Sun et al., arXiv 2411.17453); scans the run's adapters after every other stage")
    Options = PeftguardOptions

    def check(self, name, stage, config):
        folder, manifest = read_manifest(self.options(stage.options).detector)
        base = manifest["preprocessing"]["base_model"]
        if not same_model(config.student.name, base):
            raise ValueError(f"{name}: the detector {folder} scans adapters of {base}, not of the student "
                             f"{config.student.name}: train one with `w2s adapters train` and set options.detector")
        others = [n for n, s in config.defenses.items() if s.defense.family != "detector"]
        if config.poison.lora is None and not others:
            raise ValueError(f"{name}: nothing to scan: no defense trains an adapter and poison.lora is not set")
        if sum(s.defense is self for s in config.defenses.values()) > 1:
            raise ValueError(f"{name}: one peftguard entry per run (each adds the same column)")

    def run(self, context, stage):
        from w2s.adapters.scan import Scanner

        scanner = Scanner(self.options(stage.options).detector)
        scores, refused = {}, {}
        for row, folder in context.adapters.items():
            try:  # adapters of this run's student (a poisoned copy of it): its shapes decide
                scores[row] = scanner.score(scanner.read(folder, check_base=False))
            except ValueError as err:
                refused[row] = str(err)
        context.run.info.update(scores=scores, refused=refused, detector=str(scanner.folder),
                                threshold=scanner.manifest["threshold"])

    def scores(self, manifest):
        return {row: {"p_backdoored": p} for row, p in manifest["info"]["scores"].items()}

    def notes(self, name, manifest):
        info = manifest["info"]
        flagged = [row for row, p in info["scores"].items() if p >= info["threshold"]]
        return ([f"detector ({name}): {len(info['scores'])} adapters scanned with {info['detector']}; flagged at "
                 f"P >= {info['threshold']}: {', '.join(flagged) or 'none'}"]
                + [f"detector ({name}): {row}'s adapter not scanned: {why}" for row, why in info["refused"].items()])
