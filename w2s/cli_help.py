"""``docs/reference/cli.md``: every command of ``w2s`` with its description and options, read from
the parsers themselves (``python -m w2s.cli_help`` writes it; a test fails when it is stale)."""
from __future__ import annotations

from pathlib import Path

from w2s.cli import build_parser

PAGE = Path(__file__).resolve().parents[1] / "docs" / "reference" / "cli.md"
HIDDEN = ("_HelpAction", "ActionSubCommands", "_ActionPrintConfig", "_ActionConfigLoad")


def commands(parser=None, path: tuple[str, ...] = ("w2s",)):
    """``(command path, parser)`` for ``w2s`` and every subcommand, depth first."""
    parser = parser or build_parser()
    yield path, parser
    for action in parser._actions:
        if type(action).__name__ == "ActionSubCommands":
            for name, child in action.choices.items():
                yield from commands(child, path + (name,))


def _cell(text) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def page() -> str:
    lines = ["# Command line", "", "Generated from the parsers by `python -m w2s.cli_help`. Every command also "
             "answers `--help`. `w2s pipeline` reads the settings of [the configuration reference](../config.md); "
             "`w2s teacher|poison|unlearn {fit,validate,test}` are LightningCLI commands whose `--help` lists the "
             "stage's model, data and trainer options.", ""]
    for path, parser in commands():
        options = [a for a in parser._actions if type(a).__name__ not in HIDDEN]
        lines += [f"## `{' '.join(path)}`", "", _cell(parser.description or ""), ""]
        if options:
            lines += ["| option | default | help |", "|---|---|---|"]
            for action in options:
                names = ", ".join(f"`{n}`" for n in (action.option_strings or [action.dest]))
                default = "" if action.default is None or str(action.default).startswith("==") else \
                    f"`{action.default}`"
                lines.append(f"| {names} | {default} | {_cell(action.help or '')} |")
            lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    PAGE.write_text(page())
    print(f"wrote {PAGE}")
