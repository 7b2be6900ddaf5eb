"""Runs (or resumes) an architecture-evolution run.

    python scripts/evolve.py --config=configs/quickstart.py --workdir=runs/quickstart

Prints a line per finished evaluation (stage, finished/total, outcome, best so far,
failures, elapsed time and an estimate of what is left) and keeps `leaderboard.json` in the
workdir up to date. Running the same command again after an interruption (even `kill -9`)
continues the run: finished candidates are kept, interrupted ones are re-run; only the
`budget` and `limits` fields may change between starts. One run at a time per workdir.

With --dry_run it builds each stage's model and data pipeline and prints parameter counts,
token budgets and estimated accelerator-hours (asi_jax/evolution/plan.py), then exits
without training or touching the workdir.

Exit status: 0 finished, 1 the run failed, 2 the command line or config is invalid (nothing
ran), 130 interrupted (run the same command to resume).
"""

from __future__ import annotations

import json

from absl import flags
from ml_collections import config_flags

from asi_jax import command_line
from asi_jax.evolution import plan, report
from asi_jax.evolution.backends import BackendError
from asi_jax.evolution.config import from_config_dict
from asi_jax.evolution.controller import EvolutionError, evolve

_CONFIG = config_flags.DEFINE_config_file("config", None, "Evolution config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "The run's folder: database, candidates, "
                               "leaderboard.")  # fmt: skip
_DRY_RUN = flags.DEFINE_bool("dry_run", False, "Build every stage's model and data pipeline, "
                             "print parameters, token budgets and estimated cost; no "
                             "training.")  # fmt: skip
flags.mark_flags_as_required(["config"])


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        config = from_config_dict(_CONFIG.value)
    except (ValueError, TypeError, OSError) as e:  # OSError: a data file the config names
        raise command_line.UsageError(f"config: {e}") from e
    if _DRY_RUN.value:
        try:
            plans = plan.plan(config)
        except (ValueError, FileNotFoundError) as e:
            raise command_line.UsageError(f"dry run: {e}") from e
        print(plan.describe(plans))
        print(json.dumps({"dry_run": plan.as_json(plans)}))
        return
    if not _WORKDIR.value:
        raise command_line.UsageError("--workdir is required (the run's folder)")
    try:
        board = evolve(config, _WORKDIR.value, log=lambda line: print(line, flush=True))
    except BackendError as e:
        raise command_line.RunError(f"the run cannot start: {e}") from e
    except EvolutionError as e:
        raise command_line.RunError(f"the run stopped: {e}") from e
    except KeyboardInterrupt:
        print(f"interrupted; run the same command again to resume {_WORKDIR.value}", flush=True)
        command_line.fail("interrupted", command_line.INTERRUPTED_STATUS)
    print(report.summary(board))
    print(json.dumps({"wall_seconds": round(board["wall_seconds"], 1)}))


if __name__ == "__main__":
    command_line.run(main)
