"""Tiny experiment configs shared by the training tests."""

from __future__ import annotations

import json
from pathlib import Path

from asi_jax.train.config import ExperimentConfig, from_config_dict


def tiny_dict(mixer: str = "deltanet", **train) -> dict:
    return {
        "seed": 0,
        "mixer": mixer,
        "model": {"vocab_size": 256, "d_model": 32, "num_layers": 1, "num_heads": 2},
        "data": {"kind": "bytes", "batch_size": 8, "seq_len": 32, "eval_examples": 16},
        "optim": {"learning_rate": 1e-2, "warmup_steps": 2},
        "train": {"steps": 25, "log_every": 5, "checkpoint_every": 0, **train},
    }


def tiny(mixer: str = "deltanet", **train) -> ExperimentConfig:
    return from_config_dict(tiny_dict(mixer, **train))


def write_config_file(path: Path, config: dict) -> Path:
    """A configs/*.py-style file whose get_config() returns `config`."""
    path.write_text(
        "from ml_collections import config_dict\n\n\n"
        f"def get_config():\n    return config_dict.ConfigDict({config!r})\n"
    )
    return path


def losses(workdir: Path) -> dict[int, float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines)}
