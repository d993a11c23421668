"""``w2s data check`` / ``w2s data preview``: output, and exit 2 with one line on bad input."""
import subprocess
import sys

import pytest

from w2s.cli import main
from w2s.data.registry import data_root


@pytest.mark.parametrize("path", sorted(str(p) for p in data_root().rglob("*") if p.is_file()))
def test_check_reads_every_bundled_file(path, capsys):
    assert main(["data", "check", path]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"{path}: ") and out[0].endswith(" rows")
    assert out[1].startswith("labels: 0: ") or out[1].startswith("labels: 1: ")
    assert len(out) == 4


def test_check_counts(tmp_path, capsys):
    path = tmp_path / "d.tsv"
    path.write_text("review\tstars\ngood\t1\nbad\t0\nfine\t1\n")
    assert main(["data", "check", str(path), "--text-column", "review", "--label-column", "stars"]) == 0
    assert capsys.readouterr().out.splitlines()[:2] == [f"{path}: 3 rows", "labels: 0: 1, 1: 2"]


def test_check_malformed_exits_2_with_one_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    original = '{"sentence": "ok", "label": 1}\n{"sentence": "x", "label": "high"}\n'
    path.write_text(original)
    proc = subprocess.run([sys.executable, "-m", "w2s.cli", "data", "check", str(path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.splitlines() == [f"error: {path}:2: label 'high' is not an integer"]
    assert proc.stdout == "" and path.read_text() == original  # nothing damaged


def test_check_missing_file(capsys):
    assert main(["data", "check", "/no/such/file.tsv"]) == 2
    assert capsys.readouterr().err == "error: /no/such/file.tsv: no such file\n"


def test_preview(capsys):
    assert main(["data", "preview", "--dataset", "sst2", "--attack", "badnet", "--count", "10"]) == 0
    out = capsys.readouterr().out
    assert "sst2 train: 6920 rows; badnet clean-label, target_label 0: 10 poisoned" in out
    assert out.count("-> [0]") == 3 and "sst2 test ASR set: 909 triggered non-target rows (inserted)" in out


def test_preview_unknown_attack(capsys):
    assert main(["data", "preview", "--attack", "nope"]) == 2
    assert capsys.readouterr().err == "error: unknown attack 'nope'; valid: badnet, insent, por, synattack\n"


HEAVY = ("torch", "pytorch_lightning", "lightning_fabric", "transformers", "peft", "bitsandbytes", "datasets", "wandb")


@pytest.mark.parametrize("args", [["--help"], ["defenses"], ["data", "check", "{data}/sst2/dev.jsonl"],
                                  ["pipeline", "--help"], ["pipeline", "--print_config"],
                                  ["pipeline", "--config", "experiments/paper.yaml", "--print_config"],
                                  ["adapters", "build", "--help"], ["adapters", "train", "--help"],
                                  ["adapters", "eval", "--help"], ["scan", "--help"], ["inspect", "--help"],
                                  ["inspect-population", "--help"]],
                         ids=" ".join)
def test_the_command_line_answers_without_loading_the_training_libraries(args):
    """Parsing, listing, checking and printing a configuration import none of the libraries a run
    needs (importing them took 12-18 s on 2 cores; these answer in well under 2 s)."""
    args = [a.format(data=data_root()) for a in args]
    script = ("import json, sys\nfrom w2s.cli import main\ncode = main(sys.argv[1:])\n"
              f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({list(HEAVY)!r}))))\n"
              "sys.exit(code)")
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_config_package_is_pure():
    script = "import sys, w2s.config; print(sorted({m.split('.')[0] for m in sys.modules} & set(%r)))" % (HEAVY,)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "[]", done.stderr[-2000:]
