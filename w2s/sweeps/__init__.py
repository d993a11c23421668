"""Sweeps: W&B sweep files (``experiments/sweeps/``), run by W&B agents or locally on Optuna."""
from w2s.sweeps.engine import run_sweep, sweep_folder
from w2s.sweeps.spec import SweepError, SweepSpec, load_sweep

__all__ = ["SweepError", "SweepSpec", "load_sweep", "run_sweep", "sweep_folder"]
