"""Sweeps: W&B sweep files, the local Optuna engine (grid and random spaces, resume, failures),
trials through the entry point, and flat dotted defense keys on the command line."""
import csv
import json
import math
from pathlib import Path

import pytest
import yaml

from w2s.cli import main
from w2s.sweeps import load_sweep, run_sweep

ROOT = Path(__file__).resolve().parents[1]
SWEEPS = sorted((ROOT / "experiments" / "sweeps").glob("*.yaml"))


def write_sweep(tmp_path, parameters, method="grid", metric="w2s/dev_asr", goal="minimize", extra=()):
    """A sweep over embedded_clean.yaml (nothing is loaded until a trial runs) in ``tmp_path``,
    ranked on triggered dev rows."""
    path = tmp_path / f"{method}.yaml"
    path.write_text(yaml.safe_dump({
        "method": method, "metric": {"name": metric, "goal": goal}, "parameters": {"dev_asr": {"value": True}} | parameters,
        "command": ["w2s", "pipeline", "--config", str(ROOT / "experiments" / "embedded_clean.yaml"),
                    "--runs_dir", str(tmp_path / "runs"), *extra, "${args}"]}))
    return path


@pytest.fixture
def fake_pipeline(monkeypatch):
    """Replace the pipeline run each trial makes (``run_trial``): record each trial's arguments
    and write a summary whose w2s/dev_asr (and w2s/asr) is a known function of the values
    (fa + kd / 10); ``fail_at`` / ``interrupt_at`` / ``no_metric_at``: the trial (1-based) that
    raises, is interrupted or leaves the metric out."""
    calls = []

    def fake(args):
        calls.append(args)
        values = dict(a[2:].split("=", 1) for a in args if a.startswith("--defenses."))
        fa = float(values.get("defenses.w2s.objective.fa", 0))
        kd = float(values.get("defenses.w2s.objective.kd", 0))
        if getattr(fake, "interrupt_at", None) == len(calls):
            raise KeyboardInterrupt
        if getattr(fake, "fail_at", None) == len(calls):
            raise ValueError("defenses.w2s: a bad value")
        report = Path(next(a for a in args if a.startswith("--report_dir="))[len("--report_dir="):])
        report.mkdir(parents=True)
        summary = {"w2s/asr": fa + kd / 10, "w2s/dev_asr": fa + kd / 10, "w2s/ca": 0.8}
        if getattr(fake, "no_metric_at", None) == len(calls):  # e.g. clean-correct ASR n/a for this attack
            del summary["w2s/dev_asr"]
        (report / "summary.json").write_text(json.dumps(summary))

    monkeypatch.setattr("w2s.sweeps.engine.run_trial", fake)
    fake.calls = calls
    return fake


def trial_values(calls):
    return [tuple(a for a in args if a.startswith("--defenses.")) for args in calls]


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_shipped_sweep_files_pass_wandb_validation_and_our_checks(path):
    sweeps = pytest.importorskip("sweeps")  # W&B's sweep engine: the validation `wandb sweep` runs
    assert sweeps.schema_violations_from_proposed_config(yaml.safe_load(path.read_text())) == []
    from w2s.sweeps.engine import check

    spec = load_sweep(path)
    config = check(spec)                         # the command at both ends of every range is valid
    assert spec.metric.split("/")[0] in config.defenses
    assert spec.command[:3] == ("pipeline", "--config", "experiments/embedded_clean.yaml")


def test_grid_visits_every_point_once_best_first(tmp_path, fake_pipeline, capsys):
    sweep = write_sweep(tmp_path, {"defenses.w2s.objective.fa": {"values": [0.0, 1.0, 2.0]},
                                   "defenses.w2s.objective.kd": {"values": [0.0, 5.0]}})
    rows = run_sweep(str(sweep))                                   # default: the whole grid
    points = trial_values(fake_pipeline.calls)
    assert len(points) == 6 and len(set(points)) == 6
    assert set(points) == {(f"--defenses.w2s.objective.fa={fa}", f"--defenses.w2s.objective.kd={kd}")
                           for fa in (0.0, 1.0, 2.0) for kd in (0.0, 5.0)}
    assert [r["w2s/dev_asr"] for r in rows] == sorted(fa + kd / 10 for fa in (0, 1, 2) for kd in (0, 5))
    out = capsys.readouterr().out
    assert "sweep grid: grid, minimize w2s/dev_asr (6 trials, best first)" in out
    folder = tmp_path / "runs" / "embedded_clean" / "sweeps" / "grid"
    assert (folder / "sweep.md").is_file() and (folder / "sweep.png").stat().st_size > 1000
    assert len((folder / "sweep.csv").read_text().splitlines()) == 7


