"""Trains a baseline mixer or a mixer file on a config.

    python scripts/train.py --config=configs/tiny_cpu.py --config.mixer=deltanet \
        --workdir=runs/tiny_deltanet

Running the same command again resumes from the workdir's latest checkpoint.
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from asi_jax import command_line
from asi_jax.train.run import run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        result = run(_CONFIG.value, _WORKDIR.value)
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise command_line.UsageError(str(e)) from e
    print(f"{result['status']}: {result['steps']} steps, eval {result['eval']}")


if __name__ == "__main__":
    command_line.run(main)
