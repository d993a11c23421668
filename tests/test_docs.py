"""The README and the documentation site stay true to the code: every `w2s` command they show
parses (an option renamed in code breaks this test, not the reader), the generated command
reference is current, every registered metric is defined, the notebooks link to pages that
exist, and the version follows the changelog. (`make docs` builds the site with
`mkdocs build --strict` in CI: broken links and missing pages fail it.)"""
import json
import re
import shlex
from pathlib import Path

import pytest

import w2s
from w2s.cli import STAGES, build_parser, main
from w2s.pipeline.load import load_config

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def shown_commands() -> list[tuple[str, list[str]]]:
    """``(where, args)`` for every `w2s` command of the README and the pages: in a bash block, or
    after ``$ `` in a plain one (``torchrun ... -m w2s ARGS`` and ``python -m w2s ARGS`` too)."""
    found = []
    for page in PAGES:
        for language, block in re.findall(r"```(bash|)\n(.*?)```", page.read_text(), re.S):
            for line in block.replace("\\\n", " ").splitlines():
                if not language and not line.startswith("$ "):
                    continue  # a plain block: output, with the commands that made it after "$ "
                line = line.strip().removeprefix("$ ")
                if not (line.startswith("w2s ") or " -m w2s " in line):
                    continue  # another program
                words = shlex.split(line, comments=True)
                if words[:1] == ["w2s"]:
                    found.append((f"{page.relative_to(ROOT)}: {line.strip()}", words[1:]))
                elif "-m" in words and words[words.index("-m") + 1:][:1] == ["w2s"]:
                    found.append((f"{page.relative_to(ROOT)}: {line.strip()}", words[words.index("-m") + 2:]))
    return found


COMMANDS = shown_commands()


def test_the_pages_show_commands():
    assert len(COMMANDS) > 30 and {args[0] for _, args in COMMANDS} >= {"pipeline", "sweep", "scan", "adapters",
                                                                         "inspect", "data", "teacher"}


@pytest.mark.parametrize("args", [args for _, args in COMMANDS], ids=[where for where, _ in COMMANDS])
def test_every_shown_command_parses(args, monkeypatch, capsys):
    monkeypatch.chdir(ROOT)
    if args[0] == "pipeline":
        load_config([a for a in args[1:] if a != "--print_config"])       # every key and value checked
    elif args[0] in STAGES:
        assert main([*args, "--print_config"]) == 0                       # LightningCLI parses, prints, exits
    else:
        build_parser().parse_args(args)


def test_the_command_reference_is_current():
    from w2s.cli_help import PAGE, page

    assert PAGE.read_text() == page(), "docs/reference/cli.md is stale: run python -m w2s.cli_help"


def test_every_registered_metric_is_defined():
    import w2s.defenses  # noqa: F401 (registers the defenses' metrics)
    from w2s.metrics.specs import METRICS

    text = (ROOT / "docs" / "reference" / "metrics.md").read_text()
    assert [name for name in METRICS if f"| `{name}` |" not in text] == []


def test_the_notebooks_link_to_pages_that_exist():
    for notebook in sorted((ROOT / "experiments" / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        text = "".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
        links = re.findall(r"docs/[\w/.-]+\.md", text)
        assert links, f"{notebook.name} links to no documentation page"
        assert [link for link in links if not (ROOT / link).is_file()] == [], notebook.name


def test_the_version_follows_the_changelog():
    latest = re.search(r"^## (\d+\.\d+\.\d+)", (ROOT / "CHANGELOG.md").read_text(), re.M).group(1)
    declared = re.search(r'^version = "(.+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    assert latest == declared == w2s.__version__