def test_random_space_is_sampled_within_its_distributions(tmp_path, fake_pipeline):
    sweep = write_sweep(tmp_path, {
        "defenses.w2s.objective.fa": {"min": 0.5, "max": 2.0},
        "defenses.w2s.lora.r": {"min": 2, "max": 9},
        "defenses.w2s.lr": {"distribution": "log_uniform_values", "min": 1e-5, "max": 1e-2},
        "defenses.w2s.lora.target_modules": {"values": [["q_proj"], ["q_proj", "v_proj"]]},
        "defenses.w2s.epochs": {"value": 1}}, method="random")
    run_sweep(str(sweep), trials=24)
    values = [dict(a[2:].split("=", 1) for a in args if a.startswith("--defenses.")) for args in fake_pipeline.calls]
    assert len(values) == 24 and all(v["defenses.w2s.epochs"] == "1" for v in values)
    fa = [float(v["defenses.w2s.objective.fa"]) for v in values]
    assert all(0.5 <= x <= 2.0 for x in fa) and len(set(fa)) == 24
    ranks = [v["defenses.w2s.lora.r"] for v in values]
    assert all(r.isdigit() and 2 <= int(r) <= 9 for r in ranks)
    lrs = [math.log10(float(v["defenses.w2s.lr"])) for v in values]
    assert all(-5 <= x <= -2 for x in lrs) and sum(x < -3.5 for x in lrs) >= 4   # log-uniform: small values too
    modules = {v["defenses.w2s.lora.target_modules"] for v in values}
    assert modules == {'["q_proj"]', '["q_proj", "v_proj"]'}               # lists go as YAML/JSON


def test_resume_runs_only_missing_trials_and_retries_an_interrupted_one(tmp_path, fake_pipeline, capsys):
    sweep = write_sweep(tmp_path, {"defenses.w2s.objective.fa": {"min": 0.0, "max": 1.0}}, method="random")
    run_sweep(str(sweep), trials=2)
    assert len(fake_pipeline.calls) == 2
    run_sweep(str(sweep), trials=3)                                # one more, the first two kept
    assert len(fake_pipeline.calls) == 3 and len(set(trial_values(fake_pipeline.calls))) == 3
    assert "2 of 3 trials finished; running 1" in capsys.readouterr().out

    fake_pipeline.interrupt_at = 5                                 # Ctrl-C in the second new trial
    with pytest.raises(KeyboardInterrupt):
        run_sweep(str(sweep), trials=6)
    interrupted = trial_values(fake_pipeline.calls)[-1]
    fake_pipeline.interrupt_at = None
    rows = run_sweep(str(sweep), trials=6)
    assert trial_values(fake_pipeline.calls)[5] == interrupted     # its values run first
    assert len(fake_pipeline.calls) == 7 and sum(r["state"] == "complete" for r in rows) == 6


def test_failed_trial_is_recorded_and_counted(tmp_path, fake_pipeline):
    sweep = write_sweep(tmp_path, {"defenses.w2s.objective.fa": {"values": [0.0, 1.0, 2.0]}})
    fake_pipeline.fail_at = 2
    rows = run_sweep(str(sweep))
    assert [r["state"] for r in rows] == ["complete", "complete", "fail"]
    assert rows[-1]["error"] == "defenses.w2s: a bad value"
    run_sweep(str(sweep))                                          # finished: nothing runs again
    assert len(fake_pipeline.calls) == 3


