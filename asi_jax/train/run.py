"""Entry point behind scripts/train.py: multi-host setup, config conversion, training."""

from __future__ import annotations

import os
from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import jax

from asi_jax.train.config import from_config_dict
from asi_jax.train.trainer import train
from asi_jax.workdir import hold


def initialize_distributed() -> None:
    """Joins a multi-host job when one is configured (a TPU pod slice, or coordinator
    variables set); a single host runs as it is."""
    if jax.process_count() > 1:
        return
    if os.environ.get("JAX_COORDINATOR_ADDRESS") or os.environ.get("TPU_WORKER_HOSTNAMES"):
        jax.distributed.initialize()


def run(config: Mapping[str, Any], workdir: str | Path) -> dict[str, Any]:
    """Trains the experiment `config` (a ConfigDict) in `workdir`, which one training run
    holds at a time; returns result.json's data."""
    experiment = from_config_dict(config)
    initialize_distributed()
    with hold(workdir, "training run") if jax.process_index() == 0 else nullcontext(workdir):
        return train(experiment, workdir)
