"""The import contracts in pyproject.toml ([tool.importlinter]): entry point -> sweeps ->
pipeline -> defenses -> LightningModules -> data -> attacks -> losses, metrics, never upwards;
the model builders and the leaves (component settings, console, ...) import no layer; losses
and metrics import no Lightning; no import cycle between w2s's packages."""
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_import_contracts_hold(monkeypatch, capsys):
    from importlinter.cli import lint_imports

    monkeypatch.chdir(ROOT)
    code = lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out[-3000:]