@pytest.mark.parametrize("change, message", [
    ({"method": "hyperband"}, "method: 'hyperband' is not one of grid, random, bayes"),
    ({"metric": {"name": "w2s/loss"}}, "metric.name 'w2s/loss' is not <stage>/<column>"),
    ({"metric": {"name": "kd/asr"}}, "stage one of poisoned, teacher, lora, w2s"),
    ({"metric": {"name": "w2s/asr_clean_correct"}}, "ranks trials by a metric of the triggered test rows the results report"),
    ({"parameters": {"defenses.w2s.objective.fa": {"values": [1.0]}}}, "needs dev_asr: true in every trial"),
    ({"parameters": {"defenses": {"parameters": {"w2s": {"values": [1]}}}}}, "nested parameters are not supported"),
    ({"parameters": {"defenses.w2s.lr": {"min": 0.1}}}, "give value, values, or both min and max"),
    ({"parameters": {"defenses.w2s.lr": {"min": 1e-4, "max": 1e-3}}}, "a grid needs values"),
    ({"parameters": {"defenses.w2s.lr": {"distribution": "normal", "min": 0.0, "max": 1.0}}}, "'normal' is not supported"),
    ({"parameters": {"defenses.w2s.lora.r": {"values": [4, 0]}}}, "LoRA rank r must be >= 1"),
    ({"command": ["python", "train.py", "${args}"]}, "must call the w2s entry point"),
    ({"command": ["w2s", "evaluate", "${args}"]}, "a sweep runs `w2s pipeline ...`"),
    ({"command": ["w2s", "pipeline"]}, "with ${args}"),
    ({"parameters": {"trainer.devices": {"values": [1, 2]}}}, "trainer.devices x trainer.num_nodes must be 1"),
])
def test_bad_sweep_files_exit_2_before_any_trial(tmp_path, fake_pipeline, capsys, change, message):
    path = write_sweep(tmp_path, {"defenses.w2s.objective.fa": {"values": [1.0]}})
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | change))
    assert main(["sweep", str(path)]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
    assert fake_pipeline.calls == []


def test_missing_file_and_random_without_trials_exit_2(tmp_path, capsys):
    assert main(["sweep", str(tmp_path / "nope.yaml")]) == 2
    assert "no such sweep file" in capsys.readouterr().err
    sweep = write_sweep(tmp_path, {"defenses.w2s.objective.fa": {"min": 0.0, "max": 1.0}}, method="random")
    assert main(["sweep", str(sweep)]) == 2
    assert "--trials N" in capsys.readouterr().err


def test_trials_run_through_the_entry_point_sharing_stages(tmp_path, task, models, capsys):
    from tests.helpers import tiny_args, write_config

    config = write_config(tmp_path, task)
    sweep = tmp_path / "tiny.yaml"
    sweep.write_text(yaml.safe_dump({
        "method": "grid", "metric": {"name": "w2s/dev_asr_clean_correct", "goal": "minimize"},
        "parameters": {"dev_asr": {"value": True}, "defenses.w2s.objective.fa": {"values": [0.0, 1.0]}},
        "command": ["w2s", "pipeline", "--config", str(config), *tiny_args(models, tmp_path / "runs"), "${args}"]}))
    assert main(["sweep", str(sweep), "--trials", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("w2s: poisoned: training") == 1 and out.count("w2s: lora: training") == 1  # shared
    assert out.count("w2s: w2s: training") == 2
    root = tmp_path / "runs" / "tiny"
    assert len(list((root / "defenses").glob("w2s-*"))) == 2 and len(list((root / "defenses").glob("lora-*"))) == 1
    reports = sorted((root / "sweeps" / "tiny" / "trials").glob("*/results.csv"))
    assert len(reports) == 2
    table = (root / "sweeps" / "tiny" / "sweep.md").read_text()
    assert table.count("| complete |") == 2 and "w2s/dev_asr_clean_correct" in table
    rows = list(csv.DictReader(open(reports[0])))                  # ranked on dev rows, test rows reported
    assert all(0 <= float(r["dev_asr"]) <= 1 and 0 <= float(r["asr"]) <= 1 for r in rows)


def test_flat_dotted_defense_keys_change_one_setting_and_keep_the_rest(capsys):
    args = ["pipeline", "--config", str(ROOT / "experiments" / "embedded_clean.yaml"), "--print_config",
            "--defenses.w2s.objective.fa=0.5", "--defenses.w2s.lora.r", "8",
            "--defenses.extra.method=kd", "--defenses.lora.lora.target_modules=[q_proj, k_proj]"]
    assert main(args) == 0
    defenses = yaml.safe_load(capsys.readouterr().out)["defenses"]
    assert list(defenses) == ["lora", "w2s", "extra"]
    assert defenses["w2s"]["objective"]["fa"] == 0.5 and defenses["w2s"]["objective"]["kd"] == 1.0
    assert defenses["w2s"]["lora"]["r"] == 8 and defenses["w2s"]["epochs"] == 1    # from the file
    assert defenses["extra"]["method"] == "kd" and defenses["lora"]["lora"]["target_modules"] == ["q_proj", "k_proj"]
    assert main(["pipeline", "--defenses.w2s.objective.fa=[", "--print_config"]) == 2
    assert main(["pipeline", "--defenses.w2s.objectiv.fa=1", "--print_config"]) == 2
    assert "defenses.w2s" in capsys.readouterr().err


def test_pareto_front():
    from w2s.pipeline.frontier import pareto

    points = [(0.1, 0.80), (0.05, 0.85), (0.5, 0.90), (0.05, 0.80), (0.6, 0.88), (0.5, 0.90)]
    assert pareto(points) == [1, 2, 5]           # (0.05, .85) and (0.5, .90) twice; the rest are beaten
    assert pareto([]) == [] and pareto([(0.3, 0.7)]) == [0]


def test_over_seeds_mean_spread_delta_and_target():
    from w2s.sweeps.seeds import over_seeds

    def summary(lora_ca, w2s_ca, w2s_cc):
        return {"poisoned/ca": 0.85, "poisoned/wall_s": 1800.0, "lora/ca": lora_ca, "lora/asr_clean_correct": 0.99,
                "lora/wall_s": 900.0, "w2s/ca": w2s_ca, "w2s/asr_clean_correct": w2s_cc, "w2s/asr": 0.1,
                "w2s/wall_s": 900.0}

    trials = [{"values": {"attack.name": "badnet", "seed": 0}, "summary": summary(0.88, 0.87, 0.02)},
              {"values": {"attack.name": "badnet", "seed": 1}, "summary": summary(0.90, 0.89, 0.04)},
              {"values": {"attack.name": "insent", "seed": 0}, "summary": summary(0.90, 0.86, 0.10)},
              {"values": {"attack.name": "synattack", "seed": 0}, "summary": summary(0.90, 0.90, 0.00)},
              {"values": {"attack.name": "synattack", "seed": 1}, "summary": summary(0.90, 0.90, 0.09)}]
    rows = {(r["attack.name"], r["row"]): r for r in over_seeds(trials)}
    badnet, insent = rows[("badnet", "w2s")], rows[("insent", "w2s")]
    assert badnet["seeds"] == 2 and badnet["ca"] == "0.880 ± 0.014 (0.870 to 0.890)"
    assert badnet["asr_clean_correct"] == "0.030 ± 0.014 (0.020 to 0.040)"
    assert badnet["ΔCA vs lora"] == "-0.010 ± 0.000 (-0.010 to -0.010)" and badnet["target"] == "met on 2/2 seeds"
    assert badnet["hours per seed"] == "1.00" and "seed" not in badnet
    assert insent["seeds"] == 1 and insent["ca"] == "0.860" and insent["ΔCA vs lora"] == "-0.040"
    assert insent["target"] == "met on 0/1 seeds; misses up to: clean-correct ASR 0.050 over 0.05, CA 3.0 pt short"
    # the mean (0.045) would meet it; the target holds per seed
    assert rows[("synattack", "w2s")]["target"] == "met on 1/2 seeds; misses up to: clean-correct ASR 0.040 over 0.05"
    assert rows[("badnet", "lora")]["target"] == "" and rows[("badnet", "poisoned")]["asr"] == "n/a"


def test_a_sweep_over_seeds_writes_the_spread(tmp_path, fake_pipeline, capsys):
    sweep = write_sweep(tmp_path, {"seed": {"values": [0, 1, 2]},
                                   "defenses.w2s.objective.fa": {"values": [0.0, 1.0]}})
    run_sweep(str(sweep))
    assert len(fake_pipeline.calls) == 6
    folder = tmp_path / "runs" / "embedded_clean" / "sweeps" / "grid"
    table = (folder / "seeds.md").read_text()
    assert "| 0 | w2s | 3 | 0.800 ± 0.000 (0.800 to 0.800) | n/a | 0.000 ± 0.000 (0.000 to 0.000) |" in table
    assert "| 1 | w2s | 3 | 0.800 ± 0.000 (0.800 to 0.800) | n/a | 1.000 ± 0.000 (1.000 to 1.000) |" in table
    assert "mean ± sd over seeds" in capsys.readouterr().out and (folder / "seeds.csv").is_file()


def test_the_spread_counts_a_trial_whose_metric_is_na(tmp_path, fake_pipeline, capsys):
    """The trial fails the ranking (no value for the metric), but its pipeline ran: its results
    are one of the seeds."""
    fake_pipeline.no_metric_at = 2
    rows = run_sweep(str(write_sweep(tmp_path, {"seed": {"values": [0, 1, 2]}})))
    assert [r["state"] for r in rows].count("fail") == 1 and "n/a in this trial's results" in capsys.readouterr().out
    table = (tmp_path / "runs" / "embedded_clean" / "sweeps" / "grid" / "seeds.md").read_text()
    assert "| w2s | 3 | 0.800 ± 0.000 (0.800 to 0.800) |" in table
