"""Entry point behind scripts/train.py: multi-host setup, config conversion, training."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import jax

from asi_jax.train import distributed
from asi_jax.train.config import from_config_dict
from asi_jax.train.trainer import train
from asi_jax.workdir import hold


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
    distributed.refuse_untrusted_mixer(experiment.mixer, settings)
    distributed.initialize(settings)
    with hold(workdir, "training run") if jax.process_index() == 0 else nullcontext(workdir):
        return train(experiment, workdir)
