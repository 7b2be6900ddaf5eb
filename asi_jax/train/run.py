"""Entry point behind scripts/train.py: multi-host setup, config conversion, training."""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import jax

from asi_jax.candidates.engineer import check_mixer_source, export_training_program
from asi_jax.models.mixers import MIXERS
from asi_jax.train import distributed, heldout
from asi_jax.train.config import ExperimentConfig, from_config_dict
from asi_jax.train.exported import eval_row_counts, refuse_benchmarks
from asi_jax.train.trainer import train
from asi_jax.workdir import hold, is_remote


def run(
    config: Mapping[str, Any],
    workdir: str | Path,
    settings: distributed.DistributedConfig | None = None,
) -> dict[str, Any]:
    """Trains the experiment `config` (a ConfigDict) in `workdir`, which one training run
    holds at a time; returns result.json's data. `settings`: the multi-host job this process
    is part of (default: what the environment says; see `distributed`). Every process of a
    multi-host job passes the same `workdir`, on a filesystem they share."""
    experiment = from_config_dict(config)
    settings = settings or distributed.DistributedConfig.from_env()
    sandboxed = settings.multi_host and experiment.mixer not in MIXERS
    if sandboxed:  # before any rendezvous: a refused run keeps no other host waiting
        refuse_benchmarks(experiment)
        check_mixer_source(experiment.mixer)
    distributed.initialize(settings)
    program = sandboxed_program(experiment, workdir) if sandboxed else None
    with hold(workdir, "training run") if jax.process_index() == 0 else nullcontext(workdir):
        return train(experiment, workdir, program=program)


def sandboxed_program(experiment: ExperimentConfig, workdir: str | Path) -> Path:
    """This process's copy of the run's programs, traced from the mixer file in a sandboxed
    worker (asi_jax.train.exported): the file's Python never runs in this process, which
    holds the job's network. Each process traces its own, in its own folder."""
    index = jax.process_index()
    local = tempfile.mkdtemp(prefix="asi_jax_program_") if is_remote(workdir) else workdir
    folder = Path(local) / "programs" / f"process{index}"
    device = jax.devices()[0]
    platform = device.platform
    if platform == "gpu":
        platform = "rocm" if "rocm" in device.client.platform_version.lower() else "cuda"
    rows = eval_row_counts(heldout.eval_sets(experiment.data))
    return export_training_program(experiment.mixer, experiment, folder, platform=platform,
                                   devices=jax.device_count(), eval_rows=rows)  # fmt: skip
