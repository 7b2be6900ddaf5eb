"""Trains a baseline mixer or a mixer file on a config.

    python scripts/train.py --config=configs/tiny_cpu.py --config.mixer=deltanet \
        --workdir=runs/tiny_deltanet

Running the same command again resumes from the workdir's latest checkpoint.

Multi-host: run the same command on every host, with the same --workdir on a shared
filesystem (a mixer file is traced in the sandbox there, see asi_jax/train/exported.py), adding

    --coordinator=HOST0:PORT --num_processes=N --process_id=I

or set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, JAX_PROCESS_ID. A Cloud TPU pod slice
needs neither: run the command on all its workers (gcloud ... ssh --worker=all).
"""

from __future__ import annotations

from absl import flags
from ml_collections import config_flags

from asi_jax import command_line
from asi_jax.train.distributed import DistributedConfig
from asi_jax.train.run import run

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file.")
_WORKDIR = flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and results go.")
_COORDINATOR = flags.DEFINE_string(
    "coordinator", None, "host:port of process 0's coordinator (multi-host; default: the env)."
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", 1, "Processes in the multi-host job.")
_PROCESS_ID = flags.DEFINE_integer("process_id", 0, "This process's index in the job.")
flags.mark_flags_as_required(["config", "workdir"])


def distributed_settings() -> DistributedConfig:
    """The flags' job when any of them is given, else the environment's."""
    if not (_COORDINATOR.present or _NUM_PROCESSES.present or _PROCESS_ID.present):
        return DistributedConfig.from_env()
    return DistributedConfig(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise command_line.UsageError(f"unexpected arguments: {argv[1:]}")
    try:
        result = run(_CONFIG.value, _WORKDIR.value, distributed_settings())
    except (ValueError, TypeError, FileNotFoundError) as e:
        raise command_line.UsageError(str(e)) from e
    print(f"{result['status']}: {result['steps']} steps, eval {result['eval']}")


if __name__ == "__main__":
    command_line.run(main)
