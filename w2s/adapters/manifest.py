"""A saved detector's manifest, read without torch (the pipeline checks a ``peftguard`` entry
against the student before anything trains), and which base model an adapter names."""
from __future__ import annotations

import json
from pathlib import Path

FORMAT = "w2s-peftguard/1"
SHIPPED = Path(__file__).parent / "detectors"


def default_detector() -> Path:
    """The detector that ships for the embedded base (MiniLM-L6, LoRA on query and value)."""
    return SHIPPED / "minilm-l6"


def read_manifest(folder: str | Path | None) -> tuple[Path, dict]:
    """``(folder, manifest.json)`` of a detector folder (None: :func:`default_detector`)."""
    folder = Path(folder) if folder else default_detector()
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"detector: {folder} holds no readable manifest.json ({type(err).__name__})") from None
    if manifest.get("format") != FORMAT:
        raise ValueError(f"detector: {folder}/manifest.json is not a {FORMAT} manifest")
    return folder, manifest


def _aliases(name: str) -> set[str]:
    """``name``; for an embedded model also its hub id and its folder inside the package."""
    from w2s.embedded import EMBEDDED

    entry = EMBEDDED.get(name)
    return {name.rstrip("/")} | ({entry.hub_id, f"{entry.package}/{entry.relative}"} if entry else set())


def same_model(named: str | None, base: str) -> bool:
    """Whether ``named`` (an adapter's ``base_model_name_or_path``, a student's name) is the
    detector's base model ``base``: equal names or aliases, or a folder ending in one (an
    embedded model's folder on another machine). Unnamed: left to the shapes."""
    if not named:
        return True
    return any(a == b or a.endswith("/" + b) or b.endswith("/" + a) for a in _aliases(named) for b in _aliases(base))
