"""Trains baseline mixers on one config with the same seeds and steps; prints a table.

    python scripts/sweep_baselines.py --config=configs/tiny_cpu.py \
        --mixers=softmax,linear_attention,deltanet,gated_deltanet --seeds=0 \
        --workdir=runs/mqar_sweep

Writes sweep.json (every run's result) in the workdir; finished runs are not retrained.
"""

from __future__ import annotations

from pathlib import Path

from absl import flags
from ml_collections import config_flags

from asi_jax import command_line
from asi_jax.evals.sweep import format_table, run_sweep
from asi_jax.models.mixers import MIXERS
from asi_jax.train.config import from_config_dict

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_MIXERS = flags.DEFINE_list("mixers", sorted(MIXERS), "Mixers to train.")
_SEEDS = flags.DEFINE_list("seeds", ["0"], "Seeds; each mixer trains once per seed.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Folder for the runs and sweep.json.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        base = from_config_dict(_CONFIG.value)
        seeds = [int(s) for s in _SEEDS.value]
    except (ValueError, TypeError) as e:
        raise command_line.UsageError(str(e)) from e
    rows = run_sweep(base, _MIXERS.value, seeds, _WORKDIR.value)
    print(format_table(rows))
    print(f"wrote {Path(_WORKDIR.value) / 'sweep.json'}")


if __name__ == "__main__":
    command_line.run(main)
