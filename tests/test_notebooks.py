"""The notebooks in experiments/notebooks/: committed without outputs, and each executes (on
tiny models) in a Jupyter kernel, as a user's would, from its own folder."""
import json
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "experiments" / "notebooks").glob("*.ipynb"))


def tiny_config(tmp_path, task, models) -> Path:
    """A whole tiny experiment as one YAML file (the overrides of test_pipeline.tiny_args)."""
    from tests.helpers import DEFENSES, tiny_args

    config = yaml.safe_load(f"experiment: tiny\ndataset: {task}\n{DEFENSES}")
    args = tiny_args(models, tmp_path / "runs")
    for key, value in zip(args[::2], args[1::2]):
        *parents, leaf = key[2:].split(".")
        node = config
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = yaml.safe_load(value)
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_there_are_three_and_git_holds_no_outputs():
    assert [p.stem for p in NOTEBOOKS] == ["01_demo", "02_compare", "03_sweep"]
    for path in NOTEBOOKS:
        for cell in json.loads(path.read_text())["cells"]:
            if cell["cell_type"] == "code":
                assert cell["outputs"] == [] and cell["execution_count"] is None, f"{path.name}: run nbstripout"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path, task, models, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    config = tiny_config(tmp_path, task, models)
    sweep = tmp_path / "tiny_sweep.yaml"
    sweep.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "w2s/dev_asr", "goal": "minimize"},
        "parameters": {"dev_asr": {"value": True}, "defenses.w2s.objective.fa": {"values": [0.0, 1.0]}},
        "command": ["w2s", "pipeline", "--config", str(config), "${args}"]}))
    monkeypatch.setenv("W2S_CONFIG", str(config))                  # the kernel inherits the environment
    monkeypatch.setenv("W2S_SWEEP", str(sweep))
    monkeypatch.setenv("W2S_TRIALS", "2")
    notebook = nbformat.read(path, as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": str(path.parent)}}).execute()
    outputs = [o for cell in notebook.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    shown = [o for o in outputs if o.output_type == "display_data"]
    tables = [o.data["text/markdown"] for o in shown if "text/markdown" in o.data]
    assert any("|---|" in table and "w2s" in table for table in tables)
    assert any("image/png" in o.data for o in shown)
